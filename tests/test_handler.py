"""The edge's streaming handler (STREAM_RESULTS=true), driven in-process on the double."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import handler
from tests.comfy_double import ComfyDouble
from tests.e2e.jobs import bad_node_job, invert_job
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
    assert kinds[-2:] == ["output", "result"] and set(kinds[:-2]) == {"progress"}, kinds
    assert items[-2]["images"] == items[-1]["images"] and len(items[-1]["images"]) == 1
    # REFRESH_WORKER reaches the SDK through its config: it reads no key of a stream's items
    assert "refresh_worker" not in items[-1] and streaming.get("refresh_worker") is True


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
