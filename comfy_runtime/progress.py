"""Turn ComfyUI's events into small progress reports, a few per second at most.

A report is `{"status", "node", "class_type", "step", "max", "percent"}`; `percent` is of the
whole graph: nodes done plus the running node's share, over the nodes that will run.

Each report costs the platform's SDK a thread and an HTTP request, so events are coalesced:
at most one report per `min_interval_s` (4 a second by default), whatever ComfyUI sends, plus
one with the final state when the run ends (so a client sees 100%).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .comfyui.events import Cached, Event, NodeStarted, Progress, RunEnded

ProgressSink = Callable[[dict[str, Any]], None]


class ProgressReporter:
    def __init__(self, graph: dict[str, Any], sink: ProgressSink, *, min_interval_s: float = 0.25):
        self._graph = graph
        self._sink = sink
        self._min_interval_s = min_interval_s
        self._last_sent: float | None = None
        self._to_run = len(graph)
        self._done: set[str] = set()
        self._node: str | None = None
        self._step: tuple[int, int] | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, Cached):
            self._to_run = max(1, len(self._graph) - len(event.nodes))
        elif isinstance(event, (NodeStarted, RunEnded)):
            if self._node is not None:
                self._done.add(self._node)
            self._node = event.node if isinstance(event, NodeStarted) else None
            self._step = None
        elif isinstance(event, Progress):
            self._step = (event.value, event.max)
        else:
            return
        now = time.monotonic()
        due = self._last_sent is None or now - self._last_sent >= self._min_interval_s
        if due or isinstance(event, RunEnded):
            self._last_sent = now
            self._sink(self.snapshot())

    def snapshot(self) -> dict[str, Any]:
        share = 0.0
        if self._step and self._step[1]:
            share = self._step[0] / self._step[1]
        done = len(self._done) + share
        report: dict[str, Any] = {
            "status": "finishing" if self._node is None and self._done else "running",
            "node": self._node,
            "class_type": self._graph.get(self._node, {}).get("class_type") if self._node else None,
            "percent": round(min(100.0, 100.0 * done / self._to_run), 1),
        }
        if self._step:
            report["step"], report["max"] = self._step
        return report
