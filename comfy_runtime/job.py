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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .blocking import Pools
from .client import ComfyClient
from .contract import JobInput, JobOutput, parse_job_input
from .delivery import convert_image, deliver
from .errors import ComfyUIUnavailable
from .event_hub import EventHub
from .graph_checks import check_graph
from .inputs import InputLimits, decode_inputs, upload_inputs
from .job_files import (
    CONCAT_CLASS,
    ComfyFolders,
    FileRef,
    JobCleaner,
    isolate,
    job_folder,
    public_subfolder,
)
from .node_definitions import NodeDefinitions
from .outputs import collect_outputs, fetch_outputs, websocket_outputs
from .progress import ProgressReporter, ProgressSink
from .prompt_run import STOP_GRACE_S, HealthCheck, PromptRun
from .run_record import FinishedRun
from .settings import Settings
from .wire import UploadedFile
from .workflows import WorkflowRegistry

if TYPE_CHECKING:
    from .storage import ObjectStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobContext:
    """What every job uses; the worker owns all of it (and closes it), a job only borrows."""

    settings: Settings
    client: ComfyClient
    events: EventHub
    pools: Pools
    workflows: WorkflowRegistry
    definitions: NodeDefinitions
    cleaner: JobCleaner
    folders: ComfyFolders | None  # ComfyUI's folders, when they are on this machine
    store: ObjectStore | None
    health_check: HealthCheck


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
) -> JobOutput:
    """The job's output; a failure is raised as the `JobError` that says why."""
    job_input = parse_job_input(raw_input)
    return await _Job(ctx, job_id, job_input, progress).run()


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
        self.finished: FinishedRun | None = None

    async def run(self) -> JobOutput:
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
            finished = await self._execute(graph, deadline, timeout_s)
            return await asyncio.to_thread(self._collect, finished, graph)
        finally:
            self.ctx.pools.after_job(self._clean)

    # --- steps ------------------------------------------------------------------------------
    def _prepare_inputs(self, graph: dict[str, Any]) -> dict[str, Any]:
        if not self.input.images:
            return self._isolate(graph, {})
        settings = self.ctx.settings
        limits = InputLimits(
            max_bytes=settings.max_input_bytes,
            max_pixels=settings.max_pixels,
            max_inputs=settings.max_inputs,
            fetch_timeout_s=settings.input_fetch_timeout_s,
            allow_private_urls=settings.allow_private_urls,
            extra_suffixes=settings.extra_input_suffixes,
        )
        prepared = decode_inputs(self.input.images, limits, self.ctx.pools.fan_out)
        uploaded = upload_inputs(
            self.ctx.client, prepared, folder=self.folder, folders=self.ctx.folders,
            fan_out=self.ctx.pools.fan_out,
        )
        return self._isolate(graph, uploaded)

    def _isolate(self, graph: dict[str, Any], uploaded: dict[str, UploadedFile]) -> dict[str, Any]:
        classes = {str(node.get("class_type")) for node in graph.values()}
        definitions = self.ctx.definitions.get(classes)
        return isolate(
            graph,
            self.folder,
            uploaded,
            output_nodes=self.ctx.definitions.output_nodes(classes),
            can_concat=CONCAT_CLASS in definitions,
        )

    async def _execute(self, graph: dict[str, Any], deadline: float, timeout_s: float) -> FinishedRun:
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
            loop.run_in_executor(self.ctx.pools.runs, run.run, deadline, timeout_s)
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

    def _collect(self, finished: FinishedRun, graph: dict[str, Any]) -> JobOutput:
        self.timer.mark("run")
        self.finished = finished
        options = self.input.output
        refs, texts = collect_outputs(finished.outputs, include_previews=options.include_previews)
        files = fetch_outputs(self.ctx.client, refs, self.ctx.folders, self.ctx.pools.fan_out)
        files += websocket_outputs(finished.frames, graph)
        if options.format:
            files = [convert_image(f, options.format, options.quality) for f in files]
        output = JobOutput(prompt_id=finished.prompt_id, text=texts)
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
            fan_out=self.ctx.pools.fan_out,
        )
        for file, item in zip(files, delivered):
            item.subfolder = public_subfolder(item.subfolder, self.folder)
            getattr(output, file.ref.kind).append(item)
        self.timer.mark("outputs")
        output.timings_ms = {
            "inputs": self.timer.marks.get("inputs", 0.0),
            "queued": finished.queued_ms,
            "execution": finished.execution_ms,
            "run": self.timer.marks["run"],
            "outputs": self.timer.marks["outputs"],
            "total": self.timer.total(),
            "nodes": finished.node_ms,
        }
        return output

    def _clean(self) -> None:
        try:
            self.ctx.cleaner.clean(
                job_id=self.job_id,
                folder=self.folder,
                prompt_id=self.prompt_id if self.queued else None,
                written=self._written_files(),
            )
        except Exception:  # cleanup must never turn a result into a failure
            log.exception("job %s: cleanup failed", self.job_id)

    def _written_files(self) -> list[FileRef]:
        # The run's record lists every file it wrote, previews and partial outputs of a failed
        # run included, whatever the job chose to return.
        finished = self.finished
        if finished is None and self.queued and self.ctx.folders is not None:
            try:
                entry = self.ctx.client.history(self.prompt_id)
            except ComfyUIUnavailable as exc:
                log.warning("job %s: cleanup could not read the history: %s", self.job_id,
                            exc.message)
                return []
            finished = FinishedRun.from_history(self.prompt_id, entry) if entry else None
        if finished is None:
            return []
        refs, _ = collect_outputs(finished.outputs, include_previews=True)
        return [(ref.folder_type, ref.subfolder, ref.filename) for ref in refs]
