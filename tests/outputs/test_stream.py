"""A streamed job's items stay within the answer's limit: progress takes its share, previews
first to go (comfy_runtime/outputs/stream.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import handler
from comfy_runtime.outputs.live import PROGRESS_SHARE
from comfy_runtime.outputs.stream import ProgressRoom
from tests.comfy_double import ComfyDouble
from tests.e2e.jobs import sampler_job
from tests.harness import WorkerHarness

LIMIT = 40_000  # the answer's limit in these tests: progress may take 10 KB of it
JOB_LIMIT = 100_000  # a job's: its 64x64 output, twice, fits in what progress leaves


def _report(step: int, preview_bytes: int = 0) -> dict[str, Any]:
    report: dict[str, Any] = {"status": "running", "node": "3", "step": step, "max": 100}
    if preview_bytes:
        report["preview"] = {"node_id": "3", "data_base64": "A" * preview_bytes}
    return report


def _size(item: dict[str, Any]) -> int:
    return len(json.dumps(item))


def test_progress_keeps_to_its_share_and_drops_previews_first() -> None:
    room = ProgressRoom(LIMIT)
    items = [room.fit(_report(step, preview_bytes=1_500)) for step in range(40)]
    kept = [item for item in items if item is not None]
    assert sum(map(_size, kept)) <= LIMIT // PROGRESS_SHARE
    with_preview = [item for item in kept if "preview" in item]
    assert 3 <= len(with_preview) < len(kept), [sorted(i) for i in kept]
    first_without = kept.index(next(item for item in kept if "preview" not in item))
    # once one preview did not fit, none comes, and every later item says why
    assert all("preview" not in item and "MAX_RESPONSE_BYTES" in item["previews_off"]
               for item in kept[first_without:])
    assert items[-1] is None  # past the share not even plain progress is streamed


def test_plain_progress_is_untouched_while_it_fits() -> None:
    room = ProgressRoom(LIMIT)
    report = _report(1)
    assert room.fit(report) == {"type": "progress", **report}


@pytest.fixture(params=[JOB_LIMIT])
def small_answers(request: pytest.FixtureRequest, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkerHarness]:
    double = ComfyDouble(tmp_path / "comfy",
                         argv=["main.py", "--preview-method", "auto", "--preview-size", "256"])
    double.start()
    double.faults.step_delay_s = 0.1
    harness = WorkerHarness(double, max_response_bytes=request.param)
    monkeypatch.setattr(handler, "_worker", harness.worker)
    monkeypatch.setattr(handler, "_sdk_config", {"handler": handler.stream_handler})
    try:
        yield harness
    finally:
        harness.worker.close()
        double.stop()


def test_a_long_stream_with_previews_stays_under_the_answers_limit(
        small_answers: WorkerHarness) -> None:
    job = {**sampler_job(40), "previews": {"max_size": 128, "interval_s": 0.25}}
    items = _stream(job)
    assert items[-1]["type"] == "result" and "error" not in items[-1], items[-1]
    progress = [item for item in items if item["type"] == "progress"]
    assert any("preview" in item for item in progress), "no preview was streamed"
    assert "previews_off" in progress[-1], progress[-1]
    assert sum(map(_size, progress)) <= JOB_LIMIT // PROGRESS_SHARE
    # what the platform keeps (every item) fits the limit
    assert len(json.dumps(items)) <= JOB_LIMIT


@pytest.mark.parametrize("small_answers", [LIMIT], indirect=True)
def test_an_output_that_fits_once_but_not_twice_fails_the_streamed_job(
        small_answers: WorkerHarness) -> None:
    # the 64x64 output is about 16 KB as base64: it fits the 30 KB progress leaves once, not
    # twice, and without an object store the job fails as an unstreamed one would
    items = _stream({**sampler_job(2), "output": {"delivery": "base64"}})
    result = items[-1]
    assert result["type"] == "result" and result["error_code"] == "output_too_large", result
    assert "BUCKET_ENDPOINT_URL" in result["error"]
    assert not [item for item in items if item["type"] == "output"], items


def _stream(job: dict[str, Any]) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [item async for item in handler.stream_handler({"id": "s-2", "input": job})]

    return asyncio.run(collect())
