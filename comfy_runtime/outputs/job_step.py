"""A job's outputs: found as the run reports them, converted, delivered, listed in the result.

Two ways, one answer. Without a stream, the files are fetched while the run goes on when they
must come over HTTP (`EarlyDownloads`), and delivered together once it has ended, so `auto`
weighs the whole result at once. A streamed job (an `OutputSink`) delivers each output as its
node finishes (`LiveOutputs`) and tells the stream at once; its answer holds each inline output
twice (the streamed item and the result), so the inline limit counts both, in what the
stream leaves (`stream.py`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..blocking import Pools
from ..comfyui.client import ComfyClient
from ..comfyui.events import Event
from ..comfyui.run_record import FinishedRun
from ..contract import JobOutput, MediaKind, OutputFile, OutputOptions, TextOutput
from ..job_files import ComfyFolders, public_subfolder
from .collect import (
    EarlyDownloads,
    OutputFileData,
    OutputRef,
    collect_outputs,
    fetch_output,
    fetch_outputs,
    websocket_outputs,
)
from .delivery import KeyNames, ResponseBudget, convert_image, deliver, deliver_one
from .live import PROGRESS_SHARE, LiveOutputs, OutputSink

if TYPE_CHECKING:
    from .store import ObjectStore

_NO_OUTPUTS = ("the workflow ran but produced no outputs (is there a SaveImage or other "
               "output node?)")


@dataclass(frozen=True)
class OutputPlace:
    """Where a job's outputs come from and go to: the worker's, borrowed."""

    client: ComfyClient
    pools: Pools
    folders: ComfyFolders | None  # ComfyUI's folders, when they are on this machine
    store: ObjectStore | None
    max_response_bytes: int


class JobOutputs:
    def __init__(self, place: OutputPlace, options: OutputOptions, *, job_id: str,
                 folder: str, sink: OutputSink | None) -> None:
        self._place = place
        self._options = options
        self._job_id = job_id
        self._folder = folder  # the job's own subfolder, hidden from the client
        self._early: EarlyDownloads | None = None
        self._live: LiveOutputs | None = None
        if sink is not None:
            room = place.max_response_bytes - place.max_response_bytes // PROGRESS_SHARE
            self._budget = ResponseBudget(room, copies=2)
            self._names = KeyNames()
            self._live = LiveOutputs(
                fetch=self._fetch, deliver=self._deliver_one, start=place.pools.start,
                sink=sink, on_text=self._charge, include_previews=options.include_previews)
        elif place.folders is None:  # with the folders here, a file is only a path to take
            self._early = EarlyDownloads(place.client, place.pools.start,
                                         include_previews=options.include_previews)

    @property
    def listener(self) -> Callable[[Event], None] | None:
        """What hears the run's events for the outputs' sake, if anything does."""
        if self._live is not None:
            return self._live.on_event
        return self._early.on_event if self._early is not None else None

    @property
    def pending(self) -> list[Future[OutputFile]]:
        """Deliveries under way while the run goes on (cleanup waits for them)."""
        return self._live.pending if self._live is not None else []

    def collect(self, finished: FinishedRun, graph: dict[str, Any], output: JobOutput,
                check_time: Callable[[], None]) -> None:
        """Every output of the finished run, delivered, into `output` in the run's order."""
        refs, texts = collect_outputs(finished.outputs,
                                      include_previews=self._options.include_previews)
        output.text = texts
        sent = websocket_outputs(finished.frames, graph)
        if self._live is not None:
            check_time()
            delivered = self._live.finish(refs, texts, sent)
        else:
            delivered = self._deliver_all(refs, sent, texts, check_time)
        for kind, item in delivered:
            getattr(output, kind).append(item)
        if not delivered and not texts:
            output.errors.append(_NO_OUTPUTS)

    def _deliver_all(self, refs: list[OutputRef], sent: list[OutputFileData],
                     texts: list[TextOutput], check_time: Callable[[], None]
                     ) -> list[tuple[MediaKind, OutputFile]]:
        place = self._place
        if self._early is not None:
            files = self._early.fetch(refs, place.pools.fan_out)
        else:
            files = fetch_outputs(place.client, refs, place.folders, place.pools.fan_out)
        files += sent
        if self._options.format:
            files = [self._converted(f) for f in files]
        check_time()
        delivered = deliver(
            files, delivery=self._options.delivery, job_id=self._job_id, store=place.store,
            max_response_bytes=place.max_response_bytes,
            other_bytes=len(json.dumps([t.model_dump() for t in texts])),
            fan_out=place.pools.fan_out,
        )
        return [(file.ref.kind, self._public(item)) for file, item in zip(files, delivered)]

    # --- one output at a time (streamed jobs) -----------------------------------------------
    def _fetch(self, ref: OutputRef) -> OutputFileData:
        return fetch_output(self._place.client, ref, self._place.folders)

    def _deliver_one(self, file: OutputFileData) -> OutputFile:
        item = deliver_one(self._converted(file), delivery=self._options.delivery,
                           job_id=self._job_id, store=self._place.store, budget=self._budget,
                           names=self._names)
        return self._public(item)

    def _charge(self, text: TextOutput) -> None:
        self._budget.charge(len(json.dumps(text.model_dump())))

    def _converted(self, file: OutputFileData) -> OutputFileData:
        if not self._options.format:
            return file
        return convert_image(file, self._options.format, self._options.quality)

    def _public(self, item: OutputFile) -> OutputFile:
        item.subfolder = public_subfolder(item.subfolder, self._folder)
        return item
