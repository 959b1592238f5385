"""The worker's life across jobs: it owns ComfyUI's child, the client, the websocket and the
pools, runs the warmup, keeps ComfyUI healthy between jobs, and gives each job a typed outcome.

`job.py` runs one job; this module decides what happens around it, from the error's type and
fields: a ComfyUI that died is restarted (and warmed up again) before the next job; a GPU
that reported a fatal error, or a ComfyUI that died `MAX_CRASHES` times within
`CRASH_WINDOW_S`, makes the worker ask the platform to replace it (`refresh_worker`); out of
GPU memory, ComfyUI is asked to unload its models. The edge (`handler.respond`) turns the
outcome into the client's JSON.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .blocking import Pools
from .comfyui.client import ComfyClient
from .comfyui.event_hub import EventHub
from .comfyui.node_definitions import DefinitionsCache
from .comfyui.prompt_run import wait_until_ended
from .comfyui.supervision import MAX_CRASHES, ComfyProcess
from .contract import ConvertedWorkflow, JobOutput
from .errors import ComfyUIUnavailable, ExecutionFailed, JobError, UploadFailed
from .info import worker_info
from .job import JobContext, run_job
from .job_files import ComfyFolders, JobCleaner
from .models.cache import CacheConfig, ModelCache
from .outputs.live import OutputSink
from .progress import ProgressSink
from .settings import Settings
from .workflows import WorkflowRegistry

if TYPE_CHECKING:
    from .outputs.store import ObjectStore

log = logging.getLogger(__name__)


class WorkerState(enum.Enum):
    STARTING = "starting"  # waiting for ComfyUI to answer, then the warmup
    READY = "ready"
    RESTARTING = "restarting"  # ComfyUI died; bringing it back before the next job
    BROKEN = "broken"  # ComfyUI cannot be brought back: every job asks for a fresh worker
    CLOSED = "closed"


@dataclass(frozen=True)
class Succeeded:
    result: JobOutput | ConvertedWorkflow | dict[str, Any]
    refresh_worker: bool = False


@dataclass(frozen=True)
class Failed:
    error: JobError
    refresh_worker: bool = False


Outcome = Succeeded | Failed


class Worker:
    def __init__(self, settings: Settings, process: ComfyProcess | None = None) -> None:
        self.settings = settings
        self.process = process
        self.state = WorkerState.STARTING
        self.warmup_ms: float | None = None
        self.client = ComfyClient(settings.comfyui_base_url,
                                  timeout_s=settings.comfyui_http_timeout_s)
        self.events = EventHub(self.client.ws_url)
        self.pools = Pools()
        self._restart_lock = asyncio.Lock()
        folders = _local_folders(settings, launched=process is not None)
        self.ctx = JobContext(
            settings=settings,
            client=self.client,
            events=self.events,
            pools=self.pools,
            workflows=WorkflowRegistry(settings.workflows_dir),
            definitions=DefinitionsCache(self.client),
            models=_model_cache(settings),
            cleaner=JobCleaner(self.client, folders),
            folders=folders if settings.comfyui_local_files else None,
            store=_object_store(settings),
            health_check=process.check_alive if process is not None else (lambda: None),
            on_stuck=self._note_stuck,
        )
        self._stuck: str | None = None  # a prompt ComfyUI would not stop

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

    async def warmup(self) -> Outcome | None:
        """Run the warmup workflow once; its outcome, or None when disabled."""
        choice = self.settings.warmup_workflow.strip()
        if choice.lower() in ("", "none", "off", "false"):
            log.info("warmup disabled (WARMUP_WORKFLOW=none)")
            self.state = WorkerState.READY
            return None
        started = time.perf_counter()
        job_input = await asyncio.to_thread(self._warmup_input, choice)
        outcome = await self._warmup_run(job_input)
        if isinstance(outcome, Failed) and job_input.get("workflow") == "txt2img" and (
                outcome.error.code == "execution_failed"):
            # "auto" guessed an SD-style checkpoint; the first one ComfyUI lists may be of a
            # family txt2img's graph cannot drive (no text encoder or VAE inside, as the
            # checkpoints of newer models often are). The worker is still warmed up.
            log.warning("warmup: txt2img with the first checkpoint failed (%s); running the "
                        "model-free warmup instead", outcome.error.message)
            outcome = await self._warmup_run({"workflow": "warmup"})
        await asyncio.to_thread(self._settle)
        self.warmup_ms = round((time.perf_counter() - started) * 1000, 1)
        if isinstance(outcome, Failed):
            message = f"warmup workflow {choice!r} failed: {outcome.error.message}"
            if self.settings.warmup_required:
                raise ComfyUIUnavailable(message + " (WARMUP_REQUIRED=true)", outcome.error.details)
            log.error("%s; going on without it (set WARMUP_REQUIRED=true to stop instead)", message)
        else:
            log.info("warmup workflow %r done in %.0f ms", choice, self.warmup_ms)
        self.state = WorkerState.READY
        return outcome

    async def _warmup_run(self, job_input: dict[str, Any]) -> Outcome:
        try:
            return Succeeded(await run_job(self.ctx, "warmup", job_input))
        except JobError as exc:
            return Failed(exc)

    def _settle(self) -> None:
        """Return once ComfyUI is done with the warmup, its garbage collection included.

        Right after a prompt ComfyUI collects garbage, holding its interpreter lock all the
        while (about 0.4 s on a CPU with an SD1.5 checkpoint loaded), and it answers nothing
        meanwhile: the job that woke the worker would wait for it. The warmup's cleanup and
        one more request are answered only once that is over, so it happens before READY.
        """
        started = time.perf_counter()
        self.pools.drain()
        try:
            self.client.queue()
        except ComfyUIUnavailable:
            return  # the next job's own requests will say what is wrong
        log.info("ComfyUI settled %.0f ms after the warmup", (time.perf_counter() - started) * 1000)

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
    async def handle(self, job: dict[str, Any], progress: ProgressSink | None = None,
                     outputs: OutputSink | None = None) -> Outcome:
        """One job's outcome; `progress` hears its progress reports and `outputs` each output
        as soon as it is delivered (both from the job's threads)."""
        job_id = str(job.get("id") or "local")
        try:
            await self._ensure_comfyui()
        except JobError as exc:
            self.state = WorkerState.BROKEN
            log.error("job %s: ComfyUI cannot be brought back: %s", job_id, exc.message)
            return Failed(exc, refresh_worker=True)
        raw_input = job.get("input")
        if isinstance(raw_input, dict) and raw_input.get("info") is True:
            return await self._info()
        try:
            outcome: Outcome = Succeeded(
                await run_job(self.ctx, job_id, raw_input, progress=progress, outputs=outputs)
            )
        except JobError as exc:
            log.warning("job %s failed: %s: %s", job_id, exc.code, exc.message)
            outcome = Failed(await asyncio.to_thread(self._with_death, exc))
        return await self._after_job(job_id, outcome)

    async def _info(self) -> Outcome:
        try:
            return Succeeded(await asyncio.to_thread(
                worker_info,
                self.client,
                self.settings,
                self.ctx.workflows,
                store_configured=self.ctx.store is not None,
                warmup_ms=self.warmup_ms,
                describe_cache=self.ctx.models.describe,
                fan_out=self.pools.fan_out,
            ))
        except JobError as exc:
            return Failed(exc)

    async def _ensure_comfyui(self) -> None:
        if self._stuck is not None:
            await self._unstick(self._stuck)
        if self.process is None or self.process.exit_code is None:
            return
        async with self._restart_lock:
            if self.process.exit_code is None:
                return  # another job restarted it while we waited
            await self._restart(f"ComfyUI is down (exit code {self.process.exit_code})")

    def _note_stuck(self, prompt_id: str) -> None:
        self._stuck = prompt_id

    async def _unstick(self, prompt_id: str) -> None:
        """A prompt that would not stop may have ended since; if not, ComfyUI is broken."""
        grace = self.settings.stop_grace_s
        ended = await asyncio.to_thread(wait_until_ended, self.client, prompt_id, grace)
        self._stuck = None
        if ended:
            return
        if self.process is None:
            raise ComfyUIUnavailable(
                f"ComfyUI still runs prompt {prompt_id}, which would not stop when interrupted; "
                "it cannot take jobs (the worker did not launch it, so it cannot restart it)",
                {"prompt_id": prompt_id},
            )
        async with self._restart_lock:
            await self._restart(f"ComfyUI is stuck on prompt {prompt_id}")

    async def _restart(self, why: str) -> None:
        assert self.process is not None
        self.state = WorkerState.RESTARTING
        log.warning("%s; restarting it", why)
        await asyncio.to_thread(self.process.restart, self.settings.comfyui_boot_timeout_s)
        self.ctx.definitions.forget()
        await self.warmup()

    def _with_death(self, error: JobError) -> JobError:
        """ComfyUI being unreachable because our child died says more: its exit code and log."""
        if not isinstance(error, ComfyUIUnavailable) or error.comfyui_died or self.process is None:
            return error
        try:
            self.process.check_alive(grace_s=1.0)
        except ComfyUIUnavailable as death:
            return ComfyUIUnavailable(error.message, [*death.details, *error.details],
                                      comfyui_died=True)
        return error

    async def _after_job(self, job_id: str, outcome: Outcome) -> Outcome:
        refresh = self.settings.refresh_worker
        error = outcome.error if isinstance(outcome, Failed) else None
        if isinstance(error, ExecutionFailed) and error.fatal_gpu:
            log.error("job %s: the GPU reported a fatal error; asking for a fresh worker", job_id)
            refresh = True
        elif isinstance(error, ExecutionFailed) and error.out_of_memory:
            # ComfyUI keeps what it loaded; give the next job the whole GPU.
            await asyncio.to_thread(self._free_memory, job_id)
        if self._stuck is not None and self.process is None:
            log.error("job %s: ComfyUI would not stop a prompt and is not ours to restart; "
                      "asking for a fresh worker", job_id)
            refresh = True
        deaths = self.process.crashes.count() if self.process is not None else 0
        if deaths >= MAX_CRASHES:
            log.error("job %s: ComfyUI died %d times recently; asking for a fresh worker",
                      job_id, deaths)
            refresh = True
        return replace(outcome, refresh_worker=refresh)

    def _free_memory(self, job_id: str) -> None:
        try:
            self.client.free(unload_models=True, free_memory=True)
            log.warning("job %s: out of GPU memory; asked ComfyUI to unload its models", job_id)
        except ComfyUIUnavailable as exc:
            log.warning("job %s: could not ask ComfyUI to free memory: %s", job_id, exc.message)

    def drain_cleanups(self, timeout_s: float = 30.0) -> None:
        """Wait until every finished job's files are gone."""
        self.pools.drain(timeout_s)

    def close(self) -> None:
        """Release everything the worker owns, ComfyUI's child last."""
        if self.state is WorkerState.CLOSED:
            return
        self.state = WorkerState.CLOSED
        self.pools.close()
        self.events.close()
        self.client.close()
        if self.process is not None:
            self.process.close()


def _warmup_graph(choice: str) -> dict[str, Any] | str:
    """A bundled workflow name, or the graph in a file."""
    path = Path(choice)
    if path.suffix == ".json" and path.exists():
        return json.loads(path.read_text())
    return choice


def _local_folders(settings: Settings, *, launched: bool) -> ComfyFolders | None:
    """ComfyUI's folders, if they are certainly the ones it uses: we launched it from
    COMFYUI_DIR, or they (or COMFYUI_DIR itself) were named explicitly."""
    named = {"comfyui_dir", "comfyui_input_dir", "comfyui_output_dir", "comfyui_temp_dir"}
    if not (launched or named & settings.model_fields_set):
        return None
    return ComfyFolders(settings.input_dir, settings.output_dir, settings.temp_dir)


def _model_cache(settings: Settings) -> ModelCache:
    cache = ModelCache(CacheConfig.from_settings(settings))
    swept = cache.sweep()  # partial files of downloads a crash cut short
    if swept:
        log.info("model cache: removed %d partial downloads", swept)
    return cache


def _object_store(settings: Settings) -> ObjectStore | None:
    if not settings.object_store_configured:
        return None
    from .outputs.store import ObjectStore  # boto3 loads only when a store is configured

    try:
        return ObjectStore.from_settings(settings)
    except UploadFailed as exc:
        # A misconfigured store must not stop inline jobs; jobs that need it say why.
        log.error("object store disabled: %s", exc.message)
        return None
