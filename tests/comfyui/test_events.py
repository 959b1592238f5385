"""ComfyUI's binary websocket frames decoded once, as typed events; bad ones dropped."""

from __future__ import annotations

import base64
import json
import struct

from hypothesis import given
from hypothesis import strategies as st

from comfy_runtime.comfyui.events import PreviewFrame, ProgressText, decode_binary
from tests.comfy_double.media import (
    MALFORMED_FRAMES,
    frame_type1,
    frame_type4,
    progress_text_frame,
    recorded_previews,
)
from tests.recordings import recording


def test_a_type_1_frame_is_a_preview_that_names_no_prompt() -> None:
    frame = decode_binary(frame_type1(b"\xff\xd8jpeg", "image/jpeg"), 1.5)
    assert isinstance(frame, PreviewFrame)
    assert (frame.event, frame.mime_type, frame.data) == (1, "image/jpeg", b"\xff\xd8jpeg")
    assert frame.prompt_id is None and frame.node_id is None and not frame.before_its_progress


def test_a_type_4_frame_names_its_prompt_and_node() -> None:
    frame = decode_binary(frame_type4(b"\x89PNGdata", "image/png", "p-1", "3"), 2.0)
    assert isinstance(frame, PreviewFrame)
    assert (frame.prompt_id, frame.node_id, frame.mime_type) == ("p-1", "3", "image/png")
    assert frame.data == b"\x89PNGdata" and frame.before_its_progress


def test_a_type_3_frame_is_a_nodes_progress_text() -> None:
    text = decode_binary(progress_text_frame("12", "Uploading… 40%"), 0.0)
    assert isinstance(text, ProgressText)
    assert (text.node_id, text.text, text.prompt_id) == ("12", "Uploading… 40%", None)


def test_every_recorded_frame_decodes() -> None:
    """Both runs of tests/protocol/previews/: type 1 without the flag, type 4 with it."""
    runs = recording("previews/txt2img_previews.json")["runs"]
    for name, event in (("without_flag", 1), ("with_flag", 4)):
        run = runs[name]
        frames = [m for m in run["ws_messages"] if m.get("binary")]
        assert frames and {m["event_type"] for m in frames} == {event}
        for message in frames:
            decoded = decode_binary(base64.b64decode(message["data_base64"]), 0.0)
            assert isinstance(decoded, PreviewFrame) and decoded.mime_type == "image/jpeg"
            assert decoded.data.startswith(b"\xff\xd8")
            if event == 4:
                assert (decoded.prompt_id, decoded.node_id) == (run["prompt_id"], "3")
    assert len(recorded_previews()) == 8


def test_malformed_frames_are_dropped() -> None:
    for payload in MALFORMED_FRAMES:
        assert decode_binary(payload, 0.0) is None, payload


@given(st.binary(max_size=64))
def test_no_bytes_make_the_decoder_raise(payload: bytes) -> None:
    decoded = decode_binary(payload, 0.0)
    assert decoded is None or isinstance(decoded, (PreviewFrame, ProgressText))


@given(st.integers(min_value=0, max_value=2**32 - 1), st.binary(max_size=40),
       st.sampled_from([1, 3, 4]))
def test_any_length_field_is_survived(length: int, rest: bytes, event: int) -> None:
    decoded = decode_binary(struct.pack(">II", event, length) + rest, 0.0)
    if decoded is not None:
        assert event in (1, 3, 4)
        if event == 4:  # a length past the end, or metadata that is not an object, is refused
            meta = json.loads(rest[:length])
            assert isinstance(meta, dict) and len(rest) > length
