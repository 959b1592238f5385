"""Small real images for tests, made with Pillow."""

from __future__ import annotations

import base64
import io

from PIL import Image


def png_bytes(width: int = 32, height: int = 24, color: tuple[int, ...] = (10, 200, 30), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


def png_b64(width: int = 32, height: int = 24, color: tuple[int, ...] = (10, 200, 30)) -> str:
    return base64.b64encode(png_bytes(width, height, color)).decode()


def open_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image
