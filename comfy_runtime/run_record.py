"""What the events of one run tell: where it is, per-node times, and its outputs.

`PromptRun` feeds it every event of its prompt. It can then say how far a run got (for a
timeout's message), how long each node took (`timings_ms.nodes`), and, when no event was
missed, give the run's history entry without asking ComfyUI for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .client import HistoryEntry, HistoryStatus
from .events import BinaryFrame, ComfyEvent


@dataclass
class RunRecord:
    """What we learn from the events, kept to report how far a run got."""

    started_at: float | None = None
    current_node: str | None = None
    current_since: float = 0.0
    step: tuple[int, int] | None = None
    node_ms: dict[str, float] = field(default_factory=dict)
    ws_images: list[tuple[str, BinaryFrame]] = field(default_factory=list)
    ended: bool = False
    # The run's record as the events told it; complete unless an event was missed.
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    missed_events: bool = False

    def on_event(self, event: ComfyEvent) -> None:
        if event.type in ("execution_start", "execution_cached", "execution_success",
                          "execution_error", "execution_interrupted"):
            self.messages.append((event.type, event.data))
        if event.type == "executed" and isinstance(event.data.get("output"), dict):
            merged = self.outputs.setdefault(str(event.node), {})
            for key, value in event.data["output"].items():
                if isinstance(value, list):
                    merged.setdefault(key, []).extend(value)
                else:
                    merged[key] = value
        if event.type == "execution_start":
            self.started_at = event.received_at
        elif event.type == "executing":
            self._close_node(event.received_at)
            self.current_node = event.node
            self.current_since = event.received_at
            self.step = None
            if event.node is None:
                self.ended = True
        elif event.type == "progress":
            self.step = (int(event.data.get("value", 0)), int(event.data.get("max", 0)))
        elif event.type in ("execution_error", "execution_interrupted"):
            self._close_node(event.received_at)

    def _close_node(self, now: float) -> None:
        if self.current_node is not None:
            elapsed = (now - self.current_since) * 1000
            self.node_ms[self.current_node] = round(
                self.node_ms.get(self.current_node, 0.0) + elapsed, 1
            )
            self.current_node = None

    def as_history(self) -> HistoryEntry | None:
        """The history entry the events add up to, when we saw all of a successful run."""
        kinds = [kind for kind, _ in self.messages]
        if self.missed_events or "execution_start" not in kinds or "execution_success" not in kinds:
            return None
        status = HistoryStatus(status_str="success", completed=True, messages=self.messages)
        return HistoryEntry(outputs=self.outputs, status=status)

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
