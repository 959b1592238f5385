"""What an input file may be: its extension, and content that agrees with it.

Decided before any byte reaches ComfyUI:

* Its name ends in one of `ALLOWED_SUFFIXES`: images, video and audio, the media ComfyUI's
  loaders read. Anything else (no extension, `.sh`, `.safetensors`, `.svg`) is refused before
  it is fetched or decoded: a worker that stores arbitrary files for an unauthenticated API is
  a file drop, and the list is short enough to read. A deployment whose custom nodes read
  other files names their extensions in EXTRA_INPUT_EXTENSIONS (content not checked).
* Its content agrees with the extension's family. An image name needs content Pillow opens
  as one of `IMAGE_FORMATS` (only the header is read, under MAX_PIXELS); other image formats
  are refused because their Pillow plugins do more than decode pixels (EPS runs Ghostscript).
  Within the image family the exact format may differ from the extension: ComfyUI and Pillow
  read images by content, and worker-comfyui clients routinely send JPEG data named
  `input.png`. Video and audio names are checked against their container's magic bytes
  (`ftyp` for MP4/MOV/M4A, EBML for WebM/MKV, RIFF/WAVE, fLaC, ID3 or an MPEG frame sync,
  OggS); a mismatch says what the content looks like.
* An image stays under MAX_PIXELS counting every frame: the sum of width x height over its
  frames (frames x width x height when they share a size, as in APNG, GIF and animated WebP;
  TIFF pages are counted at their own sizes), because ComfyUI's LoadImage decodes every frame
  to float32. PNG and WebP declare their frame count in the header; GIF, TIFF and MPO frames
  are counted by seeking one at a time, and the count stops as soon as the sum passes the
  limit, so a file with a million tiny frames costs no more to check than the limit allows.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from PIL import Image

from ..errors import InvalidInput
from ..job_files import safe_filename

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



def check_suffix(name: str, field: str, extra: frozenset[str] = frozenset()) -> None:
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


def check_content(name: str, data: bytes, field: str, *, max_pixels: int) -> None:
    """The content agrees with the name's extension; images stay under the pixel limit."""
    suffix = PurePosixPath(safe_filename(name).lower()).suffix
    if suffix in IMAGE_SUFFIXES:
        _check_image(name, data, field, max_pixels)
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


@dataclass(frozen=True)
class _Extent:
    """An image's first frame size, and the frames and pixels counted (see `_count_frames`)."""

    width: int
    height: int
    frames: int
    pixels: int
    one_size: bool  # every counted frame has the first frame's size
    exact: bool  # `frames` is the image's frame count, not where counting stopped


# Formats whose frame count Pillow takes from the header (APNG's acTL, WebP's animation
# header) and whose frames all have the canvas size: counting them costs nothing.
_DECLARED_FRAME_COUNT = frozenset({"PNG", "WEBP"})


def _count_frames(image: Image.Image, max_pixels: int) -> _Extent:
    width, height = image.size
    if image.format in _DECLARED_FRAME_COUNT:
        frames = int(getattr(image, "n_frames", 1))
        return _Extent(width, height, frames, frames * width * height, True, True)
    # Not `n_frames`: for GIF and TIFF it walks the whole file. Seeking frame by frame lets the
    # count stop once the limit is passed; a GIF seek decodes the frame before it, so what is
    # decoded here stays within the limit (plus one frame), never more.
    frames, pixels, one_size = 1, width * height, True
    while pixels <= max_pixels:
        try:
            image.seek(frames)
        except EOFError:
            return _Extent(width, height, frames, pixels, one_size, True)
        frames += 1
        pixels += image.size[0] * image.size[1]
        one_size = one_size and image.size == (width, height)
    return _Extent(width, height, frames, pixels, one_size, False)


def _check_image(name: str, data: bytes, field: str, max_pixels: int) -> None:
    """Reads headers (and, for GIF, at most MAX_PIXELS worth of frames): a 20000x20000 PNG
    costs its file size, not its pixels."""
    try:
        # `formats` keeps Pillow from even identifying content with other plugins.
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
            size: tuple[int, int] | None = image.size
            extent = _count_frames(image, max_pixels) if _within(image.size, max_pixels) else None
    except Image.DecompressionBombError:
        size, extent = None, None
    except Exception:  # noqa: BLE001 (whatever Pillow raises, the content is no image)
        found = _sniff(data)
        looks = f" (it looks like {found})" if found else ""
        raise InvalidInput(
            f"{field}: {name!r} is named as an image but its content is not an image Pillow "
            f"can read as {'/'.join(IMAGE_FORMATS)}{looks}",
            [{"field": field, "problem": "not an image", "name": name, "content": found}],
        ) from None
    if size is None or size[0] * size[1] > max_pixels:
        width, height = size or (None, None)
        what = (
            "larger than Pillow will open (a decompression bomb)"
            if size is None
            else f"{width}x{height} pixels"
        )
        raise InvalidInput(
            f"{field}: {name!r} is {what}, over the limit of "
            f"{max_pixels} pixels (MAX_PIXELS)",
            [{"field": field, "problem": "too many pixels", "width": width, "height": height}],
        )
    if extent is not None and extent.pixels > max_pixels:
        _refuse_frames(name, field, extent, max_pixels)


def _within(size: tuple[int, int], max_pixels: int) -> bool:
    return size[0] * size[1] <= max_pixels


def _refuse_frames(name: str, field: str, extent: _Extent, max_pixels: int) -> None:
    count = f"{extent.frames}" if extent.exact else f"at least {extent.frames}"
    shape = (
        f"frames of {extent.width}x{extent.height} pixels"
        if extent.one_size
        else f"frames (the first {extent.width}x{extent.height} pixels)"
    )
    raise InvalidInput(
        f"{field}: {name!r} has {count} {shape}, {extent.pixels} pixels in all, over the "
        f"limit of {max_pixels} pixels (MAX_PIXELS counts every frame)",
        [
            {
                "field": field,
                "problem": "too many pixels",
                "width": extent.width,
                "height": extent.height,
                "frames": extent.frames,
            }
        ],
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
