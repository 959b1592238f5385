"""ComfyUI's HTTP API, typed: upload, prompt, history, view, interrupt, queue, free.

Knows ComfyUI and nothing about RunPod. Every request is bounded by an explicit
`httpx.Timeout`; a ComfyUI that cannot be reached, answers 5xx or answers garbage raises
`ComfyUIUnavailable`; a prompt ComfyUI refuses raises `PromptRejected` with ComfyUI's answer,
which the run turns into the client's error. The answers' types are in `wire`.

A newer ComfyUI (0.33; 0.3.64 has none of it) has `/api/jobs`: `cancel` and `prompt_state` use
it where it is there, because its cancel stops only the prompt named (an `/interrupt` stops
whatever runs at that moment, and between reading `/queue` and interrupting, ours may have
ended and another begun) and a job's state costs one small answer instead of `/queue` with
every queued graph. On a ComfyUI without it they fall back on `/queue`, `/interrupt` and the
queue delete, and remember not to ask again.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ValidationError

from ..errors import ComfyUIUnavailable
from .wire import HistoryEntry, QueuedPrompt, QueueState, UploadedFile

log = logging.getLogger(__name__)

PromptState = Literal["pending", "running", "ended"]
"""Where a prompt is: waiting in the queue, running, or neither (done, removed or unknown)."""

_LIVE_JOB_STATUS: dict[str, PromptState] = {"pending": "pending", "in_progress": "running"}


class PromptRejected(Exception):
    """ComfyUI refused a prompt (HTTP 400); `body` is its JSON answer, for the run to read."""

    def __init__(self, body: Any) -> None:
        super().__init__("ComfyUI refused the prompt")
        self.body = body


class ComfyClient:
    """A thread-safe client for one ComfyUI server."""

    def __init__(self, base_url: str, *, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
        )
        # Whether this ComfyUI has /api/jobs: unknown (None) until a route answers, then kept.
        self.jobs_api: bool | None = None

    @property
    def ws_url(self) -> str:
        return "ws" + self.base_url.removeprefix("http") + "/ws"

    def close(self) -> None:
        self._http.close()

    # --- liveness and facts -------------------------------------------------------------------
    def system_stats(self, *, timeout_s: float | None = None) -> dict[str, Any]:
        return self._json("GET", "/system_stats", timeout=timeout_s)

    def object_info(self, node_class: str | None = None) -> dict[str, Any]:
        return self._json("GET", f"/object_info/{node_class}" if node_class else "/object_info")

    def models_folders(self) -> list[str]:
        return list(self._json("GET", "/models"))

    def models(self, folder: str) -> list[str]:
        return list(self._json("GET", f"/models/{folder}"))

    # --- a job's life ---------------------------------------------------------------------
    def upload(
        self, data: bytes, filename: str, *, subfolder: str = "", overwrite: bool = True
    ) -> UploadedFile:
        files = {"image": (filename, data, "application/octet-stream")}
        form = {"subfolder": subfolder, "type": "input", "overwrite": str(overwrite).lower()}
        body = self._json("POST", "/upload/image", files=files, data=form)
        return self._model(UploadedFile, body, "/upload/image")

    def queue_prompt(
        self,
        graph: dict[str, Any],
        *,
        client_id: str,
        prompt_id: str,
        extra_data: dict[str, Any] | None = None,
    ) -> QueuedPrompt:
        payload: dict[str, Any] = {"prompt": graph, "client_id": client_id, "prompt_id": prompt_id}
        if extra_data:
            payload["extra_data"] = extra_data
        response = self._request("POST", "/prompt", json=payload, allow_status=(400,))
        body = self._decode(response, "/prompt")
        if response.status_code == 400:
            raise PromptRejected(body)
        # A 200 may still carry node_errors: ComfyUI then queued the outputs that passed and
        # dropped the rest. The caller decides what to do with such a half-accepted prompt.
        return self._model(QueuedPrompt, body, "/prompt")

    def history(self, prompt_id: str) -> HistoryEntry | None:
        body = self._json("GET", f"/history/{prompt_id}")
        if not isinstance(body, dict) or prompt_id not in body:
            return None
        return self._model(HistoryEntry, body[prompt_id], "/history")

    def view(self, filename: str, subfolder: str, folder_type: str) -> tuple[bytes, str | None]:
        """A file ComfyUI wrote, with the content type it reports."""
        params = {"filename": filename, "subfolder": subfolder, "type": folder_type}
        response = self._request("GET", "/view", params=params)
        return response.content, response.headers.get("content-type")

    # --- control ----------------------------------------------------------------------------
    def interrupt(self, prompt_id: str | None = None) -> None:
        self._request("POST", "/interrupt", json={"prompt_id": prompt_id} if prompt_id else {})

    def delete_from_queue(self, prompt_ids: list[str]) -> None:
        self._request("POST", "/queue", json={"delete": prompt_ids})

    def queue(self) -> QueueState:
        return self._model(QueueState, self._json("GET", "/queue"), "/queue")

    def prompt_state(self, prompt_id: str) -> PromptState:
        """Where a prompt is, from `GET /api/jobs/{id}`, or from `/queue` on an older ComfyUI."""
        if self.jobs_api is not False:
            response = self._request("GET", f"/api/jobs/{prompt_id}", allow_status=(404, 405))
            body = self._jobs_answer(response)
            if body is not None:
                if response.status_code == 404:
                    return "ended"  # neither queued, running nor in the history
                status = body.get("status") if isinstance(body, dict) else None
                return _LIVE_JOB_STATUS.get(str(status), "ended")
        queue = self.queue()
        if prompt_id in queue.running:
            return "running"
        return "pending" if prompt_id in queue.pending else "ended"

    def cancel(self, prompt_id: str) -> bool | None:
        """Stop one prompt, queued or running, with `POST /api/jobs/{id}/cancel`.

        True when ComfyUI dequeued or interrupted it, False when it had already ended (or was
        never known), None when this ComfyUI has no jobs routes: the caller falls back.
        """
        if self.jobs_api is False:
            return None
        response = self._request("POST", f"/api/jobs/{prompt_id}/cancel",
                                 allow_status=(404, 405))
        body = self._jobs_answer(response)
        if body is None:
            return None
        return bool(body.get("cancelled")) if isinstance(body, dict) else False

    def _jobs_answer(self, response: httpx.Response) -> Any:
        """The JSON of a jobs route, or None when the route does not exist here.

        ComfyUI's own answers are JSON, its "Job not found" 404 included; a ComfyUI without
        the routes answers 404 or 405 from its static file handler, with no JSON.
        """
        if response.is_success or self.jobs_api:
            self.jobs_api = True
            return self._decode(response, response.request.url.path)
        try:
            body = response.json()
        except ValueError:
            log.info("ComfyUI at %s has no /api/jobs routes: using /queue and /interrupt",
                     self.base_url)
            self.jobs_api = False
            return None
        self.jobs_api = True
        return body

    def delete_history(self, prompt_ids: list[str]) -> None:
        self._request("POST", "/history", json={"delete": prompt_ids})

    def free(self, *, unload_models: bool = True, free_memory: bool = True) -> None:
        self._request(
            "POST", "/free", json={"unload_models": unload_models, "free_memory": free_memory}
        )

    # --- plumbing -----------------------------------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        *,
        allow_status: tuple[int, ...] = (),
        timeout: float | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        if timeout is not None:
            kwargs["timeout"] = timeout
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ComfyUIUnavailable(
                f"ComfyUI did not answer {method} {path} in time ({type(exc).__name__})",
                {"request": f"{method} {path}"},
            ) from exc
        except httpx.HTTPError as exc:
            raise ComfyUIUnavailable(
                f"cannot reach ComfyUI at {self.base_url}: {exc}",
                {"request": f"{method} {path}"},
            ) from exc
        if response.is_success or response.status_code in allow_status:
            return response
        raise ComfyUIUnavailable(
            f"ComfyUI answered {method} {path} with HTTP {response.status_code}",
            {"request": f"{method} {path}", "status": response.status_code,
             "body": response.text[:500]},
        )

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._decode(self._request(method, path, **kwargs), path)

    @staticmethod
    def _decode(response: httpx.Response, path: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ComfyUIUnavailable(
                f"ComfyUI answered {path} with something that is not JSON",
                {"request": path, "status": response.status_code, "body": response.text[:200]},
            ) from None

    @staticmethod
    def _model(model: type[BaseModel], body: Any, path: str) -> Any:
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise ComfyUIUnavailable(
                f"ComfyUI's answer to {path} has an unexpected shape",
                {"request": path, "problem": str(exc)[:500]},
            ) from None
