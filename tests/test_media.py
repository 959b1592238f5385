"""Input decoding: base64 and data URIs are checked strictly, names are made safe."""

from __future__ import annotations

import base64
import struct
import zlib

import pytest

from comfy_runtime.client import UploadedFile
from comfy_runtime.contract import InputFile
from comfy_runtime.errors import InvalidInput
from comfy_runtime.isolation import isolate, job_folder, public_subfolder
from comfy_runtime.media import InputLimits, decode_inputs
from comfy_runtime.naming import safe_filename
from tests.images import png_b64, png_bytes

LIMITS = InputLimits(max_bytes=1_000_000, max_pixels=4096 * 4096, max_inputs=4,
                     fetch_timeout_s=5, allow_private_urls=False)


def _decode(name: str, image: str, limits: InputLimits = LIMITS) -> bytes:
    return decode_inputs([InputFile(name=name, image=image)], limits)[0].data


def test_base64_and_data_uri_give_the_same_bytes() -> None:
    raw = png_bytes()
    assert _decode("a.png", png_b64()) == raw
    assert _decode("a.png", "data:image/png;base64," + png_b64()) == raw
    assert _decode("a.png", "\n".join([png_b64()[:40], png_b64()[40:]])) == raw


@pytest.mark.parametrize(
    ("image", "words"),
    [
        ("not base64!!", "not valid base64"),
        (png_b64()[:-3], "not valid base64"),  # truncated
        ("data:image/png,abc", "data:<type>;base64"),
        ("ftp://example.com/x.png", "scheme 'ftp'"),
        ("file:///etc/passwd", "scheme 'file'"),
        (base64.b64encode(b"hello").decode(), "not an image"),
    ],
)
def test_bad_content_is_refused_naming_the_field(image: str, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        _decode("a.png", image)
    assert caught.value.message.startswith("images[0]")
    assert words in caught.value.message


def test_size_is_checked_before_decoding() -> None:
    huge = "A" * 4_000_000
    with pytest.raises(InvalidInput, match="MAX_INPUT_BYTES"):
        _decode("a.bin", huge)


def test_pixel_limit() -> None:
    small = InputLimits(**{**LIMITS.__dict__, "max_pixels": 100})
    with pytest.raises(InvalidInput, match="32x24 pixels.*MAX_PIXELS"):
        _decode("a.png", png_b64(), small)


def test_decompression_bomb_header_is_refused_without_decoding() -> None:
    # A valid PNG header claiming 20000x20000, with a tiny compressed body.
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
    bomb += chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")
    with pytest.raises(InvalidInput, match="MAX_PIXELS"):
        _decode("bomb.png", base64.b64encode(bomb).decode())


def test_limits_on_count_and_duplicates() -> None:
    items = [InputFile(name=f"{i}.bin", image="aGk=") for i in range(5)]
    with pytest.raises(InvalidInput, match="MAX_INPUTS"):
        decode_inputs(items, LIMITS)
    with pytest.raises(InvalidInput, match="used twice"):
        decode_inputs([InputFile(name="a.bin", image="aGk="), InputFile(name="a.bin", image="aGk=")], LIMITS)


def test_non_image_media_is_passed_as_is() -> None:
    assert _decode("clip.mp4", base64.b64encode(b"\x00\x00\x00\x20ftypisom").decode()).startswith(b"\x00")


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("photo.png", "photo.png"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\win.ini", "win.ini"),
        ("/abs/path/x.png", "x.png"),
        ("a\x00b.png", "a_b.png"),
        ("..", "input"),
        ("we ird;name$.png", "we ird_name_.png"),
    ],
)
def test_safe_filename(name: str, safe: str) -> None:
    assert safe_filename(name) == safe


def test_job_folder_is_one_safe_segment() -> None:
    assert job_folder("../../x").startswith("job-x-")
    assert job_folder("x") != job_folder("x")  # a retried job gets a fresh folder
    assert "/" not in job_folder("a/b/c")


def test_inputs_and_outputs_go_to_the_jobs_folder() -> None:
    graph = {"1": {"class_type": "LoadImage", "inputs": {"image": "photo.png", "upload": "image"}},
             "2": {"class_type": "X", "inputs": {"other": "photo.png.bak", "link": ["1", 0]}},
             "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "video/out"}}}
    uploaded = {"photo.png": UploadedFile(name="photo.png", subfolder="job-1", type="input")}
    rewritten = isolate(graph, "job-1", uploaded)
    assert rewritten["1"]["inputs"]["image"] == "job-1/photo.png"
    assert rewritten["2"]["inputs"] == graph["2"]["inputs"]
    assert rewritten["3"]["inputs"]["filename_prefix"] == "job-1/video/out"
    assert graph["1"]["inputs"]["image"] == "photo.png"  # the caller's graph is not changed
    assert public_subfolder("job-1/video", "job-1") == "video"
    assert public_subfolder("job-1", "job-1") == ""


def test_other_file_types_only_when_the_deployment_allows_them() -> None:
    text = base64.b64encode(b'{"a": 1}').decode()
    with pytest.raises(InvalidInput, match="EXTRA_INPUT_EXTENSIONS"):
        _decode("params.json", text)
    allowing = InputLimits(**{**LIMITS.__dict__, "extra_suffixes": frozenset({".json"})})
    assert _decode("params.json", text, allowing) == b'{"a": 1}'
