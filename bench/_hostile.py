"""No figure of its own: what a hostile shape is, and how one is run and measured alone.

A `Shape` is one job input built to cost the worker as much as it can, with what the job needs
around it (a loopback server for a URL, settings). `hostile_cost.py` collects every module's
`SHAPES` (`_hostile_workflows.py`, and `_hostile_network.py` when it exists) and runs each
`measure(shape)` in a fresh child process, so that the peak memory it reports is that job's.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _double import rss_bytes

# The smallest editor workflow: fetches the node definitions, so the measured job does not.
WARMUP_JOB = {"workflow": {"nodes": [{"id": 1, "type": "EmptyImage", "mode": 0,
                                      "widgets_values": [8, 8, 1, 0]}], "links": []},
              "convert_only": True}


@dataclass(frozen=True)
class Shape:
    """One hostile job: `job()` builds its input, where "{base}" in it becomes the base URL
    that `context()` yields (a loopback server, say); `settings` are set in its process's
    environment before the worker reads them."""

    what: str
    job: Callable[[], dict[str, Any]]
    context: Callable[[], AbstractContextManager[str]] = lambda: nullcontext("")
    settings: dict[str, str] = field(default_factory=dict)


def serving(body: bytes, content_type: str = "application/octet-stream",
            ) -> Callable[[], AbstractContextManager[str]]:
    """A `Shape.context` that serves `body` at every path of a loopback server."""
    from tests.slow_server import slow_server

    return lambda: slow_server(body, delay_s=0, content_type=content_type)


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _settle() -> int:
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    return rss_bytes()


@contextmanager
def _worker() -> Iterator[Any]:
    from comfy_runtime.settings import Settings
    from comfy_runtime.worker import Worker

    worker = Worker(Settings())
    try:
        yield worker
    finally:
        worker.close()


def measure(shape: Shape) -> dict[str, Any]:
    """Run `shape` as a job through the worker (`Worker.handle`, as the SDK calls it) against
    the ComfyUI double; its answer, wall time and peak memory."""
    from handler import respond

    with shape.context() as base, _worker() as worker:
        job_input = json.loads(json.dumps(shape.job()).replace("{base}", base))
        warm = respond(asyncio.run(worker.handle({"id": "warm", "input": WARMUP_JOB})))
        assert "api_workflow" in warm, warm
        before = _settle()
        started = time.perf_counter()
        answer = respond(asyncio.run(worker.handle({"id": "hostile", "input": job_input})))
        seconds = time.perf_counter() - started
        peak = _peak_rss()
    code = answer.get("error_code") or ("converted" if "api_workflow" in answer else "ok")
    return {"code": code, "seconds": seconds, "peak_rss": peak, "growth": peak - before,
            "error": str(answer.get("error", ""))[:160]}


def measure_call(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A shape that sends its own job to a worker of its module's (`_hostile_network.py`):
    the module's `start()` readies that worker first, so the figures are the job's alone."""
    import sys

    getattr(sys.modules[run.__module__], "start", lambda: None)()
    before = _settle()
    started = time.perf_counter()
    answer = run()
    seconds = time.perf_counter() - started
    peak = _peak_rss()
    code = answer.get("error_code") or ("converted" if "api_workflow" in answer else "ok")
    return {"code": code, "seconds": seconds, "peak_rss": peak, "growth": peak - before,
            "error": str(answer.get("error", ""))[:160]}
