"""Format conversion: still images convert, alpha is handled, the rest passes through."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from comfy_runtime.outputs.collect import OutputFileData, OutputRef
from comfy_runtime.outputs.delivery import convert_image
from tests.images import open_image, png_bytes


def _file(data: bytes, name: str = "ComfyUI_00001_.png", kind: str = "images", animated: bool = False,
          mime: str = "image/png") -> OutputFileData:
    ref = OutputRef("9", name, "", "output", kind, animated)  # type: ignore[arg-type]
    return OutputFileData(ref=ref, filename=name, data=data, mime_type=mime)


@pytest.mark.parametrize(("target", "mime", "suffix", "fmt"),
                         [("jpeg", "image/jpeg", ".jpg", "JPEG"), ("webp", "image/webp", ".webp", "WEBP")])
def test_png_converts(target: str, mime: str, suffix: str, fmt: str) -> None:
    out = convert_image(_file(png_bytes(64, 48)), target, 85)
    assert out.mime_type == mime
    assert out.filename == "ComfyUI_00001_" + suffix
    image = open_image(out.data)
    assert (image.format, image.size) == (fmt, (64, 48))


def test_jpeg_lays_transparency_on_white() -> None:
    out = convert_image(_file(png_bytes(8, 8, (255, 0, 0, 0), mode="RGBA")), "jpeg", 95)
    pixel = open_image(out.data).convert("RGB").getpixel((4, 4))
    assert all(channel > 240 for channel in pixel)


def test_animated_and_non_images_pass_through() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:])
    animated = _file(buffer.getvalue(), "a.webp", animated=True, mime="image/webp")
    video = _file(b"\x00\x00\x00\x20ftypisom", "v.mp4", kind="videos", mime="video/mp4")
    assert convert_image(animated, "jpeg", 90) is animated
    assert convert_image(video, "jpeg", 90) is video


def test_same_format_is_untouched() -> None:
    original = _file(png_bytes())
    assert convert_image(original, "png", 90) is original
