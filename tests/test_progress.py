"""Progress reports with live previews, through a real Worker and the ComfyUI double.

The double's sampler sends, step by step, the preview frames a real ComfyUI 0.3.64 sent
(tests/protocol/previews/), as type 4 frames to a client that declared
`supports_preview_metadata` (the worker does) and as type 1 frames to one that did not.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageStat

from comfy_runtime.progress import encode_preview
from tests.comfy_double import ComfyDouble
from tests.comfy_double.media import recorded_previews
from tests.e2e.jobs import sampler_job
from tests.harness import WorkerHarness

STEPS = 8
WITH_PREVIEWS = ["main.py", "--preview-method", "auto", "--preview-size", "256"]


class TimedHarness(WorkerHarness):
    """Keeps when each report came, to check the rates."""

    def __init__(self, double: ComfyDouble) -> None:
        super().__init__(double)
        self.times: list[float] = []
        self.progress = _TimedList(self.times)


class _TimedList(list[dict[str, Any]]):
    def __init__(self, times: list[float]) -> None:
        super().__init__()
        self._times = times

    def append(self, item: dict[str, Any]) -> None:
        self._times.append(time.monotonic())
        super().append(item)


def _harness(tmp_path: Path, argv: list[str]) -> Iterator[TimedHarness]:
    double = ComfyDouble(tmp_path / "comfy", argv=argv)
    double.start()
    harness = TimedHarness(double)
    try:
        yield harness
    finally:
        harness.worker.close()
        double.stop()


@pytest.fixture
def previewing(tmp_path: Path) -> Iterator[TimedHarness]:
    """A worker on a double launched with --preview-method auto --preview-size 256."""
    yield from _harness(tmp_path, WITH_PREVIEWS)


@pytest.fixture
def without_method(tmp_path: Path) -> Iterator[TimedHarness]:
    """A worker on a double launched without a preview method (ComfyUI's default: none)."""
    yield from _harness(tmp_path, ["main.py"])


def _job(previews: Any = None, steps: int = STEPS) -> dict[str, Any]:
    job = sampler_job(steps)
    if previews is not None:
        job["previews"] = previews
    return job


def _previews(harness: WorkerHarness) -> list[dict[str, Any]]:
    return [report["preview"] for report in harness.progress if "preview" in report]


def _image(preview: dict[str, Any]) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(preview["data_base64"])))
    image.load()
    return image


def _is_the_frame_of_its_step(preview: dict[str, Any], size: int) -> bool:
    """The frame shown is the one ComfyUI sent with that step, not a neighbour's: shrinking
    and encoding are deterministic, so it is that recorded frame, byte for byte."""
    data = base64.b64decode(preview["data_base64"])
    matches = [step for step, frame in enumerate(recorded_previews(), 1)
               if encode_preview(frame, size) == data]
    return preview["step"] in matches


def _difference(a: Image.Image, b: Image.Image) -> float:
    return max(ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b)).mean)


def test_previews_come_as_jpegs_of_the_asked_size_with_their_step(
        previewing: TimedHarness) -> None:
    previewing.double.faults.step_delay_s = 0.15
    result = previewing.run(_job({"max_size": 64, "interval_s": 0.25}))
    assert "images" in result, result
    previews = _previews(previewing)
    assert len(previews) >= 2, previewing.progress
    for preview in previews:
        assert (preview["node_id"], preview["steps"], preview["content_type"]) == (
            "3", STEPS, "image/jpeg")
        image = _image(preview)
        assert image.format == "JPEG" and image.size == (64, 64)
        assert _is_the_frame_of_its_step(preview, 64)


def test_a_job_without_previews_gets_none(previewing: TimedHarness) -> None:
    previewing.double.faults.step_delay_s = 0.1
    previewing.run(_job())
    assert previewing.progress and not _previews(previewing)
    assert not any("previews_off" in report for report in previewing.progress)


@pytest.mark.parametrize(("version", "drawn"), [("0.3.64", True), ("0.33.0", False)])
def test_a_comfyui_that_reads_a_prompts_preview_method_draws_none_for_a_job_without(
        tmp_path: Path, version: str, drawn: bool) -> None:
    # Launched with --preview-method auto; the job asks for no previews. 0.33.0 takes the
    # prompt's preview_method ("none") over its flag and draws none at any step; 0.3.64
    # ignores the key and draws them all, and the worker drops them.
    double = ComfyDouble(tmp_path / "comfy", argv=WITH_PREVIEWS, version=version)
    double.start()
    double.faults.step_delay_s = 0.1
    harness = WorkerHarness(double)
    try:
        assert "images" in harness.run(_job())
        assert (double.preview_frames > 0) is drawn, double.preview_frames
        assert not _previews(harness)
        assert "images" in harness.run(_job({"max_size": 64}, steps=STEPS + 1), job_id="job-2")
        assert _previews(harness) and double.preview_frames >= STEPS
    finally:
        harness.worker.close()
        double.stop()


def test_previews_come_at_most_once_per_interval(previewing: TimedHarness) -> None:
    previewing.double.faults.step_delay_s = 0.3
    previewing.run(_job({"interval_s": 1.0}, steps=10))
    sent = [t for t, report in zip(previewing.times, previewing.progress) if "preview" in report]
    assert len(sent) >= 2, previewing.progress
    gaps = [b - a for a, b in zip(sent, sent[1:])]
    # timed at the sink, after encoding: a slower first encode may shorten a gap a little
    assert min(gaps) >= 0.9, gaps
    # never more often than progress itself: four reports a second at most
    reports = previewing.times
    assert len(reports) <= 2 + (reports[-1] - reports[0]) / 0.25 + 1


def test_the_worker_declares_preview_metadata_so_frames_name_their_prompt(
        previewing: TimedHarness) -> None:
    previewing.run({"workflow": {"1": {"class_type": "EmptyImage", "inputs": {
        "width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}})
    flags = previewing.double.feature_flags
    assert [f.get("supports_preview_metadata") for f in flags.values()] == [True], flags


def test_frames_for_another_prompt_never_reach_the_job(previewing: TimedHarness) -> None:
    previewing.double.faults.step_delay_s = 0.1
    previewing.double.faults.extra_frames = {"other_prompt"}
    previewing.run(_job({"interval_s": 0.25}))
    previews = _previews(previewing)
    assert previews
    for preview in previews:  # the other prompt's frames are plain red
        red = Image.new("RGB", (256, 256), (255, 0, 0))
        assert _difference(_image(preview), red) > 40


def test_malformed_frames_are_dropped_and_the_socket_stays_up(
        previewing: TimedHarness, caplog: pytest.LogCaptureFixture) -> None:
    previewing.double.faults.step_delay_s = 0.1
    previewing.double.faults.extra_frames = {"malformed"}
    result = previewing.run(_job({"interval_s": 0.25}))
    assert "images" in result, result
    previews = _previews(previewing)
    assert previews, previewing.progress
    for preview in previews:  # the real frames, at the default max_size (256)
        assert _image(preview).size == (256, 256)
        assert _is_the_frame_of_its_step(preview, 256)
    assert "malformed binary websocket frame" in caplog.text
    assert "websocket broke" not in caplog.text


@pytest.mark.parametrize("kind", ["huge", "not_an_image"])
def test_an_oversize_or_unreadable_frame_is_dropped_unsent(
        previewing: TimedHarness, caplog: pytest.LogCaptureFixture, kind: str) -> None:
    """Each follows the real frame of its step, so it is the newest when a report goes out:
    a PNG claiming 30000x30000 pixels is not decoded, bytes that are no image are not sent."""
    previewing.double.faults.step_delay_s = 0.1
    previewing.double.faults.extra_frames = {kind}
    result = previewing.run(_job({"interval_s": 0.25}))
    assert "images" in result and result["images"][0]["type"] == "base64", result
    assert not _previews(previewing), previewing.progress
    assert "dropping a preview frame of node 3" in caplog.text


def test_type_1_frames_from_a_comfyui_that_ignores_the_flag_still_preview(
        previewing: TimedHarness) -> None:
    previewing.double.faults.step_delay_s = 0.15
    previewing.double.faults.feature_flags_ignored = True
    previewing.run(_job({"max_size": 100, "interval_s": 0.25}))  # not a JPEG draft scale
    previews = _previews(previewing)
    assert previews, previewing.progress
    for preview in previews:
        assert _image(preview).size == (100, 100)
        assert _is_the_frame_of_its_step(preview, 100)


def test_a_comfyui_without_a_preview_method_says_previews_are_off(
        without_method: TimedHarness) -> None:
    without_method.double.faults.step_delay_s = 0.1
    result = without_method.run(_job(True))
    assert "images" in result, result
    assert not _previews(without_method)
    assert all("--preview-method none" in report["previews_off"]
               for report in without_method.progress), without_method.progress


def test_api_node_progress_text_is_reported_as_text(previewing: TimedHarness) -> None:
    previewing.double.faults.step_delay_s = 0.1
    previewing.double.faults.progress_text = "Generating… 40%"
    previewing.run(_job())
    texts = [report.get("text") for report in previewing.progress if report.get("step")]
    assert "Generating… 40%" in texts, previewing.progress


def test_save_image_websocket_outputs_still_arrive_as_type_4_frames(
        previewing: TimedHarness) -> None:
    result = previewing.run({"workflow": {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 24, "height": 16, "batch_size": 2,
                                                     "color": 0x336699}},
        "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}},
    }, "previews": True})
    images = result.get("images") or []
    assert len(images) == 2, result
    assert not _previews(previewing)  # outputs, not previews
