"""Fixtures: worker subprocesses that are always stopped, their ComfyUI doubles included."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .worker_process import LaunchWorker, WorkerProcess, spawn_worker, stop_worker


@pytest.fixture
def launch_worker(tmp_path: Path) -> Iterator[LaunchWorker]:
    """`launch_worker(*args, **env)`: a worker stopped at the end of the test, whatever happens."""
    started: list[WorkerProcess] = []

    def launch(*args: str, **env: str) -> WorkerProcess:
        worker = spawn_worker(tmp_path / f"worker{len(started)}", *args, **env)
        started.append(worker)
        return worker

    yield launch
    for worker in started:
        stop_worker(worker)
