"""One job, start to end: validate -> inputs -> run -> outputs -> deliver -> clean up.

Every step is another module's; this one orders them, measures them, and makes sure that
whatever happens the job's files are removed and ComfyUI is left idle for the next job.

The job's `timeout_s` is the job's, end to end: input downloads are bounded by what is left
of it, and each phase starts only while time is left, so a `timeout` names the phase that ran
out of it. Cleanup runs after the last step that can write: a cancelled job's blocking steps
run on in their threads, and a prompt ComfyUI would not stop runs on in ComfyUI, so cleanup
waits for both before it removes anything.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from .blocking import Pools
from .comfyui.client import ComfyClient
from .comfyui.event_hub import EventHub
from .comfyui.events import Event
from .comfyui.node_definitions import DefinitionsCache
from .comfyui.prompt_run import HealthCheck, PromptRun, wait_until_ended
from .comfyui.run_record import FinishedRun
from .comfyui.wire import UploadedFile
from .contract import ConvertedWorkflow, JobInput, JobOutput, parse_job_input
from .errors import ComfyUIUnavailable, JobError, JobTimeout, MissingModel
from .graph_checks import check_graph
from .inputs.decode import InputLimits, decode_inputs, decode_payload, upload_inputs
from .job_files import CONCAT_CLASS, ComfyFolders, FileRef, JobCleaner, isolate, job_folder
from .models.cache import ModelCache
from .models.job_step import (
    JobModels,
    count_models,
    ensure_models,
    explain_missing,
    url_inputs_as_names,
)
from .outputs.collect import collect_outputs
from .outputs.delivery import no_store_error
from .outputs.job_step import JobOutputs, OutputPlace
from .outputs.live import OutputSink
from .progress import ProgressReporter, ProgressSink, previews_off_reason
from .settings import Settings
from .workflow_source import resolve_workflow
from .workflows import WorkflowRegistry

if TYPE_CHECKING:
    from .outputs.store import ObjectStore

log = logging.getLogger(__name__)

T = TypeVar("T")
# After the deadline, how long cleanup still waits for a step that may write.
_WRITER_GRACE_S = 30.0


@dataclass(frozen=True)
class JobContext:
    """What every job uses; the worker owns all of it (and closes it), a job only borrows."""

    settings: Settings
    client: ComfyClient
    events: EventHub
    pools: Pools
    workflows: WorkflowRegistry
    definitions: DefinitionsCache
    models: ModelCache
    cleaner: JobCleaner
    folders: ComfyFolders | None  # ComfyUI's folders, when they are on this machine
    store: ObjectStore | None
    health_check: HealthCheck
    on_stuck: Callable[[str], None]  # told the id of a prompt that would not stop


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
    ctx: JobContext, job_id: str, raw_input: Any, *, progress: ProgressSink | None = None,
    outputs: OutputSink | None = None,
) -> JobOutput | ConvertedWorkflow:
    """The job's output (or, with `convert_only`, its API graph); a failure is raised as the
    `JobError` that says why. `outputs`, when given, is told each output as soon as it is
    delivered, while the run goes on (a streamed job)."""
    job_input = parse_job_input(raw_input)
    job = _Job(ctx, job_id, job_input, progress, outputs)
    if job_input.convert_only:
        return ConvertedWorkflow(api_workflow=await job.step("converting its workflow",
                                                             job.converted), errors=job.warnings)
    return await job.run()


class _Job:
    def __init__(
        self, ctx: JobContext, job_id: str, job_input: JobInput, progress: ProgressSink | None,
        sink: OutputSink | None = None,
    ) -> None:
        self.ctx = ctx
        self.job_id = job_id
        self.input = job_input
        self.progress = progress
        self.folder = job_folder(job_id)
        self.prompt_id = str(uuid.uuid4())
        self.timer = _Timer()
        self.timeout_s = job_input.timeout_s or ctx.settings.job_timeout_s
        self.deadline = time.monotonic() + self.timeout_s
        self.queued = False
        self.stuck = False
        self.finished: FinishedRun | None = None
        place = OutputPlace(ctx.client, ctx.pools, ctx.folders, ctx.store,
                            ctx.settings.max_response_bytes)
        self.outputs = JobOutputs(place, job_input.output, job_id=job_id, folder=self.folder,
                                  sink=sink)
        self.models = JobModels()
        self.warnings: list[str] = []  # non-fatal notes for the output's `errors`
        self._writers: list[Future[Any]] = []
        self._cancel = threading.Event()  # tells blocking steps (downloads) to give up
        self._lease = ctx.models.lease()  # the job's models, kept from eviction until cleanup

    async def run(self) -> JobOutput:
        try:
            graph = await self.step("preparing its inputs and models", self._prepare)
            self.timer.mark("inputs")
            return await self._execute(graph)
        finally:
            self.ctx.pools.after_job(self._clean)

    async def step(self, phase: str, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking step in the steps pool, within the job's time."""
        self._check_time(phase)
        future = self.ctx.pools.steps.submit(fn, *args)
        self._writers.append(future)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            self._cancel.set()
            raise
        except JobError as exc:
            if time.monotonic() >= self.deadline and not isinstance(exc, JobTimeout):
                raise self._timeout(phase) from exc  # e.g. a download cut short by the deadline
            raise

    def _check_time(self, phase: str) -> None:
        if time.monotonic() >= self.deadline:
            raise self._timeout(phase)

    def _timeout(self, phase: str) -> JobTimeout:
        return JobTimeout(
            f"the job ran past its time limit of {self.timeout_s:g} s while {phase}; raise "
            "timeout_s or JOB_TIMEOUT_S if it needs longer",
            {"timeout_s": self.timeout_s, "phase": phase},
        )

    # --- steps ------------------------------------------------------------------------------
    def _api_graph(self) -> dict[str, Any]:
        return resolve_workflow(
            self.input,
            registry=self.ctx.workflows,
            definitions=self.ctx.definitions,
            read_file=lambda value: decode_payload(value, "workflow", self._workflow_file_limits()),
            max_nodes=self.ctx.settings.max_graph_nodes,
            max_file_bytes=self.ctx.settings.max_workflow_file_bytes,
            models=self.ctx.client.models, warnings=self.warnings,
        )

    def _check(self, graph: dict[str, Any]) -> None:
        names = [item.name for item in self.input.images]
        check_graph(graph, max_nodes=self.ctx.settings.max_graph_nodes, input_names=names)

    def converted(self) -> dict[str, Any]:
        """`convert_only`: the API graph, checked as if it were to run, nothing downloaded."""
        graph = self._api_graph()
        self._check(url_inputs_as_names(graph))
        return graph

    def _prepare(self) -> dict[str, Any]:
        graph = self._api_graph()
        if self.input.output.delivery == "s3" and self.ctx.store is None:
            raise no_store_error()
        # Everything that can be checked is, before a model is fetched: a job that will be
        # refused must not cost downloads (issue 22).
        count_models(graph, self.input.models, self.ctx.settings.max_models_per_job)
        self._check(url_inputs_as_names(graph))
        prepared = (decode_inputs(self.input.images, self._limits(), self.ctx.pools.fan_out)
                    if self.input.images else [])
        graph, self.models = ensure_models(
            graph, self.input.models, self._lease, deadline=self.deadline, cancel=self._cancel,
            progress=self.progress,
        )
        uploaded: dict[str, UploadedFile] = {}
        if prepared:
            uploaded = upload_inputs(
                self.ctx.client, prepared, folder=self.folder, folders=self.ctx.folders,
                fan_out=self.ctx.pools.fan_out,
            )
        return self._isolate(graph, uploaded)

    def _workflow_file_limits(self) -> InputLimits:
        # A workflow file has its own bound, far below an input's: it is parsed, not stored.
        return replace(self._limits(), max_bytes=self.ctx.settings.max_workflow_file_bytes)

    def _limits(self) -> InputLimits:
        settings = self.ctx.settings
        left = max(0.001, self.deadline - time.monotonic())
        return InputLimits(
            max_bytes=settings.max_input_bytes,
            max_pixels=settings.max_pixels,
            max_inputs=settings.max_inputs,
            fetch_timeout_s=min(settings.input_fetch_timeout_s, left),
            allow_private_urls=settings.allow_private_urls,
            extra_suffixes=settings.extra_input_suffixes,
            cancel=self._cancel,
        )

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

    def _run_and_collect(self, run: PromptRun, graph: dict[str, Any]) -> JobOutput:
        try:
            finished = run.run(self.deadline, self.timeout_s)
        except MissingModel as exc:
            raise explain_missing(exc, self.models.used, self.ctx.models.root) from exc
        phase = "delivering its outputs"
        self._check_time(phase)
        try:
            return self._collect(finished, graph)
        except JobError as exc:
            if time.monotonic() >= self.deadline and not isinstance(exc, JobTimeout):
                raise self._timeout(phase) from exc
            raise

    def _listeners(self, graph: dict[str, Any], previews_off: str | None
                   ) -> Callable[[Event], None]:
        """What hears the run's events: progress updates, and the outputs as they come."""
        listeners: list[Callable[[Event], None]] = []
        if self.progress:
            listeners.append(ProgressReporter(graph, self.progress, previews=self.input.previews,
                                              previews_off=previews_off))
        if self.outputs.listener is not None:
            listeners.append(self.outputs.listener)

        def hear(event: Event) -> None:
            for listener in listeners:
                listener(event)

        return hear

    async def _execute(self, graph: dict[str, Any]) -> JobOutput:
        self._check_time("waiting for ComfyUI")
        previews_off = None
        if self.input.previews and self.progress:  # does this ComfyUI draw any? (argv says)
            previews_off = await self.step("asking ComfyUI about previews", lambda: (
                previews_off_reason(self.ctx.client.system_stats())))
        run = PromptRun(
            self.ctx.client,
            graph,
            events=self.ctx.events,
            prompt_id=self.prompt_id,
            extra_data=self._extra_data(),
            on_event=self._listeners(graph, previews_off),
            health_check=self.ctx.health_check,
            stop_grace_s=self.ctx.settings.stop_grace_s,
        )
        self.queued = True
        # Its own pool: a run holds its thread for the whole ComfyUI run, which must not
        # starve the short steps of other jobs.
        # The outputs are collected by the same thread as soon as the run ends: one hand-off
        # back to the event loop per job instead of two (issue 14).
        future = self.ctx.pools.runs.submit(self._run_and_collect, run, graph)
        self._writers.append(future)  # cleanup waits for a delivery still under way
        running = asyncio.wrap_future(future)
        try:
            return await asyncio.shield(running)
        except asyncio.CancelledError:
            log.info("job %s cancelled; stopping its prompt", self.job_id)
            run.cancel()
            await asyncio.wait([running], timeout=run.stop_grace_s + 5)  # its stop is bounded
            if running.done() and not running.cancelled():
                running.exception()  # the JobCancelled we caused: collected, nothing to report
            raise
        finally:
            if run.stuck:
                self.stuck = True
                self.ctx.on_stuck(self.prompt_id)

    def _extra_data(self) -> dict[str, Any]:
        # A ComfyUI that reads a prompt's preview method (0.33.0 does; 0.3.64 ignores the key)
        # draws no preview at any step of a job that asked for none, whatever PREVIEW_METHOD.
        extra: dict[str, Any] = {} if self.input.previews else {"preview_method": "none"}
        key = self.input.comfy_org_api_key or self.ctx.settings.comfy_org_api_key
        if key:
            extra["api_key_comfy_org"] = key.get_secret_value()
        return extra

    def _collect(self, finished: FinishedRun, graph: dict[str, Any]) -> JobOutput:
        self.timer.mark("run")
        self.finished = finished
        output = JobOutput(prompt_id=finished.prompt_id, models=self.models.used,
                           errors=list(self.warnings))
        self.outputs.collect(finished, graph, output,
                             lambda: self._check_time("delivering its outputs"))
        self.timer.mark("outputs")
        output.timings_ms = self._timings(finished)
        return output

    def _timings(self, finished: FinishedRun) -> dict[str, Any]:
        marks = self.timer.marks
        return {"inputs": marks.get("inputs", 0.0), "models": self.models.ms,
                "queued": finished.queued_ms, "execution": finished.execution_ms,
                "run": marks["run"], "outputs": marks["outputs"], "total": self.timer.total(),
                "nodes": finished.node_ms}

    # --- cleanup ----------------------------------------------------------------------------
    def _clean(self) -> None:
        try:
            self._wait_for_writers()
            self.ctx.cleaner.clean(
                job_id=self.job_id,
                folder=self.folder,
                prompt_id=self.prompt_id if self.queued else None,
                written=self._written_files(),
            )
        except Exception:  # cleanup must never turn a result into a failure
            log.exception("job %s: cleanup failed", self.job_id)
        finally:
            self._lease.release()  # ComfyUI is done with the job's models

    def _wait_for_writers(self) -> None:
        grace = max(0.0, self.deadline - time.monotonic()) + _WRITER_GRACE_S
        wait(self._writers + self.outputs.pending, timeout=grace)
        if self.stuck and not wait_until_ended(self.ctx.client, self.prompt_id, grace):
            log.warning("job %s: prompt %s still runs; its files are removed anyway",
                        self.job_id, self.prompt_id)

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
