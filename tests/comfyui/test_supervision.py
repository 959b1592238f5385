"""ComfyUI as our child: deaths are counted when they happen, in a time window, and a worker
whose ComfyUI keeps dying asks for a fresh one."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from comfy_runtime.comfyui import launch
from comfy_runtime.comfyui.supervision import (
    MAX_CRASHES,
    ComfyProcess,
    CrashWindow,
    launch_comfyui,
)
from comfy_runtime.errors import ComfyUIUnavailable
from comfy_runtime.settings import REPO_ROOT, Settings
from comfy_runtime.worker import Worker
from handler import respond
from tests.e2e.worker_process import DOUBLE_DIR, ComfyDirs, free_port


def _child(tmp_path: Path, code: str) -> ComfyProcess:
    (tmp_path / "main.py").write_text(code)
    return ComfyProcess([sys.executable, "-u", "main.py"], cwd=tmp_path,
                        base_url="http://127.0.0.1:9")


def _until(condition, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_death_between_jobs_is_counted_when_it_happens(tmp_path: Path) -> None:
    process = _child(tmp_path, "import sys; print('dying'); sys.exit(3)")
    process.launch()
    _until(lambda: process.crashes.count() == 1)
    assert process.exit_code == 3


def test_a_stop_we_asked_for_is_no_crash(tmp_path: Path) -> None:
    process = _child(tmp_path, "import time; time.sleep(60)")
    process.launch()
    process.stop()
    time.sleep(0.3)
    assert process.crashes.count() == 0


def test_old_deaths_are_forgotten() -> None:
    window = CrashWindow(window_s=0.3)
    window.record()
    window.record()
    assert window.count() == 2
    time.sleep(0.4)
    assert window.count() == 0


@pytest.fixture
def launched(tmp_path: Path) -> Iterator[Worker]:
    dirs = ComfyDirs.under(tmp_path)
    settings = Settings(
        comfyui_dir=DOUBLE_DIR,
        comfyui_port=free_port(),
        comfyui_input_dir=dirs.input,
        comfyui_output_dir=dirs.output,
        comfyui_temp_dir=dirs.temp,
        comfyui_args=f"--input-directory {dirs.input} --output-directory {dirs.output} "
        f"--temp-directory {dirs.temp}",
        network_volume_dir=tmp_path / "no-volume",
        warmup_workflow="none",
    )
    process = launch_comfyui(settings)
    worker = Worker(settings, process)
    worker.wait_ready()
    yield worker
    worker.close()


def test_repeated_deaths_between_jobs_ask_for_a_fresh_worker(launched: Worker) -> None:
    job = {"id": "j", "input": {"workflow": "warmup"}}
    process = launched.process
    assert process is not None
    for death in range(1, MAX_CRASHES + 1):
        os.killpg(process.pid, signal.SIGKILL)  # while idle: no job sees it happen
        _until(lambda: process.crashes.count() == death)
        result = respond(asyncio.run(launched.handle(job)))  # restarts ComfyUI first
        assert "error" not in result, result
        assert result.get("refresh_worker", False) is (death >= MAX_CRASHES), (death, result)


# --- on the CPU, torch's idle OpenMP threads sleep (issue 14) ---------------------------------
def _launched_env(tmp_path: Path, gpu: str | None, max_concurrency: int = 2) -> str:
    """OMP_WAIT_POLICY as the ComfyUI the worker launches sees it ("-" when unset)."""
    seen = tmp_path / "seen.txt"
    (tmp_path / "main.py").write_text(
        "import os, pathlib, time\n"
        f"pathlib.Path({str(seen)!r}).write_text(os.environ.get('OMP_WAIT_POLICY', '-'))\n"
        "time.sleep(60)\n")
    settings = Settings(comfyui_dir=tmp_path, comfyui_port=free_port(),
                        max_concurrency=max_concurrency, network_volume_dir=tmp_path / "no-volume")
    process = launch_comfyui(settings, gpu_probe=lambda: gpu)
    assert process is not None
    try:
        _until(lambda: seen.exists() and seen.read_text() != "")
        return seen.read_text()
    finally:
        process.stop()


def test_on_the_cpu_comfyui_runs_with_sleeping_openmp_threads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert _launched_env(tmp_path, gpu=None, max_concurrency=2) == "PASSIVE"


def test_one_job_at_a_time_keeps_openmp_default(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert _launched_env(tmp_path, gpu=None, max_concurrency=1) == "-"


def test_with_a_gpu_openmp_is_left_as_it_is(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert _launched_env(tmp_path, gpu="/dev/nvidia0") == "-"


def test_a_wait_policy_the_user_set_is_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert _launched_env(tmp_path, gpu=None) == "ACTIVE"


# --- what a launch leaves behind (issue 20) ---------------------------------------------------
def test_closing_comfyui_removes_the_model_paths_file_its_launch_wrote(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("import time\ntime.sleep(60)\n")
    settings = Settings(comfyui_dir=tmp_path, comfyui_port=free_port(),
                        network_volume_dir=tmp_path / "no-volume")
    process = launch_comfyui(settings, gpu_probe=lambda: None)
    assert process is not None
    written = Path(process.command[process.command.index("--extra-model-paths-config") + 1])
    try:
        assert written.exists()
        process.stop()  # a stop before a restart keeps it: the next launch reads it again
        assert written.exists()
    finally:
        process.close()
    assert not written.exists()


def test_a_launch_that_fails_leaves_no_model_paths_file(tmp_path: Path) -> None:
    settings = Settings(comfyui_dir=tmp_path / "no-comfyui-here", comfyui_port=free_port(),
                        network_volume_dir=tmp_path / "no-volume")
    with pytest.raises(ComfyUIUnavailable, match="ComfyUI not found"):
        launch_comfyui(settings, gpu_probe=lambda: None)
    assert not launch.model_paths_file().exists()


def test_an_exported_comfyui_url_does_not_reach_the_tests(tmp_path: Path) -> None:
    # The real-ComfyUI suite asks for COMFYUI_URL in the environment; the other tests build
    # their settings from a clean one (tests/conftest.py), or they would attach to it.
    env = {**os.environ, "COMFYUI_URL": "http://127.0.0.1:9", "MAX_CONCURRENCY": "7"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
         "-k", "openmp or repeated_deaths"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=110,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    assert " passed" in result.stdout


def test_coloured_log_lines_are_relayed_plain_at_their_level(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """ComfyUI 0.33 colours its lines on a pipe too (tests/protocol/v0.33.0/log_lines.json)."""
    recorded = json.loads((REPO_ROOT / "tests" / "protocol" / "v0.33.0" / "log_lines.json")
                          .read_text())
    lines = [recorded[0].rstrip("\n"), "\x1b[1m\x1b[31m[ERROR]\x1b[0m Failed to load node",
             "a 0.3.64 line, bare"]
    code = "\n".join(f"print({line!r})" for line in lines)
    with caplog.at_level(logging.INFO, logger="comfyui"):
        child = _child(tmp_path, code + "\nimport time; time.sleep(60)")
        child.launch()
        try:
            _until(lambda: len(child.log_tail(10)) == 3)
        finally:
            child.stop()
    assert child.log_tail(3) == [recorded[0].split("\x1b[0m ", 1)[1].rstrip("\n"),
                                 "Failed to load node", "a 0.3.64 line, bare"]
    relayed = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "comfyui"]
    assert (logging.ERROR, "Failed to load node") in relayed
    assert all("\x1b" not in message for _, message in relayed)
