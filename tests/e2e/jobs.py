"""Job inputs the e2e tests send, and checks on what comes back."""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image

INPUT_COLOR = (10, 200, 30)
# ComfyUI inverts in float32 and truncates: 200 becomes 54, not 55 (recorded on a real one).
INVERTED_COLOR = (245, 54, 225)


def png_b64(color: tuple[int, int, int] = INPUT_COLOR, size: tuple[int, int] = (32, 24)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def invert_job() -> dict[str, Any]:
    """LoadImage(base64 PNG) -> ImageInvert -> SaveImage."""
    return {
        "workflow": {
            "1": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage",
                  "inputs": {"images": ["2", 0], "filename_prefix": "inv"}},
        },
        "images": [{"name": "photo.png", "image": png_b64()}],
    }


def sampler_job(steps: int) -> dict[str, Any]:
    """A txt2img graph on the double's stand-in checkpoint; KSampler reports every step."""
    return {
        "workflow": {
            "4": {"class_type": "CheckpointLoaderSimple",
                  "inputs": {"ckpt_name": "random-sd15.safetensors"}},
            "5": {"class_type": "EmptyLatentImage",
                  "inputs": {"width": 64, "height": 64, "batch_size": 1}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
            "3": {"class_type": "KSampler", "inputs": {
                "seed": 1, "steps": steps, "cfg": 7.0, "sampler_name": "euler",
                "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
                "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
            "9": {"class_type": "SaveImage",
                  "inputs": {"images": ["8", 0], "filename_prefix": "t2i"}},
        }
    }


def bad_node_job() -> dict[str, Any]:
    return {"workflow": {"1": {"class_type": "NoSuchNode", "inputs": {}}}}


def decode_image(item: dict[str, Any]) -> Image.Image:
    assert item.get("type") == "base64", f"expected an inline image, got {item.get('type')!r}"
    image = Image.open(io.BytesIO(base64.b64decode(item["data"])))
    image.load()
    return image


def assert_inverted(output: dict[str, Any]) -> None:
    """The job's first image is the input PNG, inverted."""
    images = output.get("images") or []
    assert len(images) == 1, f"expected one image, got {brief(output)}"
    image = decode_image(images[0])
    assert image.format == "PNG" and image.size == (32, 24)
    assert image.convert("RGB").getpixel((5, 5)) == INVERTED_COLOR


def brief(value: Any, limit: int = 600) -> str:
    """A result for an assertion message, without pages of base64."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"
