"""The workflow in a file ComfyUI wrote: JSON text parsed within bounds, or an image's metadata.

JSON: Python's parser builds every list and object of a text at once, each costing about 60
bytes against the 2 or 3 of the text (`[],`): a few MB of text can ask for gigabytes. So
before parsing, the text's size is held to the caller's limit, its lists and objects (its
`[` and `{`, strings included: an overcount, never an undercount) to `MAX_CONTAINERS`, and its
values (each but the first in a list or object follows a `,`) to `MAX_VALUES`; a text nested
past what the parser's recursion allows is refused, not crashed on.

PNG: text chunks `prompt` (the API graph that ran) and `workflow` (the editor workflow),
`tEXt` as ComfyUI writes them, or `zTXt`/`iTXt`; an `eXIf` chunk is read too.
WebP (SaveAnimatedWEBP): EXIF entries whose text starts with `prompt:` or `workflow:`
(ComfyUI stores them in the Make/Model tags and counts down from there for extra entries).

The file is walked chunk by chunk; pixel data is skipped, never decompressed (a 13000x13000
PNG of 657 KB is half a gigabyte of pixels). Each text is held to the caller's size limit,
compressed ones while they are inflated, and parsed by `load_json` within its bounds.
"""

from __future__ import annotations

import json
import logging
import struct
import warnings
import zlib
from collections.abc import Iterator
from typing import Any

from PIL import Image

from .errors import TooLarge, UnsupportedStructure, problem

log = logging.getLogger(__name__)

MAX_CONTAINERS = 200_000
"""Lists and objects in one workflow text: 100 times those of the largest template (1,783)."""
MAX_VALUES = 500_000
"""Values in one workflow text: 100 times those of the largest template (4,812 commas). Each is
a Python object once parsed: 8 MiB of numbers (2 million) took 1.7 s and 217 MB."""


def _refuse(text: str) -> UnsupportedStructure:
    return UnsupportedStructure(text, [problem(None, None, text)])


def load_json(text: bytes | str, max_bytes: int, what: str = "the workflow text") -> Any:
    """The JSON value of `text`; `TooLarge` or `UnsupportedStructure` past the bounds, and
    `ValueError` when it is not JSON at all."""
    data = text.encode("utf-8", errors="surrogatepass") if isinstance(text, str) else text
    if len(data) > max_bytes:
        raise TooLarge(what, len(data), max_bytes)
    containers = data.count(b"[") + data.count(b"{")
    if containers > MAX_CONTAINERS:
        raise _refuse(f"{what} holds {containers} lists and objects, more than the "
                      f"{MAX_CONTAINERS} a workflow may")
    values = data.count(b",") + containers + 1
    if values > MAX_VALUES:
        raise _refuse(f"{what} holds about {values} values, more than the {MAX_VALUES} a "
                      "workflow may")
    try:
        return json.loads(data)
    except RecursionError:
        raise _refuse(f"{what} is nested too deeply to be a workflow") from None


_PNG = b"\x89PNG\r\n\x1a\n"
_KEYS = ("prompt", "workflow")
DEFAULT_MAX_TEXT_BYTES = 32 * 1024 * 1024
"""Longest workflow text read from an image unless the caller says otherwise."""


def _json_object(text: bytes | str, max_bytes: int) -> dict[str, Any] | None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = text.strip().rstrip("\x00")
    try:
        value = load_json(text, max_bytes, "the workflow text in the image")
    except ValueError:
        log.debug("embedded metadata is not JSON: %.60s", text)
        return None
    return value if isinstance(value, dict) else None


def _inflate(data: bytes, max_bytes: int, key: str) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise ValueError(f"the image's compressed '{key}' text is corrupt") from exc
    if len(out) > max_bytes:
        raise TooLarge(f"the image's compressed '{key}' text", max_bytes + 1, max_bytes)
    return out


def _png_text(kind: bytes, body: bytes, max_bytes: int) -> tuple[str, str] | None:
    """(keyword, text) of a text chunk whose keyword is one ComfyUI writes, else None;
    tEXt and zTXt are Latin-1, iTXt UTF-8 (as PNG says, and Pillow reads them)."""
    key_bytes, _, rest = body.partition(b"\x00")
    key = key_bytes.decode("latin-1")
    if key not in _KEYS:
        return None
    if kind == b"tEXt":
        return key, rest.decode("latin-1")
    if kind == b"zTXt":
        return key, _inflate(rest[1:], max_bytes, key).decode("latin-1")
    # iTXt: compression flag, method, language tag\0, translated keyword\0, text
    if len(rest) < 2:
        return None
    compressed, text = rest[0], rest[2:].split(b"\x00", 2)[-1]
    text = _inflate(text, max_bytes, key) if compressed else text
    return key, text.decode("utf-8", errors="replace")


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(type, body) of each chunk but the pixels', up to IEND or a truncated end."""
    view, position = memoryview(data), len(_PNG)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", view[position:position + 8])
        start, position = position + 8, position + 12 + length
        if kind == b"IEND":
            return
        if kind not in (b"IDAT", b"fdAT"):
            yield kind, bytes(view[start:min(start + length, len(data))])


def _from_png(data: bytes, max_bytes: int) -> tuple[dict[str, str], bytes | None]:
    texts: dict[str, str] = {}
    exif = None
    for kind, body in _png_chunks(data):
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            found = _png_text(kind, body, max_bytes)
            if found is not None:
                texts[found[0]] = found[1]
        elif kind == b"eXIf":
            exif = body
    return texts, exif


def _webp_exif(data: bytes) -> bytes | None:
    """The EXIF chunk of a WebP file (ComfyUI writes no workflow into its XMP)."""
    view, position = memoryview(data), 12
    while position + 8 <= len(data):
        kind, length = struct.unpack("<4sI", view[position:position + 8])
        if kind == b"EXIF":
            return bytes(view[position + 8:position + 8 + length])
        position += 8 + length + (length & 1)
    return None


def _from_exif(exif: bytes, max_bytes: int) -> dict[str, dict[str, Any] | None]:
    found: dict[str, dict[str, Any] | None] = {}
    table = Image.Exif()
    try:
        with warnings.catch_warnings():  # Pillow warns of truncated tags: a broken block
            warnings.simplefilter("ignore")
            table.load(exif)
    except Exception:  # whatever Pillow's TIFF reader raises: no usable EXIF
        log.debug("unreadable EXIF block", exc_info=True)
        return found
    for value in table.values():
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        if not isinstance(value, str):
            continue
        for key in _KEYS:
            if value.startswith(key + ":") and key not in found:
                found[key] = _json_object(value[len(key) + 1:], max_bytes)
    return found


def read_image_workflow(data: bytes, max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES,
                        ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(API prompt or None, editor workflow or None) from a ComfyUI-written PNG or WebP.

    Raises `ValueError` for a file that is neither, `ConversionError` for a text past
    `max_text_bytes` or past `load_json`'s bounds; a broken EXIF block counts as none.
    """
    if data.startswith(_PNG):
        texts, exif = _from_png(data, max_text_bytes)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        texts, exif = {}, _webp_exif(data)
    else:
        raise ValueError("not a PNG or WebP file")
    found = {key: _json_object(texts[key], max_text_bytes) for key in _KEYS if key in texts}
    if exif is not None and not all(found.get(k) for k in _KEYS):
        for key, value in _from_exif(exif, max_text_bytes).items():
            found[key] = found.get(key) or value
    prompt, workflow = found.get("prompt"), found.get("workflow")
    if workflow is not None and "nodes" not in workflow:
        workflow = None  # not an editor workflow; keep only what can be used
    return prompt, workflow
