"""One job, start to end: validate -> inputs -> run -> outputs -> deliver -> clean up.

Every step is another module's; this one orders them, measures them, and makes sure that
whatever happens the job's files are removed and ComfyUI is left idle for the next job.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from .cleanup import JobCleaner
from .client import ComfyClient, HistoryEntry
from .contract import JobInput, JobOutput, parse_job_input
from .conversion import convert_image
from .delivery import deliver
from .errors import JobError
from .event_hub import EventHub
from .folders import ComfyFolders
from .graph_checks import check_graph
from .isolation import isolate, job_folder, public_subfolder
from .media import InputLimits, decode_inputs, upload_inputs
from .outputs import collect_outputs, fetch_outputs, websocket_outputs
from .progress import ProgressReporter, ProgressSink
from .prompt_run import STOP_GRACE_S, PromptRun, RunOutcome
from .settings import Settings
from .workflows import WorkflowRegistry

log = logging.getLogger(__name__)

HealthCheck = Callable[[], None]


@dataclass
class JobContext:
    """What every job shares: the settings and the ComfyUI it talks to."""

    settings: Settings
    client: ComfyClient
    workflows: WorkflowRegistry
    cleaner: JobCleaner | None = None
    folders: ComfyFolders | None = None  # ComfyUI's folders, when they are on this machine
    events: EventHub = field(init=False)

    def __post_init__(self) -> None:
        self.events = EventHub(self.client.ws_url)
    store: Any = None  # ObjectStore | None; typed loosely so boto3 loads only when configured
    health_check: HealthCheck = field(default=lambda: None)
    # Cleanup runs after the result is handed back: it is not the client's time to spend.
    cleanup_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=2, thread_name_prefix="cleanup")
    )
    pending_cleanups: set[Future[None]] = field(default_factory=set)
    run_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=16, thread_name_prefix="prompt")
    )

    def drain_cleanups(self, timeout_s: float = 30.0) -> None:
        """Wait until every finished job's files are gone."""
        wait(list(self.pending_cleanups), timeout=timeout_s)


@dataclass
class _Timer:
    started: float = field(default_factory=time.perf_counter)
    marks: dict[str, float] = field(default_factory=dict)
    _last: float = field(default_factory=time.perf_counter)

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.marks[name] = round((now - self._last) * 1000, 1)
        self._last = now

    def total(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 1)


async def run_job(
    ctx: JobContext, job_id: str, raw_input: Any, *, progress: ProgressSink | None = None
) -> dict[str, Any]:
    """The job's JSON result: the output shape on success, the error shape on failure."""
    try:
        job_input = parse_job_input(raw_input)
        return await _Job(ctx, job_id, job_input, progress).run()
    except JobError as exc:
        log.warning("job %s failed: %s: %s", job_id, exc.code, exc.message)
        return exc.to_output()


class _Job:
    def __init__(
        self, ctx: JobContext, job_id: str, job_input: JobInput, progress: ProgressSink | None
    ) -> None:
        self.ctx = ctx
        self.job_id = job_id
        self.input = job_input
        self.progress = progress
        self.folder = job_folder(job_id)
        self.prompt_id = str(uuid.uuid4())
        self.timer = _Timer()
        self.queued = False
        self.history: HistoryEntry | None = None

    async def run(self) -> dict[str, Any]:
        settings = self.ctx.settings
        timeout_s = self.input.timeout_s or settings.job_timeout_s
        deadline = time.monotonic() + timeout_s
        try:
            graph = await asyncio.to_thread(
                self.ctx.workflows.resolve,
                self.input.workflow,
                self.input.params,
                input_names=[item.name for item in self.input.images],
                models=self.ctx.client.models,
            )
            check_graph(
                graph,
                max_nodes=settings.max_graph_nodes,
                input_names=[item.name for item in self.input.images],
            )
            graph = await asyncio.to_thread(self._prepare_inputs, graph)
            self.timer.mark("inputs")
            outcome = await self._execute(graph, deadline, timeout_s)
            result = await asyncio.to_thread(self._collect, outcome, graph)
            return result
        finally:
            future = self.ctx.cleanup_pool.submit(self._clean)
            self.ctx.pending_cleanups.add(future)
            future.add_done_callback(self.ctx.pending_cleanups.discard)

    # --- steps ------------------------------------------------------------------------------
    def _prepare_inputs(self, graph: dict[str, Any]) -> dict[str, Any]:
        if not self.input.images:
            return isolate(graph, self.folder, {})
        settings = self.ctx.settings
        limits = InputLimits(
            max_bytes=settings.max_input_bytes,
            max_pixels=settings.max_pixels,
            max_inputs=settings.max_inputs,
            fetch_timeout_s=settings.input_fetch_timeout_s,
            allow_private_urls=settings.allow_private_urls,
            extra_suffixes=settings.extra_input_suffixes,
        )
        prepared = decode_inputs(self.input.images, limits)
        uploaded = upload_inputs(
            self.ctx.client, prepared, folder=self.folder, folders=self.ctx.folders
        )
        return isolate(graph, self.folder, uploaded)

    async def _execute(self, graph: dict[str, Any], deadline: float, timeout_s: float) -> RunOutcome:
        on_event = None
        if self.progress is not None:
            on_event = ProgressReporter(graph, self.progress)
        run = PromptRun(
            self.ctx.client,
            graph,
            events=self.ctx.events,
            prompt_id=self.prompt_id,
            extra_data=self._extra_data(),
            on_event=on_event,
            health_check=self.ctx.health_check,
        )
        self.queued = True
        # Its own pool: a run holds its thread for the whole ComfyUI run, which must not
        # starve the short steps of other jobs in asyncio's shared pool.
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(
            loop.run_in_executor(self.ctx.run_pool, run.run, deadline, timeout_s)
        )
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            log.info("job %s cancelled; stopping its prompt", self.job_id)
            run.cancel()
            await asyncio.wait([task], timeout=STOP_GRACE_S + 5)
            if task.done() and not task.cancelled():
                task.exception()  # the JobCancelled we caused: collected, nothing to report
            raise

    def _extra_data(self) -> dict[str, Any] | None:
        key = self.input.comfy_org_api_key or self.ctx.settings.comfy_org_api_key
        return {"api_key_comfy_org": key.get_secret_value()} if key else None

    def _collect(self, outcome: RunOutcome, graph: dict[str, Any]) -> dict[str, Any]:
        self.timer.mark("run")
        self.history = outcome.history
        options = self.input.output
        refs, texts = collect_outputs(outcome.history, include_previews=options.include_previews)
        files = fetch_outputs(self.ctx.client, refs, self.ctx.folders)
        files += websocket_outputs(outcome.ws_images, graph)
        if options.format:
            files = [convert_image(f, options.format, options.quality) for f in files]
        output = JobOutput(prompt_id=outcome.prompt_id, text=texts)
        if not files and not texts:
            output.errors.append(
                "the workflow ran but produced no outputs (is there a SaveImage or other "
                "output node?)"
            )
        text_bytes = len(json.dumps([t.model_dump() for t in texts]))
        delivered = deliver(
            files,
            delivery=options.delivery,
            job_id=self.job_id,
            store=self.ctx.store,
            max_response_bytes=self.ctx.settings.max_response_bytes,
            other_bytes=text_bytes,
        )
        for file, item in zip(files, delivered):
            item.subfolder = public_subfolder(item.subfolder, self.folder)
            getattr(output, file.ref.kind).append(item)
        self.timer.mark("outputs")
        output.timings_ms = {
            "inputs": self.timer.marks.get("inputs", 0.0),
            "queued": outcome.queued_ms,
            "execution": outcome.execution_ms,
            "run": self.timer.marks["run"],
            "outputs": self.timer.marks["outputs"],
            "total": self.timer.total(),
            "nodes": outcome.node_ms,
        }
        return output.to_json()

    def _clean(self) -> None:
        if self.ctx.cleaner is None:
            return
        try:
            self.ctx.cleaner.clean(
                job_id=self.job_id,
                folder=self.folder,
                prompt_id=self.prompt_id if self.queued else None,
                history=self.history,
            )
        except Exception:  # cleanup must never turn a result into a failure
            log.exception("job %s: cleanup failed", self.job_id)

