"""The worker's life across jobs: boot, warmup, and keeping ComfyUI healthy between jobs.

`job.py` runs one job; this module decides what happens around it: a ComfyUI that died is
restarted (and warmed up again) before the next job, and a worker that keeps crashing, or
whose GPU reported a CUDA error, asks the platform to replace it (`refresh_worker`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

from .cleanup import JobCleaner
from .client import ComfyClient
from .errors import ComfyUIUnavailable, JobError, UploadFailed
from .folders import ComfyFolders
from .info import worker_info
from .job import JobContext, run_job
from .process import ComfyProcess
from .progress import ProgressSink
from .settings import Settings
from .workflows import WorkflowRegistry

log = logging.getLogger(__name__)

# After this many ComfyUI deaths the worker asks to be replaced rather than restart again.
MAX_CRASHES = 3
_FATAL_GPU_MARKERS = (
    "CUDA error",
    "illegal memory access",
    "device-side assert",
    "CUBLAS_STATUS",
    "cuDNN error",
    "NVML",
)


class Worker:
    def __init__(self, settings: Settings, process: ComfyProcess | None = None) -> None:
        self.settings = settings
        self.process = process
        self.client = ComfyClient(settings.comfyui_base_url, timeout_s=settings.comfyui_http_timeout_s)
        self.crashes = 0
        self.warmup_ms: float | None = None
        self._restart_lock = asyncio.Lock()
        folders = _local_folders(settings, launched=process is not None)
        self.ctx = JobContext(
            settings=settings,
            client=self.client,
            workflows=WorkflowRegistry(settings.workflows_dir),
            cleaner=JobCleaner(self.client, folders),
            folders=folders if settings.comfyui_local_files else None,
            store=_object_store(settings),
            health_check=process.check_alive if process is not None else (lambda: None),
        )

    # --- boot -------------------------------------------------------------------------------
    def wait_ready(self) -> float:
        """Block until ComfyUI answers; seconds waited."""
        timeout_s = self.settings.comfyui_boot_timeout_s
        if self.process is not None:
            return self.process.wait_ready(timeout_s)
        started = time.monotonic()
        while True:
            try:
                self.client.system_stats(timeout_s=2.0)
                return time.monotonic() - started
            except ComfyUIUnavailable as exc:
                if time.monotonic() - started > timeout_s:
                    raise ComfyUIUnavailable(
                        f"ComfyUI at {self.settings.comfyui_base_url} did not answer within "
                        f"{timeout_s:g} s (COMFYUI_BOOT_TIMEOUT_S): {exc.message}"
                    ) from exc
                time.sleep(0.25)

    async def warmup(self) -> dict[str, Any] | None:
        """Run the warmup workflow once; returns its result, or None when disabled."""
        choice = self.settings.warmup_workflow.strip()
        if choice.lower() in ("", "none", "off", "false"):
            log.info("warmup disabled (WARMUP_WORKFLOW=none)")
            return None
        started = time.perf_counter()
        job_input = await asyncio.to_thread(self._warmup_input, choice)
        result = await run_job(self.ctx, "warmup", job_input)
        self.warmup_ms = round((time.perf_counter() - started) * 1000, 1)
        if "error" in result:
            message = f"warmup workflow {choice!r} failed: {result['error']}"
            if self.settings.warmup_required:
                raise ComfyUIUnavailable(message + " (WARMUP_REQUIRED=true)", result.get("details"))
            log.error("%s; going on without it (set WARMUP_REQUIRED=true to stop instead)", message)
        else:
            log.info("warmup workflow %r done in %.0f ms", choice, self.warmup_ms)
        return result

    def _warmup_input(self, choice: str) -> dict[str, Any]:
        if choice.lower() != "auto":
            return {"workflow": _warmup_graph(choice)}
        try:
            has_checkpoint = bool(self.client.models("checkpoints"))
        except ComfyUIUnavailable:
            has_checkpoint = False
        if has_checkpoint and "txt2img" in self.ctx.workflows.workflows:
            # One step at the default size loads the default checkpoint onto the GPU and
            # compiles the kernels the first real job would otherwise wait for.
            return {"workflow": "txt2img", "params": {"prompt": "warmup", "steps": 1, "seed": 0}}
        return {"workflow": "warmup"}

    # --- jobs -------------------------------------------------------------------------------
    async def handle(self, job: dict[str, Any], progress: ProgressSink | None = None) -> dict[str, Any]:
        job_id = str(job.get("id") or "local")
        try:
            await self._ensure_comfyui()
        except JobError as exc:
            log.error("job %s: ComfyUI cannot be brought back: %s", job_id, exc.message)
            return {**exc.to_output(), "refresh_worker": True}
        raw_input = job.get("input")
        if isinstance(raw_input, dict) and raw_input.get("info") is True:
            return await self._info()
        result = await run_job(self.ctx, job_id, raw_input, progress=progress)
        return self._after_job(job_id, result)

    async def _info(self) -> dict[str, Any]:
        try:
            return await asyncio.to_thread(
                worker_info,
                self.client,
                self.settings,
                self.ctx.workflows,
                store_configured=self.ctx.store is not None,
                warmup_ms=self.warmup_ms,
            )
        except JobError as exc:
            return exc.to_output()

    async def _ensure_comfyui(self) -> None:
        if self.process is None or self.process.exit_code is None:
            return
        async with self._restart_lock:
            if self.process.exit_code is None:
                return  # another job restarted it while we waited
            log.warning("ComfyUI is down (exit code %s); restarting it", self.process.exit_code)
            await asyncio.to_thread(self.process.restart, self.settings.comfyui_boot_timeout_s)
            await self.warmup()

    def _after_job(self, job_id: str, result: dict[str, Any]) -> dict[str, Any]:
        code = result.get("error_code")
        died = self.process is not None and self.process.exit_code is not None
        if code == "comfyui_unavailable" and died:
            assert self.process is not None
            self.crashes += 1
            result.setdefault("details", {})
            if isinstance(result["details"], dict):
                result["details"].setdefault("exit_code", self.process.exit_code)
                result["details"].setdefault("log_tail", self.process.log_tail(20))
            log.error("job %s: ComfyUI died (crash %d of %d allowed)", job_id, self.crashes,
                      MAX_CRASHES)
            if self.crashes >= MAX_CRASHES:
                result["refresh_worker"] = True
        if code == "execution_failed" and _is_fatal_gpu_error(result):
            log.error("job %s: the GPU reported a fatal error; asking for a fresh worker", job_id)
            result["refresh_worker"] = True
        elif code == "execution_failed" and "ran out of memory" in result.get("error", ""):
            # ComfyUI keeps what it loaded; give the next job the whole GPU.
            self._free_memory(job_id)
        if self.settings.refresh_worker:
            result["refresh_worker"] = True
        return result

    def _free_memory(self, job_id: str) -> None:
        try:
            self.client.free(unload_models=True, free_memory=True)
            log.warning("job %s: out of GPU memory; asked ComfyUI to unload its models", job_id)
        except ComfyUIUnavailable as exc:
            log.warning("job %s: could not ask ComfyUI to free memory: %s", job_id, exc.message)

    def close(self) -> None:
        self.ctx.drain_cleanups()
        self.ctx.cleanup_pool.shutdown(wait=True)
        self.ctx.run_pool.shutdown(wait=False, cancel_futures=True)
        self.ctx.events.close()
        self.client.close()
        if self.process is not None:
            self.process.stop()


def _is_fatal_gpu_error(result: dict[str, Any]) -> bool:
    text = json.dumps(result.get("details", ""))
    return any(marker in text for marker in _FATAL_GPU_MARKERS)


def _warmup_graph(choice: str) -> dict[str, Any] | str:
    """A bundled workflow name, or the graph in a file."""
    path = Path(choice)
    if path.suffix == ".json" and path.exists():
        return json.loads(path.read_text())
    return choice


def _local_folders(settings: Settings, *, launched: bool) -> ComfyFolders | None:
    """ComfyUI's folders, if they are certainly the ones it uses: we launched it from
    COMFYUI_DIR, or they were named explicitly."""
    named = settings.comfyui_input_dir or settings.comfyui_output_dir or settings.comfyui_temp_dir
    if not (launched or named):
        return None
    return ComfyFolders(settings.input_dir, settings.output_dir, settings.temp_dir)


def _object_store(settings: Settings) -> Any:
    if not settings.object_store_configured:
        return None
    from .storage import ObjectStore  # boto3 loads only when a store is configured

    try:
        return ObjectStore.from_settings(settings)
    except UploadFailed as exc:
        # A misconfigured store must not stop inline jobs; jobs that need it say why.
        log.error("object store disabled: %s", exc.message)
        return None
