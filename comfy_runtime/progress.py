"""Turn ComfyUI's events into small progress reports, a few per second at most.

A report is `{"status", "node", "class_type", "step", "max", "percent"}`; `percent` is of the
whole graph: nodes done plus the running node's share, over the nodes that will run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .events import ComfyEvent

ProgressSink = Callable[[dict[str, Any]], None]


class ProgressReporter:
    def __init__(self, graph: dict[str, Any], sink: ProgressSink, *, min_interval_s: float = 0.25):
        self._graph = graph
        self._sink = sink
        self._min_interval_s = min_interval_s
        self._last_sent = 0.0
        self._to_run = len(graph)
        self._done: set[str] = set()
        self._node: str | None = None
        self._step: tuple[int, int] | None = None

    def __call__(self, event: ComfyEvent) -> None:
        force = False
        if event.type == "execution_cached":
            cached = [str(n) for n in event.data.get("nodes", [])]
            self._to_run = max(1, len(self._graph) - len(cached))
        elif event.type == "executing":
            if self._node is not None:
                self._done.add(self._node)
            self._node, self._step = event.node, None
            force = event.node is None
        elif event.type == "progress":
            self._step = (int(event.data.get("value", 0)), int(event.data.get("max", 0) or 0))
            force = self._step[0] == self._step[1]
        else:
            return
        now = time.monotonic()
        if force or now - self._last_sent >= self._min_interval_s:
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
