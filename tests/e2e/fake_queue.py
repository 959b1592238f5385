"""A fake RunPod job queue on loopback: the endpoints the SDK's production loop calls.

The SDK reads these URLs from the environment (see `FakeQueue.env`):

    GET  RUNPOD_WEBHOOK_GET_JOB     .../job-take/$ID?gpu=...&job_in_progress=0|1
                                    -> a job {"id", "input"}, or 204 when there is none
    GET  (derived) .../job-stop/$ID?... long-poll -> {"jobsToStop": [ids]}, or 204
    POST RUNPOD_WEBHOOK_POST_OUTPUT .../job-done/$RUNPOD_POD_ID/$ID?...&isStream=false
                                    results, and {"status": "IN_PROGRESS"} progress updates
    POST RUNPOD_WEBHOOK_POST_STREAM .../job-stream/$RUNPOD_POD_ID/$ID?...
    GET  RUNPOD_WEBHOOK_PING        .../ping/$RUNPOD_POD_ID?job_id=...&runpod_version=...

The SDK posts JSON with a form content type, so bodies are parsed from the raw text.
Both long-polls are held only briefly: the SDK re-polls job-take at once after a 204, and a
worker told to stop finishes its current poll before it exits.
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

POD_ID = "pod-e2e"
API_KEY = "e2e-not-a-secret"
_POLL_HOLD_S = 0.5


@dataclass(frozen=True)
class Post:
    """One POST the worker made to job-done or job-stream."""

    route: str  # "job-done" | "job-stream"
    job_id: str
    body: dict[str, Any]
    at: float

    @property
    def is_progress(self) -> bool:
        return self.body.get("status") == "IN_PROGRESS"


class FakeQueue:
    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.pings: list[dict[str, str]] = []
        self.takes: list[dict[str, str]] = []
        self.auth_headers: set[str] = set()
        self._jobs: collections.deque[dict[str, Any]] = collections.deque()
        self._stops: collections.deque[str] = collections.deque()
        self._changed = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # --- what tests do ------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        base = f"{self.url}/v2/e2e-endpoint"
        return {
            "RUNPOD_WEBHOOK_GET_JOB": f"{base}/job-take/$ID?gpu=e2e",
            "RUNPOD_WEBHOOK_POST_OUTPUT": f"{base}/job-done/$RUNPOD_POD_ID/$ID?gpu=e2e",
            "RUNPOD_WEBHOOK_POST_STREAM": f"{base}/job-stream/$RUNPOD_POD_ID/$ID?gpu=e2e",
            "RUNPOD_WEBHOOK_PING": f"{base}/ping/$RUNPOD_POD_ID?gpu=e2e",
            "RUNPOD_AI_API_KEY": API_KEY,
            "RUNPOD_POD_ID": POD_ID,
        }

    def push(self, job_id: str, job_input: dict[str, Any]) -> None:
        self._jobs.append({"id": job_id, "input": job_input})

    def stop(self, job_id: str) -> None:
        """Ask the worker to stop a job, as the platform does on cancel or timeout."""
        self._stops.append(job_id)

    def posts_for(self, job_id: str) -> list[Post]:
        return [p for p in list(self.posts) if p.job_id == job_id]

    def progress(self, job_id: str) -> list[dict[str, Any]]:
        return [p.body for p in self.posts_for(job_id) if p.is_progress]

    def results(self, job_id: str) -> list[dict[str, Any]]:
        """Final results posted for the job (progress updates left out)."""
        return [p.body for p in self.posts_for(job_id) if not p.is_progress]

    def wait_result(self, job_id: str, timeout_s: float) -> dict[str, Any]:
        self._wait(lambda: bool(self.results(job_id)), timeout_s, f"no result for {job_id}")
        return self.results(job_id)[0]

    def wait_progress(self, job_id: str, timeout_s: float, class_type: str) -> dict[str, Any]:
        """The first progress update that reports a step of a node of `class_type`."""

        def stepping() -> list[dict[str, Any]]:
            return [body for body in self.progress(job_id)
                    if body["output"].get("class_type") == class_type
                    and "step" in body["output"]]

        self._wait(lambda: bool(stepping()), timeout_s,
                   f"no progress update from a {class_type} step of {job_id}")
        return stepping()[0]

    def summary(self) -> str:
        lines = [f"{p.route} {p.job_id} {json.dumps(p.body)[:300]}" for p in list(self.posts)]
        return "--- posts to the fake queue ---\n" + "\n".join(lines or ["(none)"])

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> FakeQueue:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True,
                                        name="fake-queue")
        self._thread.start()
        assert ready.wait(10) and self.url, "the fake queue did not start"
        return self

    def close(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # --- the server ---------------------------------------------------------------------------
    def _serve(self, ready: threading.Event) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._open())
        ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _open(self) -> None:
        app = web.Application()
        app.router.add_get("/v2/{endpoint}/job-take/{worker}", self._job_take)
        app.router.add_get("/v2/{endpoint}/job-stop/{worker}", self._job_stop)
        app.router.add_post("/v2/{endpoint}/job-done/{worker}/{job_id}", self._job_post)
        app.router.add_post("/v2/{endpoint}/job-stream/{worker}/{job_id}", self._job_post)
        app.router.add_get("/v2/{endpoint}/ping/{worker}", self._ping)
        # Handlers still open when a test ends (a worker mid-poll) are cut after 2 s, well
        # inside close()'s wait, rather than after aiohttp's default 60 s.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _job_take(self, request: web.Request) -> web.Response:
        self._note_auth(request)
        self.takes.append(dict(request.query))
        job = await _next(self._jobs)
        return web.Response(status=204) if job is None else web.json_response(job)

    async def _job_stop(self, request: web.Request) -> web.Response:
        self._note_auth(request)
        job_id = await _next(self._stops)
        if job_id is None:
            return web.Response(status=204)
        return web.json_response({"jobsToStop": [job_id]})

    async def _job_post(self, request: web.Request) -> web.Response:
        self._note_auth(request)
        route = request.path.split("/")[3]
        body = json.loads(await request.text())
        with self._changed:
            self.posts.append(Post(route, request.match_info["job_id"], body, time.monotonic()))
            self._changed.notify_all()
        return web.Response(text="ok")

    async def _ping(self, request: web.Request) -> web.Response:
        self._note_auth(request)
        self.pings.append({"worker": request.match_info["worker"], **request.query})
        return web.Response(text="ok")

    def _note_auth(self, request: web.Request) -> None:
        self.auth_headers.add(request.headers.get("Authorization", ""))

    # --- helpers ------------------------------------------------------------------------------
    def _wait(self, ready: Any, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not ready():
                left = deadline - time.monotonic()
                assert left > 0, f"{what} within {timeout_s:g} s\n{self.summary()}"
                self._changed.wait(min(left, 0.2))


@contextmanager
def running_queue() -> Iterator[FakeQueue]:
    queue = FakeQueue().start()
    try:
        yield queue
    finally:
        queue.close()


async def _next(items: collections.deque[Any]) -> Any:
    """The next item, waiting briefly for one (a short long-poll)."""
    deadline = time.monotonic() + _POLL_HOLD_S
    while True:
        if items:
            return items.popleft()
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(0.02)
