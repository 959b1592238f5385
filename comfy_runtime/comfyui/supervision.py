"""ComfyUI as our child process: launch, readiness, log tail, deaths, restart (its command
line and environment are `launch`'s).

A watcher thread waits on the child, so a death is noticed (and counted) when it happens,
also between jobs and during a warmup, not only when a job trips over it. `CrashWindow`
keeps those deaths: the worker asks the platform for a fresh worker when ComfyUI died
`MAX_CRASHES` times within `CRASH_WINDOW_S`; older deaths are forgotten, so a worker that
crashed once a day for a week is not replaced for it.

Deliberately light on imports (standard library and our settings only): `handler.py`
launches ComfyUI before importing the heavy modules, so they load while ComfyUI boots.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import ComfyUIUnavailable
from ..settings import Settings
from .launch import GpuProbe, launch_command, launch_env, model_paths_file, visible_gpu

log = logging.getLogger(__name__)
comfy_log = logging.getLogger("comfyui")

# ComfyUI 0.33 colours every line, on a pipe too: "\x1b[32m[INFO]\x1b[0m message". The codes
# are dropped so logs and error messages stay readable, and the level tag becomes the relayed
# line's level (0.3.64 prints bare messages, relayed at INFO).
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_LEVEL_TAG = re.compile(r"\[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\] ?")
_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING,
           "ERROR": logging.ERROR, "CRITICAL": logging.CRITICAL}


def plain_log_line(raw: str) -> tuple[int, str]:
    """A line of ComfyUI's output without colour codes or level tag, and its level."""
    line = _ANSI.sub("", raw).rstrip()
    tag = _LEVEL_TAG.match(line)
    if tag is None:
        return logging.INFO, line
    return _LEVELS[tag.group(1)], line[tag.end():]

LOG_TAIL_LINES = 60
MAX_CRASHES = 3
CRASH_WINDOW_S = 3600.0


class CrashWindow:
    """ComfyUI's deaths within the last `window_s` seconds (thread-safe)."""

    def __init__(self, window_s: float = CRASH_WINDOW_S) -> None:
        self.window_s = window_s
        self._deaths: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def record(self, at: float | None = None) -> None:
        with self._lock:
            self._deaths.append(time.monotonic() if at is None else at)

    def count(self) -> int:
        with self._lock:
            horizon = time.monotonic() - self.window_s
            while self._deaths and self._deaths[0] < horizon:
                self._deaths.popleft()
            return len(self._deaths)


class ComfyProcess:
    """ComfyUI running as our child, with the tail of its log kept for error reports."""

    def __init__(
        self, command: list[str], *, cwd: Path, base_url: str, crashes: CrashWindow | None = None,
        env: dict[str, str] | None = None, owned_files: tuple[Path, ...] = (),
    ) -> None:
        self.command = command
        # Files written for this child's command line (its model paths), kept across restarts
        # and removed by `close`, so launches leave nothing in the temp folder.
        self.owned_files = owned_files
        self.env = env  # None: ours
        self.cwd = cwd
        self.base_url = base_url.rstrip("/")
        self.crashes = crashes or CrashWindow()
        self._proc: subprocess.Popen[bytes] | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self._reader: threading.Thread | None = None
        self._stopping = False

    # --- life -------------------------------------------------------------------------------
    def launch(self) -> None:
        if not (self.cwd / self.command[2]).exists():
            raise ComfyUIUnavailable(
                f"ComfyUI not found: {self.cwd / self.command[2]} does not exist; set "
                "COMFYUI_DIR to ComfyUI's folder, or COMFYUI_URL to attach to a running one",
                {"comfyui_dir": str(self.cwd)},
            )
        log.info("launching ComfyUI: %s (in %s)", " ".join(self.command), self.cwd)
        self._tail.clear()
        self._proc = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,  # our signals are ours; we stop its whole group ourselves
        )
        self._stopping = False
        self._reader = threading.Thread(
            target=self._pump_log, args=(self._proc,), name="comfyui-log", daemon=True
        )
        self._reader.start()
        threading.Thread(
            target=self._watch, args=(self._proc,), name="comfyui-watch", daemon=True
        ).start()

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        if not self._stopping and proc is self._proc:
            self.crashes.record()
            log.error("ComfyUI exited with code %s (%d deaths in the last %.0f s)",
                      code, self.crashes.count(), self.crashes.window_s)

    def wait_ready(self, timeout_s: float) -> float:
        """Block until ComfyUI answers HTTP; return the seconds it took."""
        started = time.monotonic()
        deadline = started + timeout_s
        while True:
            self.check_alive()
            if _answers(self.base_url + "/system_stats", timeout_s=2.0):
                return time.monotonic() - started
            if time.monotonic() >= deadline:
                raise ComfyUIUnavailable(
                    f"ComfyUI did not answer within {timeout_s:g} s "
                    "(COMFYUI_BOOT_TIMEOUT_S); last lines of its log: " + self.tail_text(5),
                    {"log_tail": self.log_tail()},
                )
            time.sleep(0.05)

    def check_alive(self, grace_s: float = 0.0) -> None:
        """Raise `ComfyUIUnavailable`, with the exit code and log tail, if the child died.

        `grace_s` waits that long for an exit: a child that refuses connections is often in
        the middle of dying, and its watcher thread may not have reaped it yet.
        """
        if grace_s > 0 and self._proc is not None:
            try:
                self._proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        code = self.exit_code
        if code is not None:
            if self._reader is not None:
                self._reader.join(timeout=1.0)  # let the last lines of the log arrive
            raise ComfyUIUnavailable(
                f"ComfyUI exited with code {code}; last lines of its log: " + self.tail_text(5),
                {"exit_code": code, "log_tail": self.log_tail()},
                comfyui_died=True,
            )

    @property
    def exit_code(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def restart(self, timeout_s: float) -> float:
        self.stop()
        self.launch()
        return self.wait_ready(timeout_s)

    def stop(self, grace_s: float = 10.0) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        self._stopping = True  # an exit we asked for is no crash
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait(timeout=5)

    def close(self) -> None:
        """Stop for good: the child, then the files written for its command line."""
        self.stop()
        for path in self.owned_files:
            path.unlink(missing_ok=True)

    # --- log --------------------------------------------------------------------------------
    def log_tail(self, lines: int = LOG_TAIL_LINES) -> list[str]:
        return list(self._tail)[-lines:]

    def tail_text(self, lines: int) -> str:
        return " | ".join(self.log_tail(lines)) or "(no output)"

    def _pump_log(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            level, line = plain_log_line(raw.decode("utf-8", "replace"))
            self._tail.append(line)
            comfy_log.log(level, "%s", line)


def _answers(url: str, *, timeout_s: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bool(200 <= response.status < 300)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# --- cold start ---------------------------------------------------------------------------
def launch_comfyui(
    settings: Settings, gpu_probe: GpuProbe = visible_gpu
) -> ComfyProcess | None:
    """Start ComfyUI as our child; None when COMFYUI_URL names one that is already running.
    On a machine where `gpu_probe` finds no GPU it runs on the CPU (see `device_args`)."""
    if settings.comfyui_url:
        log.info("attaching to the ComfyUI at %s", settings.comfyui_url)
        return None
    command = launch_command(settings, gpu_probe)
    process = ComfyProcess(command, cwd=settings.comfyui_dir, base_url=settings.comfyui_base_url,
                           env=launch_env(command, os.environ, settings.max_concurrency),
                           owned_files=(model_paths_file(),))
    try:
        process.launch()
    except BaseException:
        process.close()  # a launch that failed leaves no model-paths file behind either
        raise
    atexit.register(process.close)
    return process
