"""The edge's streaming handler (STREAM_RESULTS=true), driven in-process on the double."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

import handler
from tests.comfy_double import ComfyDouble
from tests.e2e.jobs import bad_node_job, invert_job, sampler_job
from tests.harness import WorkerHarness


@pytest.fixture
def streaming(comfy_double: ComfyDouble, monkeypatch: pytest.MonkeyPatch
              ) -> Iterator[dict[str, Any]]:
    """The handler module's worker on the double, and the config the SDK would hold."""
    harness = WorkerHarness(comfy_double, refresh_worker=True)
    config: dict[str, Any] = {"handler": handler.stream_handler}
    monkeypatch.setattr(handler, "_worker", harness.worker)
    monkeypatch.setattr(handler, "_sdk_config", config)
    yield config
    harness.worker.close()


def _stream(job_input: dict[str, Any]) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [item async for item in handler.stream_handler({"id": "s-1", "input": job_input})]

    return asyncio.run(collect())


def test_a_stream_ends_with_the_whole_result_after_one_item_per_output(
        streaming: dict[str, Any]) -> None:
    items = _stream(invert_job())
    kinds = [item["type"] for item in items]
    assert kinds[-1] == "result" and kinds.count("output") == 1, kinds
    assert set(kinds[:-1]) == {"progress", "output"}, kinds
    output = next(item for item in items if item["type"] == "output")
    assert output["images"] == items[-1]["images"] and len(items[-1]["images"]) == 1
    # REFRESH_WORKER reaches the SDK through its config: it reads no key of a stream's items
    assert "refresh_worker" not in items[-1] and streaming.get("refresh_worker") is True


def _early_and_late_job(steps: int) -> dict[str, Any]:
    """An image saved at once, then a sampler's image saved after `steps` slow steps, and a
    text output."""
    job = sampler_job(steps)
    job["workflow"].update({
        "20": {"class_type": "EmptyImage",
               "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 255}},
        "21": {"class_type": "SaveImage", "inputs": {"images": ["20", 0],
                                                      "filename_prefix": "early"}},
        "22": {"class_type": "PreviewAny", "inputs": {"source": ["20", 0]}},
    })
    return job


def test_each_output_is_streamed_as_soon_as_its_node_finished(
        streaming: dict[str, Any], comfy_double: ComfyDouble) -> None:
    comfy_double.faults.step_delay_s = 0.15
    items = _stream(_early_and_late_job(steps=6))
    kinds = [item["type"] for item in items]
    outputs = [i for i, item in enumerate(items) if item["type"] == "output"]
    sampling = [i for i, item in enumerate(items)
                if item["type"] == "progress" and item.get("node") == "3" and item.get("step")]
    assert len(outputs) == 3 and sampling, kinds
    images = [i for i in outputs if "images" in items[i]]
    early = items[images[0]]
    assert early["images"][0]["filename"].startswith("early"), early
    # the early image (and the text) reached the client while the sampler had steps to go
    assert max(outputs[0], images[0]) < sampling[-1] < images[1], kinds
    result = items[-1]
    streamed = {(key, json.dumps(value[0], sort_keys=True)) for item in items[:-1]
                if item["type"] == "output" for key, value in item.items() if key != "type"}
    answered = {(key, json.dumps(value, sort_keys=True))
                for key in ("images", "text") for value in result.get(key, [])}
    assert streamed == answered and len(result["images"]) == 2, (streamed, answered)


def test_images_sent_over_the_websocket_are_streamed_when_the_run_ends(
        streaming: dict[str, Any]) -> None:
    graph = {"1": {"class_type": "EmptyImage",
                   "inputs": {"width": 16, "height": 8, "batch_size": 1, "color": 255}},
             "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}}}
    items = _stream({"workflow": graph})
    kinds = [item["type"] for item in items]
    assert kinds[-2:] == ["output", "result"], kinds  # no node announces it: at the end
    streamed, result = items[-2]["images"], items[-1]["images"]
    assert streamed == result and len(result) == 1 and result[0]["type"] == "base64", result


def test_a_failed_job_ends_its_stream_with_todays_error_fields(
        streaming: dict[str, Any]) -> None:
    items = _stream(bad_node_job())
    assert [item["type"] for item in items] == ["result"], items  # refused before it ran
    result = items[-1]
    assert result["error_code"] == "workflow_invalid" and result["error"].startswith(
        "workflow_invalid: ") and result["details"], result


@pytest.mark.parametrize(("argv", "environ", "runs"), [
    ([], {}, False),                                             # local test: test_input.json
    (["--rp_serve_api"], {}, True),
    ([], {"RUNPOD_WEBHOOK_GET_JOB": "http://q/take?x"}, True),   # the job loop
    (["--test_input", "{}"], {"RUNPOD_WEBHOOK_GET_JOB": "http://q/take?x"}, False),
    (["--test_input={}"], {"RUNPOD_WEBHOOK_GET_JOB": "http://q/take?x"}, False),
    ([], {"RUNPOD_REALTIME_PORT": "8000"}, True),
])
def test_the_generator_goes_only_where_the_sdk_runs_generators(
        argv: list[str], environ: dict[str, str], runs: bool) -> None:
    assert handler.sdk_runs_generators(argv, environ) is runs
