"""RunPod's endpoint API (`/run`, `/status/{id}`, `/stream/{id}`) over the fake job queue.

What a client sees of a worker on the production loop: `/run` queues a job the worker takes
from the fake queue; `/status` answers IN_QUEUE, then IN_PROGRESS with the newest progress
update the worker posted as `output`, then the job-done post (COMPLETED, or FAILED with its
`error`); `/stream` answers the job-stream items posted since the last call, as
`{"status", "stream": [{"output": item}]}`, as RunPod's does.
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .fake_queue import FakeQueue


class EndpointApi:
    def __init__(self, queue: FakeQueue, endpoint_id: str) -> None:
        self.queue = queue
        self.endpoint_id = endpoint_id
        self._streamed: dict[str, int] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v2"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        parts = path.split("?")[0].strip("/").split("/")  # v2, endpoint, operation[, id]
        if method == "POST" and parts[2] == "run":
            job_id = f"ep-{uuid.uuid4().hex[:8]}"
            self.queue.push(job_id, body["input"])
            return {"id": job_id, "status": "IN_QUEUE"}
        if parts[2] == "status":
            return self._status(parts[3])
        if parts[2] == "stream":
            return self._stream(parts[3])
        return {"error": f"no route {method} {path}"}

    def _done(self, job_id: str) -> dict[str, Any] | None:
        done = [p.body for p in self.queue.posts_for(job_id)
                if p.route == "job-done" and not p.is_progress]
        return done[0] if done else None

    def _status(self, job_id: str) -> dict[str, Any]:
        done = self._done(job_id)
        if done is not None:
            state = "FAILED" if "error" in done else "COMPLETED"
            return {"id": job_id, "status": state, **done}
        progress = self.queue.progress(job_id)
        if progress:
            return {"id": job_id, "status": "IN_PROGRESS", "output": progress[-1].get("output")}
        return {"id": job_id, "status": "IN_QUEUE"}

    def _stream(self, job_id: str) -> dict[str, Any]:
        done = self._done(job_id) is not None  # read first: no item posted after it is missed
        items = [p.body for p in self.queue.posts_for(job_id) if p.route == "job-stream"]
        seen = self._streamed.get(job_id, 0)
        self._streamed[job_id] = len(items)
        fresh = [{"output": item.get("output")} for item in items[seen:]]
        status = "COMPLETED" if done and not fresh else "IN_PROGRESS"
        return {"id": job_id, "status": status, "stream": fresh}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                data = json.dumps(api.answer(method, self.path, body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self._reply("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._reply("POST")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler
