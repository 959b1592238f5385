"""Input decoding: base64 and data URIs are checked strictly, sizes and types too."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import pytest
from PIL import Image

from comfy_runtime.contract import InputFile
from comfy_runtime.errors import InvalidInput
from comfy_runtime.inputs.decode import InputLimits, decode_inputs
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


def test_other_file_types_only_when_the_deployment_allows_them() -> None:
    text = base64.b64encode(b'{"a": 1}').decode()
    with pytest.raises(InvalidInput, match="EXTRA_INPUT_EXTENSIONS"):
        _decode("params.json", text)
    allowing = InputLimits(**{**LIMITS.__dict__, "extra_suffixes": frozenset({".json"})})
    assert _decode("params.json", text, allowing) == b'{"a": 1}'


# --- multi-frame images: every frame counts against MAX_PIXELS ---------------------------------

FRAME = (16, 16)
FOUR_FRAMES = InputLimits(**{**LIMITS.__dict__, "max_pixels": 4 * FRAME[0] * FRAME[1]})


def _animation(fmt: str, frames: int, sizes: list[tuple[int, int]] | None = None) -> bytes:
    """`frames` frames in `fmt`, each a different color (encoders merge identical frames)."""
    sizes = sizes or [FRAME] * frames
    images = [Image.new("RGB", size, (40 * i % 256, 255 - 30 * i % 256, 7 * i)) for i, size in
              enumerate(sizes)]
    buffer = io.BytesIO()
    images[0].save(buffer, format=fmt, save_all=True, append_images=images[1:], duration=100)
    return buffer.getvalue()


ANIMATED = [("anim.png", "PNG"), ("anim.gif", "GIF"), ("anim.webp", "WEBP"), ("pages.tiff", "TIFF")]


@pytest.mark.parametrize(("name", "fmt"), ANIMATED)
def test_frames_times_pixels_over_the_limit_are_refused(name: str, fmt: str) -> None:
    data = _animation(fmt, 5)
    with Image.open(io.BytesIO(data)) as image:  # the encoder kept every frame
        assert (image.format, image.n_frames, image.size) == (fmt, 5, FRAME)
    with pytest.raises(InvalidInput) as caught:
        _decode(name, base64.b64encode(data).decode(), FOUR_FRAMES)
    err = caught.value
    assert err.message.startswith("images[0]") and "MAX_PIXELS" in err.message
    assert "5 frames of 16x16" in err.message
    assert err.details[0] == {
        "field": "images[0]",
        "problem": "too many pixels",
        "width": 16,
        "height": 16,
        "frames": 5,
    }


@pytest.mark.parametrize(("name", "fmt"), ANIMATED)
def test_frames_times_pixels_at_the_limit_are_accepted(name: str, fmt: str) -> None:
    data = _animation(fmt, 4)
    assert _decode(name, base64.b64encode(data).decode(), FOUR_FRAMES) == data


def test_a_large_later_page_counts_at_its_own_size() -> None:
    # TIFF pages need not share a size; a small first page must not vouch for a huge second.
    data = _animation("TIFF", 2, sizes=[(8, 8), (64, 64)])
    with pytest.raises(InvalidInput, match="MAX_PIXELS") as caught:
        _decode("pages.tif", base64.b64encode(data).decode(), FOUR_FRAMES)
    assert caught.value.details[0]["frames"] == 2


def test_counting_frames_stops_at_the_limit() -> None:
    # A GIF with many frames is not walked to its end: the count stops once it is over.
    data = _animation("GIF", 200, sizes=[(16, 16)] * 200)
    with pytest.raises(InvalidInput) as caught:
        _decode("many.gif", base64.b64encode(data).decode(), FOUR_FRAMES)
    assert caught.value.details[0]["frames"] == 5
    assert "at least 5 frames" in caught.value.message
def test_base64_is_decoded_by_pybase64_strictly_and_checked_without_a_copy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 14: the SIMD decoder, in its strict mode; the bytes it returns are the ones the
    content check reads and the ones handed on, not a copy."""
    import comfy_runtime.inputs.decode as inputs

    decoded: list[bytes] = []
    checked: list[bytes] = []
    real_decode, real_check = inputs.pybase64.b64decode, inputs.check_content

    def spy_decode(text: str, *args: object, **kwargs: object) -> bytes:
        assert kwargs.get("validate") is True, "pybase64 must validate (strict base64)"
        data = real_decode(text, *args, **kwargs)
        decoded.append(data)
        return data

    def spy_check(name: str, data: bytes, field: str, *, max_pixels: int) -> None:
        checked.append(data)
        real_check(name, data, field, max_pixels=max_pixels)

    monkeypatch.setattr(inputs.pybase64, "b64decode", spy_decode)
    monkeypatch.setattr(inputs, "check_content", spy_check)
    (prepared,) = decode_inputs([InputFile(name="a.png", image=png_b64())], LIMITS)
    assert len(decoded) == 1 and prepared.data == png_bytes()
    assert checked[0] is decoded[0] and prepared.data is decoded[0]
