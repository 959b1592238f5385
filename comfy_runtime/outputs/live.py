"""Outputs delivered as their nodes finish, each told to the stream as soon as it is delivered.

A streamed job (STREAM_RESULTS) shows each output while later nodes still run: at a node's
`executed` event its files are fetched, converted and delivered on the io pool, and the
delivered item goes to the sink exactly as the result will list it. When the run ends,
`finish` takes those deliveries, delivers whatever no event announced (and the images
SaveImageWebsocket sent, which no `executed` names), and gives the result's items in the
run's order. Each output is delivered and told once.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import Any

from ..comfyui.events import Event
from ..contract import MediaKind, OutputFile, TextOutput
from .collect import OutputFileData, OutputRef, executed_outputs

OutputSink = Callable[[str, dict[str, Any]], None]
"""Told each delivered output: its key in the result (`images`, ..., `text`) and its item."""

PROGRESS_SHARE = 4
"""A streamed answer keeps every item: progress (previews included) may take 1/PROGRESS_SHARE
of MAX_RESPONSE_BYTES, and the outputs, each there twice, the rest."""


class LiveOutputs:
    """Fed the run's events (from the prompt's thread); `finish` once the run has ended."""

    def __init__(
        self,
        *,
        fetch: Callable[[OutputRef], OutputFileData],
        deliver: Callable[[OutputFileData], OutputFile],
        start: Callable[[Callable[[], OutputFile]], Future[OutputFile]],
        sink: OutputSink,
        on_text: Callable[[TextOutput], None],
        include_previews: bool,
    ) -> None:
        self._fetch = fetch  # downloaded, or found on disk
        self._deliver = deliver  # converted, then inline or to the store
        self._start = start
        self._sink = sink
        self._on_text = on_text
        self._include_previews = include_previews
        self._files: dict[OutputRef, Future[OutputFile]] = {}
        self._texts: Counter[tuple[str, str]] = Counter()  # told, not yet in a result
        self._lock = threading.Lock()  # the sink is told from several threads

    @property
    def pending(self) -> list[Future[OutputFile]]:
        """Deliveries started; cleanup waits for them (they read the job's files)."""
        return list(self._files.values())

    def on_event(self, event: Event) -> None:
        refs, texts = executed_outputs(event, include_previews=self._include_previews)
        for text in texts:
            self._tell_text(text)
        for ref in refs:
            if ref not in self._files:
                self._files[ref] = self._start(partial(self._delivered, ref))

    def finish(
        self, refs: list[OutputRef], texts: list[TextOutput], sent: list[OutputFileData]
    ) -> list[tuple[MediaKind, OutputFile]]:
        """Every file output of the finished run (`refs` in the run's order, then the images
        sent over the websocket), each delivered once; texts no event announced are told."""
        for text in texts:
            key = (text.node_id, text.text)
            with self._lock:
                told = self._texts[key] > 0
                self._texts[key] -= told
            if not told:
                self._tell_text(text, counted=False)
        delivered = [(ref.kind, self._files[ref].result() if ref in self._files
                      else self._delivered(ref)) for ref in refs]
        for file in sent:
            delivered.append((file.ref.kind, self._told(file.ref.kind, self._deliver(file))))
        return delivered

    def _delivered(self, ref: OutputRef) -> OutputFile:
        return self._told(ref.kind, self._deliver(self._fetch(ref)))

    def _told(self, kind: MediaKind, item: OutputFile) -> OutputFile:
        with self._lock:
            self._sink(kind, item.model_dump(mode="json"))
        return item

    def _tell_text(self, text: TextOutput, *, counted: bool = True) -> None:
        with self._lock:
            if counted:
                self._texts[(text.node_id, text.text)] += 1
            self._on_text(text)
            self._sink("text", text.model_dump(mode="json"))
