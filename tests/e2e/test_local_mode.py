"""`python handler.py`: the SDK's local test mode runs one job and exits 0, or 1 on error."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from .jobs import assert_inverted, decode_image, invert_job
from .worker_process import REPO, LaunchWorker, WorkerProcess

BOOT_AND_JOB_S = 45.0


def job_result(worker: WorkerProcess) -> dict[str, Any]:
    """The result the SDK logs as `Job result: {...}` (a Python repr) at the end."""
    for line in worker.log_text().splitlines():
        if "Job result: " in line:
            return ast.literal_eval(line.split("Job result: ", 1)[1])
    raise AssertionError(f"no 'Job result' line in the log\n{worker.tail()}")


def test_runs_the_repositorys_test_input(launch_worker: LaunchWorker) -> None:
    worker = launch_worker()
    assert worker.wait(BOOT_AND_JOB_S) == 0, worker.tail()

    images = job_result(worker)["output"]["images"]
    expected = json.loads((REPO / "test_input.json").read_text())["input"]["workflow"]["1"]
    image = decode_image(images[0])
    assert image.size == (expected["inputs"]["width"], expected["inputs"]["height"])


def test_runs_a_test_input_given_on_the_command_line(launch_worker: LaunchWorker) -> None:
    worker = launch_worker("--test_input", json.dumps({"input": invert_job()}))
    assert worker.wait(BOOT_AND_JOB_S) == 0, worker.tail()
    assert_inverted(job_result(worker)["output"])


def test_invalid_input_exits_1_naming_the_field(launch_worker: LaunchWorker) -> None:
    worker = launch_worker("--test_input", json.dumps({"input": {"workflow": [1, 2, 3]}}))
    assert worker.wait(BOOT_AND_JOB_S) == 1, worker.tail()
    failure = [line for line in worker.log_text().splitlines() if "failed with error" in line]
    assert failure and "workflow" in failure[0], worker.tail()


def test_missing_comfyui_stops_the_worker_with_a_clear_message(
    launch_worker: LaunchWorker, tmp_path: Path
) -> None:
    empty = tmp_path / "no-comfyui"
    empty.mkdir()
    worker = launch_worker(COMFYUI_DIR=str(empty))
    assert worker.wait(BOOT_AND_JOB_S) != 0, worker.tail()
    log = worker.log_text()
    assert f"{empty / 'main.py'} does not exist" in log, worker.tail()
    assert "COMFYUI_DIR" in log, worker.tail()


def test_comfyui_too_slow_to_boot_stops_the_worker(launch_worker: LaunchWorker) -> None:
    worker = launch_worker(COMFY_DOUBLE_BOOT_DELAY_S="60", COMFYUI_BOOT_TIMEOUT_S="1")
    assert worker.wait(BOOT_AND_JOB_S) == 1, worker.tail()
    assert "did not answer within 1 s (COMFYUI_BOOT_TIMEOUT_S)" in worker.log_text(), worker.tail()


def test_comfyui_exiting_at_boot_is_reported_with_its_log(launch_worker: LaunchWorker) -> None:
    # A flag ComfyUI rejects: its argument parser exits with code 2 before listening.
    worker = launch_worker(COMFYUI_ARGS="--verbose LOUD")
    assert worker.wait(BOOT_AND_JOB_S) == 1, worker.tail()
    fatal = [line for line in worker.log_text().splitlines() if "cannot start" in line]
    assert fatal, worker.tail()
    assert "exited with code 2" in fatal[0] and "invalid choice: 'LOUD'" in fatal[0], worker.tail()
