"""Where blocking work runs: the worker's thread pools, owned in one place.

Jobs are asyncio tasks, but most of their work blocks (HTTP to ComfyUI, file I/O, Pillow,
boto3). Three kinds of it get pools of their own so that none starves another:

* `runs`: a prompt run holds its thread for the whole ComfyUI run;
* `steps`: a job's other blocking steps (inputs, outputs), whose futures the job keeps so its
  cleanup can wait until nothing of it still writes;
* `io`: the fan-out of one step over many files (fetch, decode, upload, deliver);
* `cleanup`: removing a job's files after its result is handed back, off the client's time.

`fan_out` is the one way to do a step for several items: one item runs inline (a pool
hand-off costs more than it saves), more are spread over the io pool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

FanOut = Callable[[Callable[[T], R], Sequence[T]], list[R]]


def serial(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """`fan_out` without a pool: for callers outside a worker (tools, tests)."""
    return [fn(item) for item in items]


class Pools:
    def __init__(self, *, runs: int = 16, io: int = 8, cleanup: int = 2) -> None:
        self.runs = ThreadPoolExecutor(max_workers=runs, thread_name_prefix="prompt")
        self.steps = ThreadPoolExecutor(max_workers=runs, thread_name_prefix="step")
        self._io = ThreadPoolExecutor(max_workers=io, thread_name_prefix="io")
        self._cleanup = ThreadPoolExecutor(max_workers=cleanup, thread_name_prefix="cleanup")
        self._pending: set[Future[None]] = set()

    def fan_out(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        if len(items) <= 1:
            return [fn(item) for item in items]
        return list(self._io.map(fn, items))

    def start(self, fn: Callable[[], R]) -> Future[R]:
        """Run `fn` in the io pool now; its future (for work that overlaps a prompt run)."""
        return self._io.submit(fn)

    def after_job(self, fn: Callable[[], None]) -> None:
        """Run `fn` soon, off the caller's time; `drain` waits for it."""
        future = self._cleanup.submit(fn)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until every scheduled after-job task has run."""
        wait(list(self._pending), timeout=timeout_s)

    def close(self) -> None:
        self.drain()
        self._cleanup.shutdown(wait=True)
        self._io.shutdown(wait=False, cancel_futures=True)
        self.steps.shutdown(wait=False, cancel_futures=True)
        self.runs.shutdown(wait=False, cancel_futures=True)
