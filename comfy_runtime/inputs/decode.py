"""A job's input files: base64, data URI or URL -> checked bytes -> stored for ComfyUI.

Each job's files go to its own subfolder of ComfyUI's input directory, so jobs never see or
overwrite each other's files and cleanup removes exactly one folder (see `job_files`).

What an input may be (its type and content) is `input_types`' call; this module checks
the encoding and the size. Outputs have the mirror image in `outputs` and `delivery`.

* Its size is checked before it is decoded, from the length of the text, so a huge base64
  string or data URI costs nothing beyond the string the platform already holds.
* Base64 is decoded strictly by pybase64 (SIMD), straight from the job's string; the one
  `bytes` it yields is what the content check reads (its header only), what is written into
  ComfyUI's input folder or uploaded: no other copy of the payload is made.
"""

from __future__ import annotations

import binascii
import re
import threading
from dataclasses import dataclass
from pathlib import PurePosixPath

import pybase64

from ..blocking import FanOut, serial
from ..comfyui.client import ComfyClient
from ..comfyui.wire import UploadedFile
from ..contract import InputFile
from ..errors import InvalidInput
from ..fetch.download import UrlPolicy, fetch_url
from ..job_files import ComfyFolders, safe_filename
from .file_types import check_content, check_suffix

_DATA_URI = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[^,;]*)*),", re.IGNORECASE
)
_BASE64_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class InputLimits:
    max_bytes: int
    max_pixels: int
    max_inputs: int
    fetch_timeout_s: float
    allow_private_urls: bool
    extra_suffixes: frozenset[str] = frozenset()  # EXTRA_INPUT_EXTENSIONS: accepted unchecked
    cancel: threading.Event | None = None  # the job's: set, a download stops where it waits


@dataclass(frozen=True)
class PreparedInput:
    name: str  # as the client named it, and as the graph refers to it
    data: bytes


def decode_inputs(
    items: list[InputFile], limits: InputLimits, fan_out: FanOut = serial
) -> list[PreparedInput]:
    """Every input's bytes, checked; URL inputs are fetched several at a time."""
    if len(items) > limits.max_inputs:
        raise InvalidInput(
            f"images: {len(items)} inputs, more than the {limits.max_inputs} allowed (MAX_INPUTS)",
            [{"field": "images", "problem": "too many inputs", "limit": limits.max_inputs}],
        )
    names = [item.name for item in items]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidInput(
            f"images: the name {duplicates[0]!r} is used twice; each input needs its own name",
            [{"field": "images", "problem": "duplicate name", "name": n} for n in duplicates],
        )
    # The cheap checks on every input before any is fetched or decoded: an input that would
    # be refused is not worth a download.
    for index, item in enumerate(items):
        if not _is_url(item.image):
            field = f"images[{index}].image"
            start = _payload_start(item.image, field)
            _check_encoded_size(len(item.image) - start, field, limits.max_bytes)
        check_suffix(item.name, f"images[{index}].name", limits.extra_suffixes)

    def decode(pair: tuple[int, InputFile]) -> PreparedInput:
        index, item = pair
        field = f"images[{index}].image"
        data = decode_payload(item.image, field, limits)
        check_content(item.name, data, f"images[{index}]", max_pixels=limits.max_pixels)
        return PreparedInput(name=item.name, data=data)

    return fan_out(decode, list(enumerate(items)))


def upload_inputs(
    client: ComfyClient,
    inputs: list[PreparedInput],
    *,
    folder: str,
    folders: ComfyFolders | None = None,
    fan_out: FanOut = serial,
) -> dict[str, UploadedFile]:
    """Put each input into `folder` of ComfyUI's input directory (directly when it is on this
    machine, else by upload); maps the client's name to where it was stored."""

    stored_names = _distinct_safe_names([item.name for item in inputs])

    def upload(pair: tuple[PreparedInput, str]) -> tuple[str, UploadedFile]:
        item, name = pair
        stored = folders.write_input(item.data, name, subfolder=folder) if folders else None
        return item.name, stored or client.upload(item.data, name, subfolder=folder)

    return dict(fan_out(upload, list(zip(inputs, stored_names))))


def _distinct_safe_names(names: list[str]) -> list[str]:
    """`safe_filename` of each name, numbered where two would meet ("a/x.png" and "b/x.png"
    both reduce to "x.png"): written side by side, the second would replace the first."""
    taken: set[str] = set()
    result: list[str] = []
    for name in names:
        safe = candidate = safe_filename(name)
        path = PurePosixPath(safe)
        number = 1
        while candidate.lower() in taken:
            number += 1
            candidate = f"{path.stem}-{number}{path.suffix}"
        taken.add(candidate.lower())
        result.append(candidate)
    return result


# --- decoding ---------------------------------------------------------------------------------
def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def decode_payload(value: str, field: str, limits: InputLimits) -> bytes:
    """The bytes of one base64 text, data: URI or http(s) URL, checked against `limits`."""
    if _is_url(value):
        policy = UrlPolicy(
            max_bytes=limits.max_bytes,
            timeout_s=limits.fetch_timeout_s,
            allow_private=limits.allow_private_urls,
        )
        return fetch_url(value, policy, field=field, cancel=limits.cancel).data
    start = _payload_start(value, field)
    # Checked before slicing: the slice copies the whole payload.
    _check_encoded_size(len(value) - start, field, limits.max_bytes)
    return _strict_base64(value[start:] if start else value, field, limits.max_bytes)


def _payload_start(value: str, field: str) -> int:
    """Where the base64 text of an inline input starts: after a data: URI's header, or 0."""
    if value[:5].lower() == "data:":
        match = _DATA_URI.match(value[:512])
        if not match or ";base64" not in match.group("params").lower():
            raise InvalidInput(
                f"{field}: a data: URI must be of the form data:<type>;base64,<data>",
                [{"field": field, "problem": "malformed data URI"}],
            )
        return match.end()
    if "://" in value[:16]:
        scheme = value.split("://", 1)[0]
        raise InvalidInput(
            f"{field}: URL scheme {scheme!r} is not supported; use http(s), a data: URI or base64",
            [{"field": field, "problem": "unsupported scheme", "scheme": scheme}],
        )
    return 0


def _check_encoded_size(length: int, field: str, max_bytes: int) -> None:
    # Refuse by length before decoding, so a huge claim costs no memory beyond the string.
    if length // 4 * 3 > max_bytes + 3:
        raise InvalidInput(
            f"{field}: the input is about {length // 4 * 3 / 1e6:.1f} MB, over the "
            f"{max_bytes / 1e6:.1f} MB limit (MAX_INPUT_BYTES)",
            [{"field": field, "problem": "too large", "limit_bytes": max_bytes}],
        )


def _strict_base64(text: str, field: str, max_bytes: int) -> bytes:
    _check_encoded_size(len(text), field, max_bytes)
    if _BASE64_WHITESPACE.search(text[:4096]) or _BASE64_WHITESPACE.search(text[-4096:]):
        text = _BASE64_WHITESPACE.sub("", text)
    try:
        # pybase64's SIMD decoder, as strict as the standard library's with validate=True
        # (any character outside the alphabet, or bad padding, is an error): about 9x faster.
        data = pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidInput(
            f"{field}: not valid base64 ({exc}); send base64, a data: URI or an http(s) URL",
            [{"field": field, "problem": "invalid base64"}],
        ) from None
    if not data:
        raise InvalidInput(f"{field}: the input is empty", [{"field": field, "problem": "empty"}])
    return data
