"""Re-encode still images into the format a job asks for (Pillow).

Animated images, video, audio and other files pass through untouched: converting them would
drop frames or is not ours to do. JPEG has no alpha, so transparent pixels are laid on white.
"""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import PurePosixPath

from PIL import Image

from .outputs import OutputFileData

_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}


def convert_image(file: OutputFileData, target: str, quality: int) -> OutputFileData:
    """`file` in `target` format (png | jpeg | webp), or unchanged when it is not a still image."""
    if file.ref.kind != "images" or file.ref.animated or file.mime_type == _MIME[target]:
        return file
    with Image.open(file.open()) as image:
        if getattr(image, "n_frames", 1) > 1:
            return file
        image.load()
        buffer = io.BytesIO()
        if target == "jpeg":
            _flatten(image).save(buffer, "JPEG", quality=quality, optimize=True)
        elif target == "webp":
            image.save(buffer, "WEBP", quality=quality, method=4)
        else:
            image.save(buffer, "PNG", compress_level=4)
    name = str(PurePosixPath(file.filename).with_suffix(_EXTENSIONS[target]))
    return replace(file, filename=name, data=buffer.getvalue(), path=None, mime_type=_MIME[target])


def _flatten(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image if image.mode in ("RGB", "L") else image.convert("RGB")
