"""A job's input files: base64, data URI or URL -> checked bytes -> uploaded to ComfyUI.

Each job's files go to its own subfolder of ComfyUI's input directory, so jobs never see or
overwrite each other's files and cleanup removes exactly one folder (see `isolation`).

What an input may be, decided before any byte reaches ComfyUI:

* Its name ends in one of `ALLOWED_SUFFIXES`: images, video and audio, the media ComfyUI's
  loaders read. Anything else (no extension, `.sh`, `.safetensors`, `.svg`) is refused before
  it is fetched or decoded: a worker that stores arbitrary files for an unauthenticated API is
  a file drop, and the list is short enough to read.
* Its content agrees with the extension's family. An image name needs content Pillow opens
  as one of `IMAGE_FORMATS` (only the header is read, under MAX_PIXELS); other image formats
  are refused because their Pillow plugins do more than decode pixels (EPS runs Ghostscript).
  Within the image family the exact format may differ from the extension: ComfyUI and Pillow
  read images by content, and worker-comfyui clients routinely send JPEG data named
  `input.png`. Video and audio names are checked against their container's magic bytes
  (`ftyp` for MP4/MOV/M4A, EBML for WebM/MKV, RIFF/WAVE, fLaC, ID3 or an MPEG frame sync,
  OggS); a mismatch says what the content looks like.
* Its size is checked before it is decoded, from the length of the text, so a huge base64
  string or data URI costs nothing beyond the string the platform already holds.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import PurePosixPath

from PIL import Image

from .client import ComfyClient, UploadedFile
from .contract import InputFile
from .errors import InvalidInput
from .folders import ComfyFolders
from .url_fetch import UrlPolicy, fetch_url

_DATA_URI = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[^,;]*)*),", re.IGNORECASE
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._ ()+-]")
_BASE64_WHITESPACE = re.compile(r"\s+")
_UPLOAD_THREADS = 4
_MAX_NAME = 128
_MAX_SUFFIX = 16

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
IMAGE_FORMATS = ("BMP", "GIF", "JPEG", "PNG", "TIFF", "WEBP")
"""Pillow formats an image name may hold (JPEG's opener also gives MPO, what phones write)."""

# Container names as `_sniff` reports them, accepted per extension.
VIDEO_SUFFIXES: dict[str, frozenset[str]] = {
    ".mp4": frozenset({"MP4/MOV"}),
    ".m4v": frozenset({"MP4/MOV"}),
    ".mov": frozenset({"MP4/MOV"}),
    ".webm": frozenset({"WebM/Matroska"}),
    ".mkv": frozenset({"WebM/Matroska"}),
    ".avi": frozenset({"AVI"}),
}
AUDIO_SUFFIXES: dict[str, frozenset[str]] = {
    ".wav": frozenset({"WAV"}),
    ".flac": frozenset({"FLAC"}),
    ".mp3": frozenset({"MP3", "MPEG audio"}),
    ".aac": frozenset({"MPEG audio"}),
    ".m4a": frozenset({"MP4/MOV"}),
    ".ogg": frozenset({"Ogg"}),
    ".oga": frozenset({"Ogg"}),
    ".opus": frozenset({"Ogg"}),
}
ALLOWED_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES.keys() | AUDIO_SUFFIXES.keys()


@dataclass(frozen=True)
class InputLimits:
    max_bytes: int
    max_pixels: int
    max_inputs: int
    fetch_timeout_s: float
    allow_private_urls: bool
    extra_suffixes: frozenset[str] = frozenset()  # EXTRA_INPUT_EXTENSIONS: accepted unchecked


@dataclass(frozen=True)
class PreparedInput:
    name: str  # as the client named it, and as the graph refers to it
    data: bytes


def safe_filename(name: str) -> str:
    """A plain file name with no path, no control characters and nothing the shell or the
    file system treats specially; the extension is kept, also when the name is shortened."""
    name = unicodedata.normalize("NFKC", name).replace("\\", "/").split("/")[-1]
    name = _UNSAFE.sub("_", name).strip(" .")
    if len(name) > _MAX_NAME:
        suffix = PurePosixPath(name).suffix
        suffix = suffix if len(suffix) <= _MAX_SUFFIX else ""
        name = name[: _MAX_NAME - len(suffix)].rstrip(" .") + suffix
    return name or "input"


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
    # The cheap checks on every input before any is fetched or decoded: an input that would
    # be refused is not worth a download.
    for index, item in enumerate(items):
        if not _is_url(item.image):
            field = f"images[{index}].image"
            start = _payload_start(item.image, field)
            _check_encoded_size(len(item.image) - start, field, limits.max_bytes)
        _check_suffix(item.name, f"images[{index}].name", limits.extra_suffixes)

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

    stored_names = _distinct_safe_names([item.name for item in inputs])

    def upload(pair: tuple[PreparedInput, str]) -> tuple[str, UploadedFile]:
        item, name = pair
        stored = folders.write_input(item.data, name, subfolder=folder) if folders else None
        return item.name, stored or client.upload(item.data, name, subfolder=folder)

    pairs = list(zip(inputs, stored_names))
    if len(pairs) <= 1:
        return dict(upload(p) for p in pairs)
    with ThreadPoolExecutor(max_workers=min(_UPLOAD_THREADS, len(pairs))) as pool:
        return dict(pool.map(upload, pairs))


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


def _decode_one(value: str, field: str, limits: InputLimits) -> bytes:
    if _is_url(value):
        policy = UrlPolicy(
            max_bytes=limits.max_bytes,
            timeout_s=limits.fetch_timeout_s,
            allow_private=limits.allow_private_urls,
        )
        return fetch_url(value, policy, field=field).data
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
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(
            f"{field}: not valid base64 ({exc}); send base64, a data: URI or an http(s) URL",
            [{"field": field, "problem": "invalid base64"}],
        ) from None
    if not data:
        raise InvalidInput(f"{field}: the input is empty", [{"field": field, "problem": "empty"}])
    return data


# --- what the content is ---------------------------------------------------------------------
def _check_suffix(name: str, field: str, extra: frozenset[str] = frozenset()) -> None:
    # The name that reaches the disk is the one judged ("x.png\x00.sh" is stored as
    # "x.png_.sh").
    suffix = PurePosixPath(safe_filename(name).lower()).suffix
    if suffix in ALLOWED_SUFFIXES or suffix in extra:
        return
    what = f"the extension {suffix!r}" if suffix else "no extension"
    raise InvalidInput(
        f"{field}: {name!r} has {what}; inputs must be images, video or audio named with one "
        f"of: {' '.join(sorted(ALLOWED_SUFFIXES))} (EXTRA_INPUT_EXTENSIONS adds more)",
        [{"field": field, "problem": "file type not allowed", "suffix": suffix}],
    )


def _check_content(name: str, data: bytes, field: str, limits: InputLimits) -> None:
    """The content agrees with the name's extension; images stay under the pixel limit."""
    suffix = PurePosixPath(safe_filename(name).lower()).suffix
    if suffix in IMAGE_SUFFIXES:
        _check_image(name, data, field, limits)
        return
    if suffix not in VIDEO_SUFFIXES and suffix not in AUDIO_SUFFIXES:
        return  # a type the deployment chose to accept (EXTRA_INPUT_EXTENSIONS)
    kind, accepted = (
        ("video", VIDEO_SUFFIXES[suffix])
        if suffix in VIDEO_SUFFIXES
        else ("audio", AUDIO_SUFFIXES[suffix])
    )
    found = _sniff(data)
    if found not in accepted:
        looks = f"looks like {found}" if found else "is not a format we recognise"
        raise InvalidInput(
            f"{field}: {name!r} is named as {kind} ({suffix}) but its content {looks}; "
            f"send {' or '.join(sorted(accepted))} data, or name the file for what it is",
            [
                {
                    "field": field,
                    "problem": "content does not match the extension",
                    "suffix": suffix,
                    "content": found,
                }
            ],
        )


def _check_image(name: str, data: bytes, field: str, limits: InputLimits) -> None:
    """Reads only the header: a 20000x20000 PNG costs its file size, not its pixels."""
    try:
        # `formats` keeps Pillow from even identifying content with other plugins.
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        width = height = None
    except Exception:  # noqa: BLE001 (whatever Pillow raises, the content is no image)
        found = _sniff(data)
        looks = f" (it looks like {found})" if found else ""
        raise InvalidInput(
            f"{field}: {name!r} is named as an image but its content is not an image Pillow "
            f"can read as {'/'.join(IMAGE_FORMATS)}{looks}",
            [{"field": field, "problem": "not an image", "name": name, "content": found}],
        ) from None
    if width is None or height is None or width * height > limits.max_pixels:
        size = (
            "larger than Pillow will open (a decompression bomb)"
            if width is None
            else f"{width}x{height} pixels"
        )
        raise InvalidInput(
            f"{field}: {name!r} is {size}, over the limit of "
            f"{limits.max_pixels} pixels (MAX_PIXELS)",
            [{"field": field, "problem": "too many pixels", "width": width, "height": height}],
        )


_ISO_BOX_TYPES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"mif1", b"msf1", b"avif", b"avis")


def _mpeg_audio_frame(head: bytes) -> bool:
    return len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0


# (test, what it is) in the order tried; the names are what error messages and the suffix
# tables use.
_SIGNATURES: tuple[tuple[Callable[[bytes], bool], str], ...] = (
    (lambda h: h.startswith(b"\x89PNG\r\n\x1a\n"), "a PNG image"),
    (lambda h: h.startswith(b"\xff\xd8\xff"), "a JPEG image"),
    (lambda h: h[:6] in (b"GIF87a", b"GIF89a"), "a GIF image"),
    (lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP", "a WebP image"),
    (lambda h: h[:4] in (b"II*\x00", b"MM\x00*"), "a TIFF image"),
    (lambda h: h[4:8] == b"ftyp" and h[8:12] in _HEIF_BRANDS, "a HEIF/AVIF image"),
    (lambda h: h[4:8] in _ISO_BOX_TYPES, "MP4/MOV"),
    (lambda h: h.startswith(b"\x1a\x45\xdf\xa3"), "WebM/Matroska"),
    (lambda h: h[:4] == b"RIFF" and h[8:12] == b"AVI ", "AVI"),
    (lambda h: h[:4] == b"RIFF" and h[8:12] == b"WAVE", "WAV"),
    (lambda h: h.startswith(b"fLaC"), "FLAC"),
    (lambda h: h.startswith(b"ID3"), "MP3"),
    (lambda h: h.startswith(b"OggS"), "Ogg"),
    (_mpeg_audio_frame, "MPEG audio"),
    (lambda h: h.startswith(b"%PDF"), "a PDF document"),
    (lambda h: h.startswith((b"%!PS", b"\xc5\xd0\xd3\xc6")), "PostScript"),
    (lambda h: h.startswith(b"PK\x03\x04"), "a ZIP archive"),
    (lambda h: h.startswith(b"\x7fELF"), "an executable"),
    (lambda h: h.startswith(b"#!"), "a script"),
    (lambda h: h.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"), "HTML/XML text"),
    (lambda h: h[:2] == b"BM", "a BMP image"),
)


def _sniff(data: bytes) -> str | None:
    """What `data` is by its first bytes, as the names above; None when unknown."""
    head = data[:64]
    for test, what in _SIGNATURES:
        if test(head):
            return what
    return None
