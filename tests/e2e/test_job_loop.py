"""The production loop: the SDK takes jobs from a (fake) RunPod queue and posts results back."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator

import pytest

from .fake_queue import API_KEY, POD_ID, FakeQueue, running_queue
from .jobs import assert_inverted, brief, invert_job, sampler_job
from .worker_process import LaunchWorker, WorkerProcess, comfy_pids, spawn_worker, stop_worker

BOOT_S = 45.0
JOB_S = 20.0
# Slow enough that a 200-step sampler runs for 40 s unless it is stopped, fast enough that
# the small jobs take about a second.
SLOW_FAULTS = json.dumps({"step_delay_s": 0.2})
LONG_STEPS = 200


def wait_booted(queue: FakeQueue, worker: WorkerProcess) -> None:
    """Until the worker asks for its first job: ComfyUI is up and warmed up."""
    deadline = time.monotonic() + BOOT_S
    while not queue.takes:
        assert worker.running, f"the worker exited while booting\n{worker.tail()}"
        assert time.monotonic() < deadline, f"no job-take within {BOOT_S:g} s\n{worker.tail()}"
        time.sleep(0.1)


def context(queue: FakeQueue, worker: WorkerProcess) -> str:
    return f"{queue.summary()}\n{worker.tail()}"


@pytest.fixture(scope="module")
def slow_loop(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[FakeQueue, WorkerProcess]]:
    """One worker on the job loop, its ComfyUI sleeping per step, shared by the tests below
    that leave it healthy (each uses its own job ids)."""
    with running_queue() as queue:
        worker = spawn_worker(tmp_path_factory.mktemp("slow-loop"), **queue.env(),
                              COMFY_DOUBLE_FAULTS=SLOW_FAULTS)
        try:
            wait_booted(queue, worker)
            yield queue, worker
        finally:
            stop_worker(worker)


def test_jobs_in_a_row_are_taken_run_and_posted(slow_loop: tuple[FakeQueue, WorkerProcess]) -> None:
    queue, worker = slow_loop
    queue.push("row-1", invert_job())
    queue.push("row-2", invert_job())

    for job_id in ("row-1", "row-2"):
        result = queue.wait_result(job_id, JOB_S)
        assert "error" not in result, f"{brief(result)}\n{context(queue, worker)}"
        assert_inverted(result["output"])
        assert len(queue.results(job_id)) == 1, context(queue, worker)

    # The SDK keeps the job-take URL's own query and adds its state to it.
    assert all(t.get("gpu") == "e2e" and "job_in_progress" in t for t in queue.takes), queue.takes
    deadline = time.monotonic() + 5  # the heartbeat comes from a process of its own
    while not any(ping["worker"] == POD_ID for ping in queue.pings):
        assert time.monotonic() < deadline, f"no heartbeat from {POD_ID}: {queue.pings}"
        time.sleep(0.1)
    assert queue.auth_headers == {API_KEY}, queue.auth_headers


def test_sampler_progress_reaches_the_queue(slow_loop: tuple[FakeQueue, WorkerProcess]) -> None:
    queue, worker = slow_loop
    steps = 8
    params = {"prompt": "a lighthouse", "steps": steps, "width": 64, "height": 64}
    queue.push("progress", {"workflow": "txt2img", "params": params})

    first = queue.wait_progress("progress", JOB_S, class_type="KSampler")
    result = queue.wait_result("progress", JOB_S)
    assert "error" not in result, f"{brief(result)}\n{context(queue, worker)}"
    assert len(result["output"]["images"]) == 1

    report = first["output"]
    assert report["max"] == steps and 1 <= report["step"] <= steps, report
    assert 0 < report["percent"] < 100, report
    posts = queue.posts_for("progress")
    done_at = next(p.at for p in posts if not p.is_progress)
    assert any(p.is_progress and p.at < done_at for p in posts), context(queue, worker)


def test_a_stopped_job_posts_nothing_and_frees_comfyui(
    slow_loop: tuple[FakeQueue, WorkerProcess],
) -> None:
    queue, worker = slow_loop
    queue.push("doomed", sampler_job(LONG_STEPS))
    queue.wait_progress("doomed", JOB_S, class_type="KSampler")
    queue.stop("doomed")

    # Unless ComfyUI was told to interrupt it, the next prompt would wait ~40 s behind it.
    queue.push("after-stop", invert_job())
    result = queue.wait_result("after-stop", JOB_S)
    assert "error" not in result, f"{brief(result)}\n{context(queue, worker)}"
    assert_inverted(result["output"])
    assert queue.results("doomed") == [], context(queue, worker)
    assert worker.running, worker.tail()


def test_refresh_worker_asks_the_platform_to_stop_the_pod(
    launch_worker: LaunchWorker,
) -> None:
    with running_queue() as queue:
        worker = launch_worker(**queue.env(), REFRESH_WORKER="true")
        wait_booted(queue, worker)
        queue.push("refresh", invert_job())
        result = queue.wait_result("refresh", JOB_S)
        assert result.get("stopPod") is True, f"{brief(result)}\n{context(queue, worker)}"
        assert "error" not in result, brief(result)
        assert_inverted(result["output"])
        assert "refresh_worker" not in result["output"], brief(result)


def test_comfyui_killed_mid_job_fails_that_job_and_is_restarted(
    launch_worker: LaunchWorker,
) -> None:
    with running_queue() as queue:
        worker = launch_worker(**queue.env(), COMFY_DOUBLE_FAULTS=SLOW_FAULTS)
        wait_booted(queue, worker)
        queue.push("crashed", sampler_job(LONG_STEPS))
        queue.wait_progress("crashed", JOB_S, class_type="KSampler")
        [old_pid] = comfy_pids(worker.comfy_port)
        os.kill(old_pid, signal.SIGKILL)

        failed = queue.wait_result("crashed", JOB_S)
        assert failed.get("output", {}).get("error_code") == "comfyui_unavailable", (
            f"{brief(failed)}\n{context(queue, worker)}")
        assert "ComfyUI" in failed["error"], brief(failed)
        assert failed["output"]["details"][0]["exit_code"] == -signal.SIGKILL, brief(failed)

        queue.push("revived", invert_job())
        result = queue.wait_result("revived", BOOT_S)
        assert "error" not in result, f"{brief(result)}\n{context(queue, worker)}"
        assert_inverted(result["output"])
        new_pids = comfy_pids(worker.comfy_port)
        assert new_pids and old_pid not in new_pids, (new_pids, old_pid)
