"""A job as a stream of flat items, for the SDK's generator handler (STREAM_RESULTS).

`{"type": "progress", ...}` as the job moves, `{"type": "output", "<key>": [item]}` as soon as
each output is delivered (while later nodes still run), and last `{"type": "result", ...}`,
the whole answer. The platform keeps every item as the job's answer (`return_aggregate_stream`),
so the items together must stay under MAX_RESPONSE_BYTES: progress may take a share of it
(`PROGRESS_SHARE`); past that, previews are left out and then progress items, and the outputs
count twice in the rest (`job_step.py`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from ..progress import ProgressSink
from .live import PROGRESS_SHARE, OutputSink

Answer = Callable[[ProgressSink, OutputSink], Awaitable[dict[str, Any]]]
"""Runs the job, telling the two sinks as it goes (from its threads); its JSON answer."""


class ProgressRoom:
    """Progress items within their share of the answer: the previews go first."""

    def __init__(self, max_response_bytes: int) -> None:
        self._left = max_response_bytes // PROGRESS_SHARE
        self._previews_dropped = False

    def fit(self, report: dict[str, Any]) -> dict[str, Any] | None:
        """`report` as it may be streamed (without its preview when that would not fit), or
        None when not even the report fits."""
        item = {"type": "progress", **report}
        size = len(json.dumps(item))
        if size > self._left and "preview" in item:
            del item["preview"]
            self._previews_dropped = True
            size = len(json.dumps(item))
        if self._previews_dropped and item.get("preview") is None:
            item["previews_off"] = ("the stream's progress reached its share of "
                                    "MAX_RESPONSE_BYTES; no more previews")
            size = len(json.dumps(item))
        if size > self._left:
            return None
        self._left -= size
        return item


async def job_stream(answer: Answer, *, max_response_bytes: int,
                     status: ProgressSink | None = None) -> AsyncIterator[dict[str, Any]]:
    """The job's items, in the order they happened; the `result` last, after every other.
    Each progress report also goes to `status` (the platform's job status), as unstreamed."""
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    room = ProgressRoom(max_response_bytes)

    def progress(report: dict[str, Any]) -> None:  # called on the job's threads
        loop.call_soon_threadsafe(_put_progress, report)
        if status is not None:
            status(report)

    def _put_progress(report: dict[str, Any]) -> None:  # on the loop: `room` has one user
        item = room.fit(report)
        if item is not None:
            items.put_nowait(item)

    def output(key: str, item: dict[str, Any]) -> None:  # called on the job's threads
        loop.call_soon_threadsafe(items.put_nowait, {"type": "output", key: [item]})

    running = asyncio.ensure_future(answer(progress, output))
    # Queued after everything the job told: their call_soon_threadsafe came first.
    running.add_done_callback(lambda _: loop.call_soon(items.put_nowait, None))
    try:
        while (item := await items.get()) is not None:
            yield item
        body = running.result()
    finally:
        running.cancel()  # the stream was abandoned or cancelled; a no-op once answered
    yield {"type": "result", **body}
