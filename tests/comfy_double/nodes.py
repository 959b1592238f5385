"""The nodes the double really executes (with Pillow) and the stand-ins for model nodes.

A node is a plain function of its inputs plus a NodeContext; it returns a NodeResult with the
node's outputs (by socket) and its UI output (what `executed` and the history show). Nodes that
must talk to the websocket mid-run (progress, previews) are coroutines.
"""

from __future__ import annotations

import hashlib
import json
import random
import string
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageFilter, ImageOps, ImageSequence

from .files import Dirs, resolve_annotated, save_slot
from .media import (
    Audio,
    ImageBatch,
    Latent,
    MaskBatch,
    StandIn,
    Video,
    placeholder_mp4,
    placeholder_webm,
    png_bytes,
    png_metadata,
    recorded_previews,
    silent_flac,
)


class InterruptProcessing(Exception):
    """Raised inside a run when /interrupt arrives; ComfyUI's InterruptProcessingException."""


ProgressFn = Callable[[int, int, "Image.Image | bytes | None"], Awaitable[None]]


@dataclass
class NodeContext:
    node_id: str
    dirs: Dirs
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    disable_metadata: bool
    progress: ProgressFn
    sleep: Callable[[float], Awaitable[None]]
    step_delay_s: float = 0.0
    previews: bool = False  # ComfyUI runs with a --preview-method other than none

    def metadata(self) -> dict[str, str] | None:
        return png_metadata(self.prompt, self.extra_data.get("extra_pnginfo"),
                            self.disable_metadata)


@dataclass
class NodeResult:
    outputs: tuple[Any, ...] = ()
    ui: dict[str, Any] | None = None


NodeFn = Callable[..., "NodeResult | Awaitable[NodeResult]"]
IsChangedFn = Callable[[Dirs, dict[str, Any]], Any]


@dataclass(frozen=True)
class NodeImpl:
    run: NodeFn
    is_changed: IsChangedFn | None = None
    cacheable: bool = True
    own_steps: bool = False
    """The node sleeps faults.step_delay_s per step itself (samplers)."""


REGISTRY: dict[str, NodeImpl] = {}


def node(class_type: str, *, is_changed: IsChangedFn | None = None, cacheable: bool = True,
         own_steps: bool = False) -> Callable[[NodeFn], NodeFn]:
    def register(fn: NodeFn) -> NodeFn:
        REGISTRY[class_type] = NodeImpl(fn, is_changed, cacheable, own_steps)
        return fn
    return register


# --- helpers ---------------------------------------------------------------------------------

_RESAMPLE = {
    "nearest-exact": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "area": Image.Resampling.BOX,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "bislerp": Image.Resampling.BICUBIC,
}


def _file_item(name: str, subfolder: str, kind: str) -> dict[str, str]:
    return {"filename": name, "subfolder": subfolder, "type": kind}


def _temp_prefix() -> str:
    # PreviewImage and friends: "ComfyUI_temp_" plus five random lowercase letters.
    return "ComfyUI_temp_" + "".join(random.choice(string.ascii_lowercase) for _ in range(5))


def _save_pngs(ctx: NodeContext, images: ImageBatch, base: Path, prefix: str, kind: str,
               compress_level: int) -> list[dict[str, str]]:
    slot = save_slot(base, prefix)
    metadata = ctx.metadata()
    results = []
    for batch_number, image in enumerate(images):
        name = slot.file_name("png", batch_number)
        (slot.folder / name).write_bytes(png_bytes(image, metadata, compress_level))
        results.append(_file_item(name, slot.subfolder, kind))
        slot.counter += 1
    return results


def _file_hash(dirs: Dirs, inputs: dict[str, Any]) -> str:
    path = resolve_annotated(dirs, str(inputs.get("image", "")))
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "missing"


def _open_frames(path: Path) -> list[Image.Image]:
    opened = Image.open(str(path))
    frames = []
    for frame in ImageSequence.Iterator(opened):
        frame = ImageOps.exif_transpose(frame) or frame
        if frames and frame.size != frames[0].size:
            continue
        frames.append(frame.copy())
    return frames


def _mask_of(frame: Image.Image) -> Image.Image:
    if "A" in frame.getbands():
        return ImageOps.invert(frame.getchannel("A"))
    if frame.mode == "P" and "transparency" in frame.info:
        return ImageOps.invert(frame.convert("RGBA").getchannel("A"))
    return Image.new("L", (64, 64), 0)


# --- image nodes -----------------------------------------------------------------------------

@node("LoadImage", is_changed=_file_hash)
def load_image(ctx: NodeContext, image: str) -> NodeResult:
    frames = _open_frames(resolve_annotated(ctx.dirs, image))
    images = ImageBatch(frame.convert("RGB") for frame in frames)
    masks = MaskBatch(_mask_of(frame) for frame in frames)
    return NodeResult((images, masks))


@node("LoadImageMask", is_changed=_file_hash)
def load_image_mask(ctx: NodeContext, image: str, channel: str) -> NodeResult:
    frame = _open_frames(resolve_annotated(ctx.dirs, image))[0]
    rgba = frame.convert("RGBA")
    band = {"alpha": "A", "red": "R", "green": "G", "blue": "B"}[channel]
    mask = rgba.getchannel(band)
    if band == "A":
        mask = ImageOps.invert(mask)
    return NodeResult((MaskBatch([mask]),))


@node("EmptyImage")
def empty_image(ctx: NodeContext, width: int, height: int, batch_size: int = 1,
                color: int = 0) -> NodeResult:
    rgb = ((color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF)
    return NodeResult((ImageBatch(Image.new("RGB", (width, height), rgb)
                                  for _ in range(batch_size)),))


def _f32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


def _comfy_invert(value: int) -> int:
    # ComfyUI computes 1 - v/255 in float32 and truncates when saving, so some values come
    # out one below 255 - v (200 -> 54, as recorded from a real ComfyUI).
    return int(_f32(255.0 * _f32(1.0 - _f32(_f32(value) / 255.0))))


_INVERT_LUT = [_comfy_invert(v) for v in range(256)] * 3


@node("ImageInvert")
def image_invert(ctx: NodeContext, image: ImageBatch) -> NodeResult:
    return NodeResult((ImageBatch(i.convert("RGB").point(_INVERT_LUT) for i in image),))


def _scaled_size(size: tuple[int, int], width: int, height: int) -> tuple[int, int]:
    old_w, old_h = size
    if width == 0 and height == 0:
        return size
    if width == 0:
        width = max(1, round(old_w * height / old_h))
    elif height == 0:
        height = max(1, round(old_h * width / old_w))
    return width, height


def _center_crop(image: Image.Image, width: int, height: int) -> Image.Image:
    old_w, old_h = image.size
    target = width / height
    if old_w / old_h > target:
        keep = round(old_h * target)
        left = (old_w - keep) // 2
        return image.crop((left, 0, left + keep, old_h))
    keep = round(old_w / target)
    top = (old_h - keep) // 2
    return image.crop((0, top, old_w, top + keep))


@node("ImageScale")
def image_scale(ctx: NodeContext, image: ImageBatch, upscale_method: str, width: int,
                height: int, crop: str = "disabled") -> NodeResult:
    out = ImageBatch()
    for item in image:
        size = _scaled_size(item.size, width, height)
        if size == item.size:
            out.append(item)
            continue
        if crop == "center":
            item = _center_crop(item, *size)
        out.append(item.resize(size, _RESAMPLE.get(upscale_method, Image.Resampling.BICUBIC)))
    return NodeResult((out,))


@node("ImageScaleBy")
def image_scale_by(ctx: NodeContext, image: ImageBatch, upscale_method: str,
                   scale_by: float) -> NodeResult:
    resample = _RESAMPLE.get(upscale_method, Image.Resampling.BICUBIC)
    return NodeResult((ImageBatch(
        i.resize((max(1, round(i.width * scale_by)), max(1, round(i.height * scale_by))),
                 resample) for i in image),))


@node("ImageBlur")
def image_blur(ctx: NodeContext, image: ImageBatch, blur_radius: int,
               sigma: float) -> NodeResult:
    return NodeResult((ImageBatch(i.filter(ImageFilter.GaussianBlur(sigma)) for i in image),))


@node("SolidMask")
def solid_mask(ctx: NodeContext, value: float, width: int, height: int) -> NodeResult:
    return NodeResult((MaskBatch([Image.new("L", (width, height), round(value * 255))]),))


@node("SaveImage")
def save_image(ctx: NodeContext, images: ImageBatch,
               filename_prefix: str = "ComfyUI") -> NodeResult:
    results = _save_pngs(ctx, images, ctx.dirs.output, filename_prefix, "output", 4)
    return NodeResult((), {"images": results})


@node("PreviewImage")
def preview_image(ctx: NodeContext, images: ImageBatch) -> NodeResult:
    results = _save_pngs(ctx, images, ctx.dirs.temp, _temp_prefix(), "temp", 1)
    return NodeResult((), {"images": results})


@node("MaskPreview")
def mask_preview(ctx: NodeContext, mask: MaskBatch) -> NodeResult:
    images = ImageBatch(m.convert("RGB") for m in mask)
    results = _save_pngs(ctx, images, ctx.dirs.temp, _temp_prefix(), "temp", 1)
    return NodeResult((), {"images": results})


@node("SaveAnimatedWEBP")
def save_animated_webp(ctx: NodeContext, images: ImageBatch, filename_prefix: str = "ComfyUI",
                       fps: float = 6.0, lossless: bool = True, quality: int = 80,
                       method: str = "default") -> NodeResult:
    slot = save_slot(ctx.dirs.output, filename_prefix)
    name = slot.file_name("webp")
    images[0].save(slot.folder / name, format="WEBP", save_all=True,
                   append_images=list(images[1:]), duration=round(1000 / fps), loop=0,
                   lossless=lossless, quality=quality,
                   method={"default": 4, "fastest": 0, "slowest": 6}.get(method, 4))
    return NodeResult((), {"images": [_file_item(name, slot.subfolder, "output")],
                           "animated": [True]})


@node("SaveAnimatedPNG")
def save_animated_png(ctx: NodeContext, images: ImageBatch, filename_prefix: str = "ComfyUI",
                      fps: float = 6.0, compress_level: int = 4) -> NodeResult:
    slot = save_slot(ctx.dirs.output, filename_prefix)
    name = slot.file_name("png")
    images[0].save(slot.folder / name, format="PNG", save_all=True,
                   append_images=list(images[1:]), duration=round(1000 / fps), loop=0,
                   compress_level=compress_level)
    return NodeResult((), {"images": [_file_item(name, slot.subfolder, "output")],
                           "animated": [True]})


@node("SaveImageWebsocket", cacheable=False)
async def save_image_websocket(ctx: NodeContext, images: ImageBatch) -> NodeResult:
    # No file and no UI output: the images only travel as binary preview frames.
    for step, image in enumerate(images):
        await ctx.progress(step, len(images), image)
    return NodeResult((), None)


# --- video and audio -------------------------------------------------------------------------

@node("CreateVideo")
def create_video(ctx: NodeContext, images: ImageBatch, fps: float,
                 audio: Audio | None = None) -> NodeResult:
    return NodeResult((Video(ImageBatch(images), fps, audio),))


@node("SaveVideo")
def save_video(ctx: NodeContext, video: Video, filename_prefix: str = "video/ComfyUI",
               format: str = "auto", codec: str = "auto") -> NodeResult:
    slot = save_slot(ctx.dirs.output, filename_prefix)
    name = slot.file_name("mp4")
    (slot.folder / name).write_bytes(placeholder_mp4(video))
    return NodeResult((), {"images": [_file_item(name, slot.subfolder, "output")],
                           "animated": [True]})


@node("SaveWEBM")
def save_webm(ctx: NodeContext, images: ImageBatch, filename_prefix: str = "ComfyUI",
              codec: str = "vp9", fps: float = 24.0, crf: float = 32.0) -> NodeResult:
    slot = save_slot(ctx.dirs.output, filename_prefix)
    name = slot.file_name("webm")
    (slot.folder / name).write_bytes(placeholder_webm(images))
    return NodeResult((), {"images": [_file_item(name, slot.subfolder, "output")],
                           "animated": [True]})


@node("EmptyAudio")
def empty_audio(ctx: NodeContext, duration: float, sample_rate: int = 44100,
                channels: int = 2) -> NodeResult:
    return NodeResult((Audio(sample_rate, channels, int(duration * sample_rate)),))


def _save_flac(ctx: NodeContext, audio: Audio, base: Path, prefix: str, kind: str) -> NodeResult:
    slot = save_slot(base, prefix)
    name = slot.file_name("flac")
    (slot.folder / name).write_bytes(silent_flac(audio))
    return NodeResult((), {"audio": [_file_item(name, slot.subfolder, kind)]})


@node("SaveAudio")
def save_audio(ctx: NodeContext, audio: Audio,
               filename_prefix: str = "audio/ComfyUI") -> NodeResult:
    return _save_flac(ctx, audio, ctx.dirs.output, filename_prefix, "output")


@node("PreviewAudio")
def preview_audio(ctx: NodeContext, audio: Audio) -> NodeResult:
    return _save_flac(ctx, audio, ctx.dirs.temp, _temp_prefix(), "temp")


# --- text and primitives ---------------------------------------------------------------------

def _preview_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return str(value)
    try:
        return json.dumps(value, indent=4)
    except (TypeError, ValueError):
        return str(value)


@node("PreviewAny")
def preview_any(ctx: NodeContext, source: Any = None) -> NodeResult:
    return NodeResult((), {"text": [_preview_text(source)]})


def _primitive(ctx: NodeContext, value: Any) -> NodeResult:
    return NodeResult((value,))


for _name in ("PrimitiveString", "PrimitiveStringMultiline", "PrimitiveInt", "PrimitiveFloat",
              "PrimitiveBoolean"):
    node(_name)(_primitive)


@node("StringConcatenate")
def string_concatenate(ctx: NodeContext, string_a: str, string_b: str,
                       delimiter: str = "") -> NodeResult:
    return NodeResult((f"{string_a}{delimiter}{string_b}",))


# --- model stand-ins -------------------------------------------------------------------------

@node("CheckpointLoaderSimple")
def checkpoint_loader(ctx: NodeContext, ckpt_name: str) -> NodeResult:
    return NodeResult((StandIn("MODEL", ckpt_name), StandIn("CLIP", ckpt_name),
                       StandIn("VAE", ckpt_name)))


@node("LoraLoader")
def lora_loader(ctx: NodeContext, model: StandIn, clip: StandIn, lora_name: str,
                strength_model: float, strength_clip: float) -> NodeResult:
    return NodeResult((StandIn("MODEL", f"{model.detail}+{lora_name}"),
                       StandIn("CLIP", f"{clip.detail}+{lora_name}")))


@node("CLIPTextEncode")
def clip_text_encode(ctx: NodeContext, text: str, clip: StandIn) -> NodeResult:
    return NodeResult((StandIn("CONDITIONING", text[:40]),))


@node("EmptyLatentImage")
def empty_latent(ctx: NodeContext, width: int, height: int, batch_size: int = 1) -> NodeResult:
    return NodeResult((Latent(width // 8, height // 8, batch_size),))


@node("KSampler", own_steps=True)
async def ksampler(ctx: NodeContext, model: StandIn, seed: int, steps: int, cfg: float,
                   sampler_name: str, scheduler: str, positive: StandIn, negative: StandIn,
                   latent_image: Latent, denoise: float = 1.0) -> NodeResult:
    # With a preview method, each step sends the preview a real ComfyUI sent at that step
    # (tests/protocol/previews/), the last one again past the recording's steps.
    recorded = recorded_previews() if ctx.previews else ()
    for step in range(1, steps + 1):
        await ctx.sleep(ctx.step_delay_s)
        await ctx.progress(step, steps, recorded[min(step, len(recorded)) - 1] if recorded else None)
    return NodeResult((Latent(latent_image.width, latent_image.height, latent_image.batch_size,
                              seed),))


@node("VAEDecode")
def vae_decode(ctx: NodeContext, samples: Latent, vae: StandIn) -> NodeResult:
    width, height = samples.width * 8, samples.height * 8
    images = ImageBatch()
    for index in range(samples.batch_size):
        if samples.seed is None:
            images.append(Image.new("RGB", (width, height), (128, 128, 128)))
            continue
        noise = random.Random(samples.seed + index).randbytes(width * height * 3)
        images.append(Image.frombytes("RGB", (width, height), noise))
    return NodeResult((images,))
