"""What one run did: followed live from its events, and described once it has finished.

`RunRecord` is fed every event of its prompt. It can say how far a run got (for a timeout's
message) and how long each node took (`timings_ms.nodes`). `FinishedRun` is the one
description of a run that has ended, whichever way we learned it: from the events when none
was missed, or from ComfyUI's history entry (decoded with the same event types) when some were.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .events import (
    Cached,
    Event,
    ExecutionError,
    ExecutionStarted,
    ExecutionSucceeded,
    Interrupted,
    NodeExecuted,
    NodeStarted,
    PreviewFrame,
    Progress,
    RunEnded,
    decode,
)
from .wire import HistoryEntry


@dataclass
class FinishedRun:
    """A run that has ended: its outputs and how it ended."""

    prompt_id: str
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    succeeded: bool = False
    error: ExecutionError | None = None
    interrupted: Interrupted | None = None
    execution_ms: float = 0.0
    node_ms: dict[str, float] = field(default_factory=dict)
    frames: list[tuple[str, PreviewFrame]] = field(default_factory=list)
    queued_ms: float = 0.0

    @classmethod
    def from_history(cls, prompt_id: str, entry: HistoryEntry) -> FinishedRun:
        events = [decode(kind, data) for kind, data in entry.status.messages]
        run = cls(prompt_id=prompt_id, outputs=entry.outputs)
        run._take_status(events)
        # ComfyUI marks a failed run "error"; anything else without an error message passed.
        clean = run.error is None and run.interrupted is None
        run.succeeded = clean and entry.status.status_str != "error"
        return run

    def _take_status(self, events: list[Event]) -> None:
        started = ended = None
        for event in events:
            if isinstance(event, ExecutionStarted):
                started = event.timestamp
            elif isinstance(event, ExecutionSucceeded):
                self.succeeded, ended = True, event.timestamp
            elif isinstance(event, ExecutionError):
                self.error, ended = event, event.timestamp
            elif isinstance(event, Interrupted):
                self.interrupted, ended = event, event.timestamp
        if started is not None and ended is not None:
            self.execution_ms = float(ended - started)


@dataclass
class RunRecord:
    """What the events of one run tell, as they arrive."""

    started_at: float | None = None
    current_node: str | None = None
    current_since: float = 0.0
    step: tuple[int, int] | None = None
    node_ms: dict[str, float] = field(default_factory=dict)
    frames: list[tuple[str, PreviewFrame]] = field(default_factory=list)
    ended: bool = False
    missed_events: bool = False
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    status: list[Event] = field(default_factory=list)

    def on_event(self, event: Event) -> None:
        if isinstance(event, PreviewFrame):
            node = event.node_id or self.current_node  # a type 1 frame names no node
            if node is not None:
                self.frames.append((node, event))
        elif isinstance(event, NodeStarted):
            self._close_node(event.received_at)
            self.current_node, self.current_since, self.step = event.node, event.received_at, None
        elif isinstance(event, RunEnded):
            self._close_node(event.received_at)
            self.ended = True
        elif isinstance(event, Progress):
            self.step = (event.value, event.max)
        elif isinstance(event, NodeExecuted):
            self._merge_outputs(event)
        elif isinstance(event, (ExecutionStarted, Cached, ExecutionSucceeded, ExecutionError,
                                Interrupted)):
            self._on_status(event)

    def _on_status(self, event: Event) -> None:
        self.status.append(event)
        if isinstance(event, ExecutionStarted):
            self.started_at = event.received_at
        elif isinstance(event, (ExecutionError, Interrupted)):
            self._close_node(event.received_at)

    def _merge_outputs(self, event: NodeExecuted) -> None:
        merged = self.outputs.setdefault(event.node, {})
        for key, value in event.output.items():
            if isinstance(value, list):
                merged.setdefault(key, []).extend(value)
            else:
                merged[key] = value

    def _close_node(self, now: float) -> None:
        if self.current_node is not None:
            elapsed = (now - self.current_since) * 1000
            self.node_ms[self.current_node] = round(
                self.node_ms.get(self.current_node, 0.0) + elapsed, 1
            )
            self.current_node = None

    def finished(self, prompt_id: str) -> FinishedRun | None:
        """The run as the events tell it, when we saw all of a successful run."""
        started = any(isinstance(e, ExecutionStarted) for e in self.status)
        succeeded = any(isinstance(e, ExecutionSucceeded) for e in self.status)
        if self.missed_events or not started or not succeeded:
            return None
        run = FinishedRun(prompt_id=prompt_id, outputs=self.outputs)
        run._take_status(self.status)
        return run

    def describe(self, graph: dict[str, Any]) -> dict[str, Any]:
        where: dict[str, Any] = {"nodes_done": sorted(self.node_ms)}
        if self.current_node is not None:
            where["node"] = self.current_node
            where["class_type"] = graph.get(self.current_node, {}).get("class_type")
        if self.step:
            where["step"], where["max"] = self.step
        if self.started_at is None:
            where["state"] = "queued"
        return where


def where_text(where: dict[str, Any]) -> str:
    if where.get("state") == "queued":
        return "it had not started: ComfyUI was busy"
    if "node" not in where:
        return f"{len(where['nodes_done'])} nodes done"
    text = f"at node {where['node']} ({where.get('class_type')})"
    if "step" in where:
        text += f", step {where['step']} of {where['max']}"
    return text
