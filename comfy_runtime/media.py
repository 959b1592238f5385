"""A job's input files: base64, data URI or URL -> checked bytes -> uploaded to ComfyUI.

Each job's files go to its own subfolder of ComfyUI's input directory, so jobs never see or
overwrite each other's files and cleanup removes exactly one folder (see `isolation`).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from PIL import Image

from .client import ComfyClient, UploadedFile
from .contract import InputFile
from .errors import InvalidInput
from .folders import ComfyFolders
from .url_fetch import UrlPolicy, fetch_url

_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[^,;]*)*),", re.I)
_UNSAFE = re.compile(r"[^A-Za-z0-9._ ()+-]")
_BASE64_WHITESPACE = re.compile(r"\s+")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
_UPLOAD_THREADS = 4


@dataclass(frozen=True)
class InputLimits:
    max_bytes: int
    max_pixels: int
    max_inputs: int
    fetch_timeout_s: float
    allow_private_urls: bool


@dataclass(frozen=True)
class PreparedInput:
    name: str  # as the client named it, and as the graph refers to it
    data: bytes


def safe_filename(name: str) -> str:
    """A plain file name with no path, no control characters and nothing the shell or the
    file system treats specially; the extension is kept."""
    name = unicodedata.normalize("NFKC", name).replace("\\", "/").split("/")[-1]
    name = _UNSAFE.sub("_", name).strip(" .")
    return name[:128] or "input"


def decode_inputs(items: list[InputFile], limits: InputLimits) -> list[PreparedInput]:
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

    def decode(pair: tuple[int, InputFile]) -> PreparedInput:
        index, item = pair
        field = f"images[{index}].image"
        data = _decode_one(item.image, field, limits)
        _check_content(item.name, data, f"images[{index}]", limits)
        return PreparedInput(name=item.name, data=data)

    pairs = list(enumerate(items))
    if len(pairs) <= 1:
        return [decode(p) for p in pairs]
    with ThreadPoolExecutor(max_workers=min(_UPLOAD_THREADS, len(pairs))) as pool:
        return list(pool.map(decode, pairs))


def upload_inputs(
    client: ComfyClient,
    inputs: list[PreparedInput],
    *,
    folder: str,
    folders: ComfyFolders | None = None,
) -> dict[str, UploadedFile]:
    """Put each input into `folder` of ComfyUI's input directory (directly when it is on this
    machine, else by upload); maps the client's name to where it was stored."""

    def upload(item: PreparedInput) -> tuple[str, UploadedFile]:
        name = safe_filename(item.name)
        stored = folders.write_input(item.data, name, subfolder=folder) if folders else None
        return item.name, stored or client.upload(item.data, name, subfolder=folder)

    if len(inputs) <= 1:
        return dict(upload(i) for i in inputs)
    with ThreadPoolExecutor(max_workers=min(_UPLOAD_THREADS, len(inputs))) as pool:
        return dict(pool.map(upload, inputs))


# --- decoding ---------------------------------------------------------------------------------
def _decode_one(value: str, field: str, limits: InputLimits) -> bytes:
    if value.startswith(("http://", "https://")):
        policy = UrlPolicy(
            max_bytes=limits.max_bytes,
            timeout_s=limits.fetch_timeout_s,
            allow_private=limits.allow_private_urls,
        )
        return fetch_url(value, policy, field=field).data
    if value[:5].lower() == "data:":
        match = _DATA_URI.match(value[:512])
        if not match or ";base64" not in match.group("params").lower():
            raise InvalidInput(
                f"{field}: a data: URI must be of the form data:<type>;base64,<data>",
                [{"field": field, "problem": "malformed data URI"}],
            )
        value = value[match.end():]
    elif "://" in value[:16]:
        scheme = value.split("://", 1)[0]
        raise InvalidInput(
            f"{field}: URL scheme {scheme!r} is not supported; use http(s), a data: URI or base64",
            [{"field": field, "problem": "unsupported scheme", "scheme": scheme}],
        )
    return _strict_base64(value, field, limits.max_bytes)


def _strict_base64(text: str, field: str, max_bytes: int) -> bytes:
    # Refuse by length before decoding, so a huge claim costs no memory beyond the string.
    if len(text) // 4 * 3 > max_bytes + 3:
        raise InvalidInput(
            f"{field}: the input is about {len(text) // 4 * 3 / 1e6:.1f} MB, over the "
            f"{max_bytes / 1e6:.1f} MB limit (MAX_INPUT_BYTES)",
            [{"field": field, "problem": "too large", "limit_bytes": max_bytes}],
        )
    if _BASE64_WHITESPACE.search(text[:4096]) or _BASE64_WHITESPACE.search(text[-4096:]):
        text = _BASE64_WHITESPACE.sub("", text)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(
            f"{field}: not valid base64 ({exc}); send base64, a data: URI or an http(s) URL",
            [{"field": field, "problem": "invalid base64"}],
        ) from None
    if not data:
        raise InvalidInput(f"{field}: the input is empty", [{"field": field, "problem": "empty"}])
    return data


def _check_content(name: str, data: bytes, field: str, limits: InputLimits) -> None:
    """Images must open and stay under the pixel limit; this reads only the header."""
    if PurePosixPath(name.lower()).suffix not in IMAGE_SUFFIXES:
        return
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        width = height = None
    except Exception:
        raise InvalidInput(
            f"{field}: {name!r} is named as an image but its content is not an image Pillow "
            "can read",
            [{"field": field, "problem": "not an image", "name": name}],
        ) from None
    if width is None or height is None or width * height > limits.max_pixels:
        size = "too many" if width is None else f"{width}x{height}"
        raise InvalidInput(
            f"{field}: {name!r} is {size} pixels, over the limit of "
            f"{limits.max_pixels} pixels (MAX_PIXELS)",
            [{"field": field, "problem": "too many pixels", "width": width, "height": height}],
        )
