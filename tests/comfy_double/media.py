"""The values that flow between the double's nodes, and the bytes its save nodes write.

IMAGE is a batch of RGB Pillow images, MASK a batch of "L" images; model values are opaque
stand-ins. Their str() is what an execution_error shows in `current_inputs`, where ComfyUI
shows a tensor's repr.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo


class ImageBatch(list[Image.Image]):
    def __str__(self) -> str:
        if not self:
            return "ImageBatch(empty)"
        width, height = self[0].size
        return f"ImageBatch(shape=[{len(self)}, {height}, {width}, 3])"


class MaskBatch(list[Image.Image]):
    def __str__(self) -> str:
        if not self:
            return "MaskBatch(empty)"
        width, height = self[0].size
        return f"MaskBatch(shape=[{len(self)}, {height}, {width}])"


@dataclass(frozen=True)
class Latent:
    width: int
    height: int
    batch_size: int
    seed: int | None = None

    def __str__(self) -> str:
        return f"{{'samples': Latent(shape=[{self.batch_size}, 4, {self.height}, {self.width}])}}"


@dataclass(frozen=True)
class StandIn:
    """A model, CLIP, VAE or conditioning: the double never computes with them."""

    kind: str
    detail: str = ""

    def __str__(self) -> str:
        return f"<{self.kind} {self.detail}>".replace(" >", ">")


@dataclass(frozen=True)
class Audio:
    """Silence only: the double has no audio source other than EmptyAudio."""

    sample_rate: int
    channels: int
    samples: int

    def __str__(self) -> str:
        return f"{{'waveform': tensor(shape=[1, {self.channels}, {self.samples}]), " \
               f"'sample_rate': {self.sample_rate}}}"


@dataclass
class Video:
    frames: ImageBatch
    fps: float
    audio: Audio | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"VideoFromComponents(frames={len(self.frames)}, fps={self.fps})"


def png_bytes(image: Image.Image, text: dict[str, str] | None, compress_level: int) -> bytes:
    info = None
    if text:
        info = PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=compress_level)
    return buffer.getvalue()


def png_metadata(prompt: dict[str, Any] | None, extra_pnginfo: dict[str, Any] | None,
                 disabled: bool) -> dict[str, str] | None:
    """The text chunks SaveImage and PreviewImage add: the prompt, then extra_pnginfo keys."""
    if disabled:
        return None
    text: dict[str, str] = {}
    if prompt is not None:
        text["prompt"] = json.dumps(prompt)
    for key, value in (extra_pnginfo or {}).items():
        text[key] = json.dumps(value)
    return text


RECORDED_PREVIEWS = Path(__file__).resolve().parents[1] / "protocol" / "previews" / \
    "txt2img_previews.json"


def frame_type1(image: bytes, mime_type: str) -> bytes:
    """A preview as ComfyUI sends it to a client without `supports_preview_metadata`: event 1
    (PREVIEW_IMAGE), format 1 (JPEG) or 2 (PNG), then the image (server.py's send_image)."""
    return struct.pack(">II", 1, 2 if mime_type == "image/png" else 1) + image


def frame_type4(image: bytes, mime_type: str, prompt_id: str, node_id: str) -> bytes:
    """The same for a client with the flag: event 4, the length of the JSON metadata, the
    metadata, then the image (server.py's send_image_with_metadata; keys in its order)."""
    meta = json.dumps({"node_id": node_id, "prompt_id": prompt_id, "display_node_id": node_id,
                       "parent_node_id": None, "real_node_id": node_id,
                       "image_type": mime_type}).encode()
    return struct.pack(">II", 4, len(meta)) + meta + image


def progress_text_frame(node_id: str, text: str) -> bytes:
    """Event 3: the node id's length, the node id, the text (server.py's send_progress_text)."""
    node = node_id.encode()
    return struct.pack(">II", 3, len(node)) + node + text.encode()


# Binary frames that do not parse, each of a kind a decoder must survive.
MALFORMED_FRAMES = (
    b"\x00\x00\x00\x04",                                     # cut short: no length
    struct.pack(">II", 4, 1000) + b'{"prompt_id": "x"}',      # a length past the end
    struct.pack(">II", 4, 5) + b"{nope" + b"\xff\xd8",        # metadata that is not JSON
    struct.pack(">II", 4, 2) + b"[]" + b"\xff\xd8",            # metadata that is no object
    struct.pack(">II", 1, 1),                                  # type 1 with no image
    struct.pack(">II", 3, 9) + b"\xff\xfe",                    # text: node id cut short
    struct.pack(">II", 77, 1) + b"\xff\xd8",                   # an event type nobody knows
)


def huge_png_header() -> bytes:
    """The first bytes of a PNG that claims 30000x30000 pixels (its data is missing)."""
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    crc = zlib.crc32(b"IHDR" + ihdr)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", crc)


@functools.lru_cache(maxsize=1)
def recorded_previews() -> tuple[bytes, ...]:
    """The JPEG previews a real ComfyUI 0.3.64 sent during a txt2img run, step by step
    (tests/protocol/previews/, recorded with the feature flag: type 4 frames)."""
    recording = json.loads(RECORDED_PREVIEWS.read_text())
    images = []
    for message in recording["runs"]["with_flag"]["ws_messages"]:
        if message.get("binary") and message["event_type"] == 4:
            payload = base64.b64decode(message["data_base64"])
            (size,) = struct.unpack_from(">I", payload, 4)
            images.append(payload[8 + size:])
    return tuple(images)


def placeholder_mp4(video: Video) -> bytes:
    """A file that starts like an MP4 (an `ftyp` box) and carries the frames as PNGs in an
    `mdat` box. Players will not play it; tests only need bytes with the right shape."""
    ftyp = struct.pack(">I4s4sI", 32, b"ftyp", b"isom", 0x200) + b"isomiso2avc1mp41"
    payload = b"".join(png_bytes(frame, None, 1) for frame in video.frames)
    mdat = struct.pack(">I4s", 8 + len(payload), b"mdat") + payload
    return ftyp + mdat


def placeholder_webm(frames: ImageBatch) -> bytes:
    """Starts with the EBML magic of a WebM file; not playable."""
    payload = b"".join(png_bytes(frame, None, 1) for frame in frames)
    return bytes.fromhex("1a45dfa3") + b"\x9f\x42\x86\x81\x01\x42\xf7\x81\x01" + payload


def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def _utf8_number(value: int) -> bytes:
    """FLAC frame numbers use UTF-8's variable-length scheme, surrogates included."""
    if value < 0x80:
        return bytes([value])
    for length, limit in ((2, 1 << 11), (3, 1 << 16), (4, 1 << 21), (5, 1 << 26), (6, 1 << 31)):
        if value < limit:
            tail = [0x80 | ((value >> (6 * i)) & 0x3F) for i in range(length - 1)][::-1]
            lead = ((0xFF00 >> length) & 0xFF) | (value >> (6 * (length - 1)))
            return bytes([lead] + tail)
    raise ValueError("frame number too large")


def silent_flac(audio: Audio, block_size: int = 4096) -> bytes:
    """A valid 16-bit FLAC stream of silence: every subframe is a CONSTANT zero."""
    pcm_md5 = hashlib.md5(b"\x00" * (audio.samples * audio.channels * 2)).digest()
    info = struct.pack(">HH", block_size, block_size) + b"\x00" * 6
    packed = (audio.sample_rate << 44) | ((audio.channels - 1) << 41) | (15 << 36) | audio.samples
    info += packed.to_bytes(8, "big") + pcm_md5
    out = bytearray(b"fLaC")
    out += bytes([0x80]) + len(info).to_bytes(3, "big") + info  # last metadata block
    remaining, number = audio.samples, 0
    while remaining > 0:
        size = min(block_size, remaining)
        header = bytearray(b"\xff\xf8")
        header.append(0x70)  # block size: 16 bits at the end; sample rate: from STREAMINFO
        header.append(((audio.channels - 1) << 4) | (0b100 << 1))  # independent, 16-bit
        header += _utf8_number(number) + struct.pack(">H", size - 1)
        header.append(_crc8(bytes(header)))
        frame = bytes(header) + b"\x00\x00\x00" * audio.channels
        out += frame + struct.pack(">H", _crc16(frame))
        remaining -= size
        number += 1
    return bytes(out)
