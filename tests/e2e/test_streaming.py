"""STREAM_RESULTS and `previews` through the real runpod SDK: its job loop against the fake
queue, `--rp_serve_api` (/run + /stream, /runsync) and its local test mode; without the
setting a job's answer is what it always was."""

from __future__ import annotations

import base64
import io
import json
import time
from typing import Any

import httpx
from PIL import Image

from .fake_queue import FakeQueue, running_queue
from .jobs import bad_node_job, brief, invert_job, sampler_job
from .test_local_mode import job_result
from .test_serve_api import BOOT_S, runsync
from .worker_process import LaunchWorker, free_port, spawn_worker, stop_worker, wait_for_port

JOB_S = 30.0
STEPS = 6
SLOW = json.dumps({"step_delay_s": 0.15})


def _preview_job() -> dict[str, Any]:
    return {**sampler_job(STEPS), "previews": {"max_size": 48, "interval_s": 0.25}}


def _jpeg(preview: dict[str, Any]) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(preview["data_base64"])))
    assert image.format == "JPEG"
    return image


def _wait_done(queue: FakeQueue, job_id: str, timeout_s: float) -> dict[str, Any]:
    """The job-done post (job-stream posts come before it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        done = [p.body for p in queue.posts_for(job_id)
                if p.route == "job-done" and not p.is_progress]
        if done:
            return done[0]
        assert time.monotonic() < deadline, f"no result for {job_id}\n{queue.summary()}"
        time.sleep(0.05)


def _check_stream(items: list[dict[str, Any]]) -> None:
    """progress items, one `output` per output as it is delivered, last `result`, the whole
    answer."""
    kinds = [item["type"] for item in items]
    assert kinds[-1] == "result" and kinds.count("result") == 1, kinds
    assert set(kinds[:-1]) == {"progress", "output"} and kinds[0] == "progress", kinds
    result = items[-1]
    assert [item["images"][0] for item in items if item["type"] == "output"] == result["images"]
    assert {"prompt_id", "timings_ms", "images"} <= set(result), brief(result)
    previews = [item["preview"] for item in items if "preview" in item]
    assert previews and all(_jpeg(p).size == (48, 48) for p in previews), brief(items)
    assert all(p["node_id"] == "3" and p["steps"] == STEPS for p in previews), brief(previews)


def test_job_loop_without_streaming_puts_previews_in_progress_updates(
        tmp_path: Any) -> None:
    with running_queue() as queue:
        worker = spawn_worker(tmp_path, **queue.env(), COMFY_DOUBLE_FAULTS=SLOW)
        try:
            queue.push("plain", _preview_job())
            result = queue.wait_result("plain", JOB_S + BOOT_S)
            assert "error" not in result, f"{brief(result)}\n{worker.tail()}"
            # The same answer as ever: one object, the images under `images`.
            assert isinstance(result["output"], dict) and result["output"]["images"], brief(result)
            updates = [p["output"] for p in queue.progress("plain")]
            previews = [u["preview"] for u in updates if "preview" in u]
            assert previews, brief(updates)
            assert all(_jpeg(p).size == (48, 48) for p in previews)
            assert not [p for p in queue.posts if p.route == "job-stream"], queue.summary()
        finally:
            stop_worker(worker)


def test_job_loop_streams_progress_outputs_then_the_result(tmp_path: Any) -> None:
    with running_queue() as queue:
        worker = spawn_worker(tmp_path, **queue.env(), COMFY_DOUBLE_FAULTS=SLOW,
                              STREAM_RESULTS="true")
        try:
            queue.push("streamed", _preview_job())
            done = _wait_done(queue, "streamed", JOB_S + BOOT_S)
            assert "error" not in done, f"{brief(done)}\n{worker.tail()}"
            streamed = [p.body["output"] for p in queue.posts_for("streamed")
                        if p.route == "job-stream"]
            _check_stream(streamed)
            # return_aggregate_stream: the job's output is the list of what was streamed
            assert done["output"] == streamed, brief(done)
            # and the job's status shows its progress as without streaming
            updates = [p["output"] for p in queue.progress("streamed")]
            assert any("preview" in u for u in updates) and updates[-1]["percent"] == 100.0, \
                brief(updates)

            queue.push("broken", bad_node_job())
            failed = _wait_done(queue, "broken", JOB_S)
            assert failed["error"].startswith("workflow_invalid: "), brief(failed)
        finally:
            stop_worker(worker)


def test_serve_api_streams_on_stream_and_aggregates_on_runsync(
        launch_worker: LaunchWorker) -> None:
    port = free_port()
    worker = launch_worker("--rp_serve_api", "--rp_api_host", "127.0.0.1",
                           "--rp_api_port", str(port), STREAM_RESULTS="true",
                           COMFY_DOUBLE_FAULTS=SLOW)
    wait_for_port(port, worker, BOOT_S)
    base = f"http://127.0.0.1:{port}"
    job_id = httpx.post(f"{base}/run", json={"input": _preview_job()}, timeout=JOB_S).json()["id"]
    streamed = httpx.post(f"{base}/stream/{job_id}", timeout=JOB_S).json()
    assert streamed["status"] == "COMPLETED", f"{brief(streamed)}\n{worker.tail()}"
    _check_stream([entry["output"] for entry in streamed["stream"]])

    done = runsync(port, invert_job(), worker)
    assert done["status"] == "COMPLETED", brief(done)
    # /runsync answers with the whole stream as one list: progress items included
    kinds = [item["type"] for item in done["output"]]
    assert kinds[-1] == "result" and kinds.count("output") == 1, kinds
    streamed = next(item for item in done["output"] if item["type"] == "output")
    assert done["output"][-1]["images"] == streamed["images"]


def test_local_test_mode_with_streaming_runs_the_plain_handler(
        launch_worker: LaunchWorker) -> None:
    started = time.monotonic()
    worker = launch_worker("--test_input", json.dumps({"input": invert_job()}),
                           STREAM_RESULTS="true")
    assert worker.wait(BOOT_S) == 0, worker.tail()
    output = job_result(worker)["output"]
    assert isinstance(output, dict) and output["images"], brief(output)
    assert "runs no generator" in worker.log_text(), worker.tail()
    assert time.monotonic() - started < BOOT_S
