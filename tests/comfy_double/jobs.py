"""ComfyUI 0.33's /api/jobs routes, as recorded (tests/protocol/v0.33.0/jobs.json).

A job is a prompt seen from the queue or the history: `pending`, `in_progress`, then
`completed`, `failed` or `cancelled` (an interrupted run). Cancelling dequeues a pending prompt
or interrupts the running one, and only that one; an ended or unknown id is a no-op answered
`{"cancelled": false}`. A dequeued prompt leaves no trace: its job is then "not found".
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from .server import ServerState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATUSES = ["pending", "in_progress", "completed", "failed", "cancelled"]


def _is_job_id(value: Any) -> bool:
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value
    except ValueError:
        return False


def _ended_status(entry: dict[str, Any]) -> str:
    status = entry.get("status", {})
    if status.get("status_str") == "success":
        return "completed"
    kinds = [message[0] for message in status.get("messages", [])]
    return "cancelled" if "execution_interrupted" in kinds else "failed"


def _outputs_count(outputs: dict[str, Any]) -> int:
    return sum(len(items) for output in outputs.values() for items in output.values()
               if isinstance(items, list))


def _preview(outputs: dict[str, Any]) -> dict[str, Any] | None:
    """The first file of an output, as the jobs list shows it."""
    for node_id, output in outputs.items():
        for media, items in output.items():
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict) and "filename" in item:
                    return {**item, "nodeId": node_id, "mediaType": media}
    return None


def _times(entry: dict[str, Any]) -> dict[str, int]:
    stamps = {message[0]: message[1].get("timestamp")
              for message in entry.get("status", {}).get("messages", [])}
    start = stamps.get("execution_start")
    end = next((stamps[k] for k in ("execution_success", "execution_error",
                                    "execution_interrupted") if k in stamps), None)
    return {key: value for key, value in (("execution_start_time", start),
                                          ("execution_end_time", end)) if value is not None}


class JobRoutes:
    def __init__(self, state: ServerState) -> None:
        self.s = state

    def table(self) -> list[tuple[str, str, Handler]]:
        return [("GET", "/api/jobs", self.list_jobs),
                ("GET", "/api/jobs/{job_id}", self.get_job),
                ("POST", "/api/jobs/cancel", self.cancel_batch),
                ("POST", "/api/jobs/{job_id}/cancel", self.cancel_one)]

    def _live(self) -> list[dict[str, Any]]:
        queue = self.s.queue
        items = [(queue.running, "in_progress")] if queue.running else []
        items += [(item, "pending") for item in queue.pending]
        return [{"id": item.prompt_id, "status": status, "priority": item.number,
                 "create_time": item.extra_data.get("create_time", 0), "outputs_count": 0,
                 "previewable_outputs_count": 0} for item, status in items]

    def _ended(self, prompt_id: str, entry: dict[str, Any], full: bool) -> dict[str, Any]:
        outputs = entry.get("outputs", {})
        count = _outputs_count(outputs)
        extra_data = entry["prompt"][3]
        job: dict[str, Any] = {"id": prompt_id, "status": _ended_status(entry),
                               "priority": entry["prompt"][0],
                               "create_time": extra_data.get("create_time", 0), **_times(entry),
                               "outputs_count": count, "previewable_outputs_count": count}
        preview = _preview(outputs)
        if preview is not None:
            job["preview_output"] = preview
        if full:
            job["outputs"] = outputs
            job["execution_status"] = entry.get("status", {})
            job["workflow"] = {"prompt": entry["prompt"][2], "extra_data": extra_data}
        return job

    async def list_jobs(self, request: web.Request) -> web.Response:
        wanted = [s.strip().lower() for s in request.query.get("status", "").split(",")
                  if s.strip()]
        bad = [s for s in wanted if s not in STATUSES]
        if bad:
            return web.json_response({"error": f"Invalid status value(s): {', '.join(bad)}. "
                                      f"Valid values: {', '.join(STATUSES)}"}, status=400)
        jobs = self._live() + [self._ended(pid, entry, False)
                               for pid, entry in self.s.queue.history.items()]
        if wanted:
            jobs = [job for job in jobs if job["status"] in wanted]
        jobs.sort(key=lambda job: job["create_time"], reverse=True)
        return web.json_response({"jobs": jobs, "pagination": {
            "offset": 0, "limit": None, "total": len(jobs), "has_more": False}})

    async def get_job(self, request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        for job in self._live():
            if job["id"] == job_id:
                return web.json_response(job)
        entry = self.s.queue.history.get(job_id)
        if entry is None:
            return web.json_response({"error": "Job not found"}, status=404)
        return web.json_response(self._ended(job_id, entry, True))

    async def _cancel(self, job_id: str) -> bool:
        queue = self.s.queue
        self.s.cancels.append(job_id)
        if queue.running is not None and queue.running.prompt_id == job_id:
            self.s.runner.interrupt(job_id)
            return True
        if any(item.prompt_id == job_id for item in queue.pending):
            await queue.delete([job_id])
            return True
        return False

    async def cancel_one(self, request: web.Request) -> web.Response:
        return web.json_response({"cancelled": await self._cancel(request.match_info["job_id"])})

    async def cancel_batch(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "Request body must be valid JSON"}, status=400)
        ids = body.get("job_ids") if isinstance(body, dict) else None
        if not isinstance(ids, list):
            return web.json_response({"error": "job_ids must be a list"}, status=400)
        invalid = [i for i in ids if not _is_job_id(i)]
        if invalid:
            return web.json_response({"error": "job_ids contains invalid id(s)",
                                      "invalid_ids": invalid}, status=400)
        cancelled = [await self._cancel(i) for i in ids]
        return web.json_response({"cancelled": any(cancelled)})
