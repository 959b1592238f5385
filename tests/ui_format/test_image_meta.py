"""The workflow inside a ComfyUI image, read chunk by chunk without decoding pixels (issue 22).

Pinned cases first (each text chunk kind, a text after the pixels, pixels that are not even
valid, bombs), then property tests: any bytes, and ComfyUI's own PNG and WebP mutated, give a
(prompt, workflow) pair or a `ValueError`/`ConversionError`, within a time budget per example.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from comfy_runtime.ui_format import ConversionError, TooLarge, read_image_workflow
from tests.ui_format import hostile_shapes as shapes

PNG = (Path(__file__).parent / "comfyui_written.png").read_bytes()
PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {}}}
EDITOR = {"nodes": [], "links": []}
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "200")), deadline=2000,
                derandomize=not os.environ.get("FUZZ_RANDOM"), database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _with_chunks(*chunks: bytes, after_pixels: bool = False) -> bytes:
    base = shapes.png(8, 8)
    at = base.index(b"IEND") - 4 if after_pixels else base.index(b"IDAT") - 4
    return base[:at] + b"".join(chunks) + base[at:]


def test_comfyuis_own_png_gives_both() -> None:
    prompt, workflow = read_image_workflow(PNG)
    assert prompt == json.loads(Image.open(io.BytesIO(PNG)).info["prompt"])
    assert workflow is not None and "nodes" in workflow


@pytest.mark.parametrize("kind", ["zTXt", "iTXt", "iTXt-compressed", "tEXt-after-pixels"])
def test_every_text_chunk_kind_is_read(kind: str) -> None:
    text = json.dumps(PROMPT).encode()
    if kind == "zTXt":
        chunk = _chunk(b"zTXt", b"prompt\x00\x00" + zlib.compress(text))
    elif kind.startswith("iTXt"):
        compressed = kind.endswith("compressed")
        body = zlib.compress(text) if compressed else text
        chunk = _chunk(b"iTXt", b"prompt\x00" + bytes([compressed, 0]) + b"en\x00\x00" + body)
    else:
        chunk = _chunk(b"tEXt", b"prompt\x00" + text)
    data = _with_chunks(chunk, after_pixels=kind.endswith("after-pixels"))
    assert read_image_workflow(data) == (PROMPT, None)


def test_pixels_are_never_decoded() -> None:
    # Defect 5: Pillow's getexif() decoded the pixels of a PNG without an eXIf chunk (here
    # they are not even zlib); only the chunks around them are read.
    data = shapes.png(13000, 13000, {"workflow": json.dumps(EDITOR)}, pixels=b"garbage")
    assert read_image_workflow(data) == (None, EDITOR)


def test_a_compressed_text_bomb_is_refused_while_it_is_inflated() -> None:
    bomb = zlib.compress(b" " * (64 * 1024 * 1024), 9)  # 64 MiB from about 64 KB
    data = _with_chunks(_chunk(b"zTXt", b"workflow\x00\x00" + bomb))
    with pytest.raises(TooLarge, match="more than the 1048576 allowed"):
        read_image_workflow(data, max_text_bytes=1024 * 1024)


def test_a_text_past_the_limit_is_refused_before_it_is_parsed() -> None:
    data = _with_chunks(_chunk(b"tEXt", b"workflow\x00" + b"[]," * 1000))
    with pytest.raises(TooLarge):
        read_image_workflow(data, max_text_bytes=1000)


def test_webp_exif_as_comfyui_writes_it() -> None:
    exif = Image.Exif()
    exif[0x0110] = "prompt:" + json.dumps(PROMPT)
    exif[0x010F] = "workflow:" + json.dumps(EDITOR)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "WEBP", exif=exif.tobytes())
    assert read_image_workflow(buffer.getvalue()) == (PROMPT, EDITOR)


# --- properties --------------------------------------------------------------------------------


def _webp() -> bytes:
    exif = Image.Exif()
    exif[0x0110] = "prompt:" + json.dumps(PROMPT)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "WEBP", exif=exif.tobytes())
    return buffer.getvalue()


SEEDS = [PNG, _webp(), _with_chunks(_chunk(b"zTXt", b"workflow\x00\x00" +
                                          zlib.compress(json.dumps(EDITOR).encode())))]


@st.composite
def mutated_image(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["byte", "cut", "insert", "length"]))
        if action == "byte":
            data[at] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[at:at + draw(st.integers(1, 64))]
        elif action == "insert":
            data[at:at] = draw(st.binary(max_size=32))
        else:  # a chunk length that lies
            data[at:at + 4] = struct.pack(">I", draw(st.sampled_from([0, 1, 2**31, 2**32 - 1])))
        if not data:
            break
    return bytes(data)


def _reads_or_refuses(data: bytes) -> None:
    try:
        prompt, workflow = read_image_workflow(data, max_text_bytes=1024 * 1024)
    except (ValueError, ConversionError):
        return
    assert prompt is None or isinstance(prompt, dict)
    assert workflow is None or (isinstance(workflow, dict) and "nodes" in workflow)


@FUZZ
@given(mutated_image())
def test_a_mutated_comfyui_image_is_read_or_refused(data: bytes) -> None:
    _reads_or_refuses(data)


@FUZZ
@given(st.sampled_from([b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x00\x00\x00WEBP", b""]),
       st.lists(st.tuples(st.sampled_from([b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"IDAT",
                                           b"EXIF", b"XMP ", b"IEND"]),
                          st.binary(max_size=64)), max_size=8))
def test_generated_chunks_are_read_or_refused(head: bytes,
                                              chunks: list[tuple[bytes, bytes]]) -> None:
    body = b"".join(_chunk(kind, data) if head.startswith(b"\x89") else
                    kind + struct.pack("<I", len(data)) + data for kind, data in chunks)
    _reads_or_refuses(head + body)
