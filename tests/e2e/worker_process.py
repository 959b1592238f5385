"""`python handler.py` as a subprocess, with its ComfyUI double, and no orphans left behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOUBLE_DIR = REPO / "tests" / "comfy_double"

# Variables a developer's shell (or the platform) may have set that would change the mode
# the SDK runs in, or point the worker somewhere else.
_INHERITED_PREFIXES = ("RUNPOD_", "COMFY", "BUCKET_", "WARMUP_", "REFRESH_WORKER", "WORKER_")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class ComfyDirs:
    """ComfyUI's folders, told both to the worker (settings) and to the double (flags)."""

    input: Path
    output: Path
    temp: Path

    @classmethod
    def under(cls, root: Path) -> ComfyDirs:
        dirs = cls(root / "input", root / "output", root / "temp")
        for folder in (dirs.input, dirs.output, dirs.temp):
            folder.mkdir(parents=True, exist_ok=True)
        return dirs


def worker_env(dirs: ComfyDirs, comfy_port: int, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_PREFIXES)}
    env.update(
        RUNPOD_SKIP_AUTO_SYSTEM_CHECKS="true",
        RUNPOD_SKIP_GPU_CHECK="true",
        # INFO keeps the SDK from logging every job's input and output twice.
        RUNPOD_DEBUG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
        COMFYUI_DIR=str(DOUBLE_DIR),
        COMFYUI_PORT=str(comfy_port),
        COMFYUI_INPUT_DIR=str(dirs.input),
        COMFYUI_OUTPUT_DIR=str(dirs.output),
        COMFYUI_TEMP_DIR=str(dirs.temp),
        # The worker does not pass directory flags itself; the double needs them to share
        # the folders the worker cleans.
        COMFYUI_ARGS=(
            f"--input-directory {dirs.input} --output-directory {dirs.output} "
            f"--temp-directory {dirs.temp}"
        ),
        # A network volume on this machine must not change what the double is told.
        NETWORK_VOLUME_DIR=str(dirs.input.parent / "no-volume"),
    )
    env.update(overrides)
    return env


class WorkerProcess:
    """The worker in its own session, its stdout and stderr in one log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.env = env
        self.log_path = log_path
        self.comfy_port = int(env["COMFYUI_PORT"])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "handler.py", *self.args],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # so the SDK's ping process can be stopped with it
            )
        return self

    def wait(self, timeout_s: float) -> int:
        """The exit code; a worker still running after `timeout_s` fails the test."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(
                f"worker still running after {timeout_s:g} s\n{self.tail()}"
            ) from None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text("utf-8", "replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 40, width: int = 400) -> str:
        text = self.log_text().splitlines()[-lines:]
        return "--- worker log tail ---\n" + "\n".join(line[:width] for line in text)

    def wait_for_log(self, needle: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while needle not in self.log_text():
            assert self.running, f"worker exited before logging {needle!r}\n{self.tail()}"
            assert time.monotonic() < deadline, f"no {needle!r} in the log\n{self.tail()}"
            time.sleep(0.1)

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM (the platform's way), then SIGKILL; then any ComfyUI left on its port."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if proc is not None:
            _signal_group(proc.pid, signal.SIGKILL)  # the SDK's ping process, if it outlived
        kill_comfy(self.comfy_port)


LaunchWorker = Callable[..., WorkerProcess]
"""The `launch_worker` fixture: `launch_worker(*args, **env)` -> a started worker."""


def spawn_worker(root: Path, *args: str, **env: str) -> WorkerProcess:
    """Start `python handler.py *args` with its own ComfyUI folders and port under `root`."""
    worker = WorkerProcess(
        list(args),
        worker_env(ComfyDirs.under(root / "comfy"), free_port(), **env),
        root / "worker.log",
    )
    return worker.start()


def stop_worker(worker: WorkerProcess) -> None:
    worker.stop()
    assert not port_answers(worker.comfy_port), (
        f"ComfyUI still answers on {worker.comfy_port} after the worker stopped"
    )


def comfy_pids(port: int) -> list[int]:
    """PIDs of ComfyUI doubles launched on `port`, found from /proc (no psutil here)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode("utf-8", "replace").split("\0")
        except OSError:
            continue
        if "main.py" in argv and _flag_value(argv, "--port") == str(port):
            pids.append(int(entry.name))
    return pids


def kill_comfy(port: int, timeout_s: float = 5.0) -> None:
    for pid in comfy_pids(port):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout_s
    while (comfy_pids(port) or port_answers(port)) and time.monotonic() < deadline:
        time.sleep(0.1)


def wait_for_port(port: int, worker: WorkerProcess, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not port_answers(port):
        assert worker.running, f"worker exited before listening on {port}\n{worker.tail()}"
        assert time.monotonic() < deadline, f"nothing listens on {port}\n{worker.tail()}"
        time.sleep(0.1)


def _flag_value(argv: list[str], flag: str) -> str | None:
    try:
        return argv[argv.index(flag) + 1]
    except (ValueError, IndexError):
        return None


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
