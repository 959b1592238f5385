"""`python handler.py --rp_serve_api`: the SDK's local HTTP API, as a developer calls it."""

from __future__ import annotations

from typing import Any

import httpx

from .jobs import assert_inverted, bad_node_job, brief, invert_job
from .worker_process import LaunchWorker, WorkerProcess, free_port, wait_for_port

BOOT_S = 45.0
JOB_S = 30.0


def runsync(port: int, job_input: dict[str, Any], worker: WorkerProcess) -> dict[str, Any]:
    response = httpx.post(f"http://127.0.0.1:{port}/runsync", json={"input": job_input},
                          timeout=JOB_S)
    assert response.status_code == 200, (
        f"{response.status_code} {response.text[:500]}\n{worker.tail()}"
    )
    return response.json()


def test_runsync_serves_jobs_and_survives_a_bad_one(launch_worker: LaunchWorker) -> None:
    port = free_port()
    worker = launch_worker("--rp_serve_api", "--rp_api_host", "127.0.0.1",
                           "--rp_api_port", str(port))
    wait_for_port(port, worker, BOOT_S)

    done = runsync(port, invert_job(), worker)
    assert done["status"] == "COMPLETED", f"{brief(done)}\n{worker.tail()}"
    assert_inverted(done["output"])

    # The SDK's /runsync keeps only the message of a failed job: that is what a user reads.
    failed = runsync(port, bad_node_job(), worker)
    assert failed["status"] == "FAILED", f"{brief(failed)}\n{worker.tail()}"
    assert "output" not in failed, brief(failed)
    assert isinstance(failed["error"], str), brief(failed)
    assert failed["error"].startswith("workflow_invalid: "), brief(failed)  # the code survives
    assert "refused the workflow" in failed["error"], brief(failed)
    assert "NoSuchNode" in failed["error"], brief(failed)

    again = runsync(port, invert_job(), worker)
    assert again["status"] == "COMPLETED", f"{brief(again)}\n{worker.tail()}"
    assert_inverted(again["output"])
    assert worker.running, worker.tail()
