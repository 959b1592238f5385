"""Shared fixtures: the ComfyUI double, and a worker attached to it in-process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from comfy_runtime.settings import Settings
from comfy_runtime.worker import Worker
from tests.comfy_double import ComfyDouble

pytest_plugins = ["tests.comfy_double.fixtures"]


class WorkerHarness:
    """A real `Worker` attached to a double, run the way the SDK runs the handler."""

    def __init__(self, double: ComfyDouble, **overrides: Any) -> None:
        self.double = double
        self.settings = Settings(
            comfyui_url=double.url,
            comfyui_input_dir=double.input_dir,
            comfyui_output_dir=double.output_dir,
            comfyui_temp_dir=double.temp_dir,
            **overrides,
        )
        self.worker = Worker(self.settings)
        self.progress: list[dict[str, Any]] = []

    def run(self, job_input: Any, job_id: str = "job-1") -> dict[str, Any]:
        job = {"id": job_id, "input": job_input}
        result = asyncio.run(self.worker.handle(job, progress=self.progress.append))
        self.worker.ctx.drain_cleanups()
        return result

    def leftovers(self) -> list[str]:
        """Files left in ComfyUI's folders."""
        return sorted(
            str(path.relative_to(self.double.root))
            for folder in (self.double.input_dir, self.double.output_dir, self.double.temp_dir)
            for path in folder.rglob("*")
        )


@pytest.fixture
def harness(comfy_double: ComfyDouble) -> Iterator[WorkerHarness]:
    h = WorkerHarness(comfy_double)
    yield h
    h.worker.close()
