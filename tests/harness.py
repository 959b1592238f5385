"""A real `Worker` attached to the ComfyUI double, driven the way the SDK drives the handler."""

from __future__ import annotations

import asyncio
from typing import Any

from comfy_runtime.settings import Settings
from comfy_runtime.worker import Worker
from handler import respond
from tests.comfy_double import ComfyDouble


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
        # The client's view: the worker's outcome as the edge serialises it.
        result = respond(asyncio.run(self.worker.handle(job, progress=self.progress.append)))
        self.worker.drain_cleanups()
        return result

    async def handle(self, job: dict[str, Any]) -> dict[str, Any]:
        """One job as the SDK's async loop runs it: several may be in flight at once."""
        return respond(await self.worker.handle(job, progress=self.progress.append))

    def warm_up(self) -> dict[str, Any]:
        """The warmup's outcome, as a client would see it were it a job."""
        outcome = asyncio.run(self.worker.warmup())
        assert outcome is not None, "warmup is disabled"
        return respond(outcome)

    def leftovers(self) -> list[str]:
        """Files left in ComfyUI's folders."""
        return sorted(
            str(path.relative_to(self.double.root))
            for folder in (self.double.input_dir, self.double.output_dir, self.double.temp_dir)
            for path in folder.rglob("*")
        )
