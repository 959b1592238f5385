"""ComfyUI's HTTP and websocket routes, as the double answers them.

The version played (versions.py) decides the few answers that differ, and whether the
/api/jobs routes (jobs.py) exist. Every other route is also served under /api, like ComfyUI.
Fault switches that concern HTTP (500s, bodies that are not JSON, slow answers, /view 404s)
live in one middleware so the handlers stay faithful.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import mimetypes
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from .catalogue import MODEL_FOLDERS, Catalogue
from .execution import SENSITIVE_KEYS, PromptQueue, QueueItem, Runner, now_ms
from .faults import AS_RECORDED, Faults
from .files import Dirs, upload_target, view_path
from .hub import Hub
from .jobs import JobRoutes
from .validation import validate_prompt
from .versions import DEFAULT, MAX_UPLOAD_SIZE, Version

log = logging.getLogger(__name__)

COMFYUI_VERSION = DEFAULT.name
# aiohttp's own answer to an unhandled exception: what ComfyUI sends for a body that is not JSON.
TEXT_500 = "500 Internal Server Error\n\nServer got itself in trouble"
ROOT_HTML = ("<!doctype html><html lang=\"en\"><head><meta charset=\"UTF-8\"><title>ComfyUI"
             "</title></head><body>ComfyUI double</body></html>")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class ServerState:
    dirs: Dirs
    catalogue: Catalogue
    faults: Faults
    hub: Hub
    queue: PromptQueue
    runner: Runner
    argv: list[str]
    prompts: list[dict[str, Any]] = field(default_factory=list)
    interrupts: list[dict[str, Any]] = field(default_factory=list)
    views: list[tuple[str, bool]] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)
    number: int = 0
    version: Version = DEFAULT


def _strip_api(path: str) -> str:
    return path[4:] if path.startswith("/api/") else path


def _fault_middleware(state: ServerState) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = _strip_api(request.path)
        faults = state.faults
        if path != "/ws" and faults.response_delay_s > 0:
            await asyncio.sleep(faults.response_delay_s)
        if faults.matches_route(faults.http_500, path):
            return web.Response(status=500, text=TEXT_500)
        if faults.matches_route(faults.malformed_json, path):
            return web.Response(status=200, body=b"<html>not json{",
                                content_type="application/json")
        return await handler(request)
    return middleware


async def _json_body(request: web.Request) -> Any:
    """The body as JSON, or {} when it is empty or not JSON (ComfyUI's lenient routes)."""
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}


class Routes:
    def __init__(self, state: ServerState) -> None:
        self.s = state

    def table(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/", self.root),
            ("GET", "/ws", self.websocket),
            ("GET", "/prompt", self.get_prompt),
            ("POST", "/prompt", self.post_prompt),
            ("GET", "/queue", self.get_queue),
            ("POST", "/queue", self.post_queue),
            ("POST", "/interrupt", self.post_interrupt),
            ("POST", "/free", self.post_free),
            ("GET", "/history", self.get_history),
            ("GET", "/history/{prompt_id}", self.get_history_item),
            ("POST", "/history", self.post_history),
            ("GET", "/view", self.view),
            ("POST", "/upload/image", self.upload_image),
            ("GET", "/system_stats", self.system_stats),
            ("GET", "/object_info", self.object_info),
            ("GET", "/object_info/{node_class}", self.object_info_one),
            ("GET", "/models", self.models),
            ("GET", "/models/{folder}", self.models_in),
            ("GET", "/features", self.features),
            ("GET", "/embeddings", self.empty_list),
            ("GET", "/extensions", self.empty_list),
        ]

    async def root(self, request: web.Request) -> web.Response:
        return web.Response(text=ROOT_HTML, content_type="text/html")

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_UPLOAD_SIZE)
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        self.s.hub.register(sid, ws)
        try:
            await ws.send_str(json.dumps({"type": "status", "data": {
                "status": self.s.queue.status(), "sid": sid}}))
            runner = self.s.runner
            # ComfyUI tells a client that reconnects mid-run which node is executing.
            if runner.client_id == sid and runner.last_node_id is not None:
                await ws.send_str(json.dumps({"type": "executing",
                                              "data": {"node": runner.last_node_id}}))
            first = True
            async for message in ws:
                # ComfyUI answers a client's first message, if it is its feature flags, with
                # its own (ws_connect.json); it reads nothing else from clients.
                if first and message.type == WSMsgType.TEXT:
                    await self._feature_flags(sid, ws, message.data)
                first = False
        finally:
            self.s.hub.unregister(sid, ws)
        return ws

    async def _feature_flags(self, sid: str, ws: web.WebSocketResponse, text: str) -> None:
        """ComfyUI keeps the flags of a socket's first message if it is `feature_flags`, and
        answers with its own (server.py); anything else a client sends is ignored."""
        try:
            message = json.loads(text)
        except ValueError:
            return
        if self.s.faults.feature_flags_ignored:
            return
        if isinstance(message, dict) and message.get("type") == "feature_flags":
            data = message.get("data")
            self.s.hub.set_flags(sid, data if isinstance(data, dict) else {})
            await ws.send_str(json.dumps({"type": "feature_flags",
                                          "data": self.s.version.features}))

    async def get_prompt(self, request: web.Request) -> web.Response:
        return web.json_response(self.s.queue.status())

    async def post_prompt(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.Response(status=500, text=TEXT_500)
        if not isinstance(body, dict):
            return web.Response(status=500, text=TEXT_500)
        if "number" in body:
            number: float = float(body["number"])
        else:
            number = self.s.number
            if body.get("front"):
                number = -number
            self.s.number += 1
        if "prompt" not in body:
            return web.json_response({"error": {
                "type": "no_prompt", "message": "No prompt provided",
                "details": "No prompt provided", "extra_info": {}}, "node_errors": {}},
                status=400)
        prompt = copy.deepcopy(body["prompt"])
        if (self.s.version.strict_prompt_id and body.get("prompt_id") is not None
                and not _canonical_uuid(body["prompt_id"])):
            return web.json_response({"error": {
                "type": "invalid_prompt_id", "message": "prompt_id must be a valid UUID",
                "details": "prompt_id must be a UUID string in canonical lowercase "
                "hyphenated form; omit it to let the server generate one",
                "extra_info": {}}, "node_errors": {}}, status=400)
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        newer = self.s.version.missing_node_error != "invalid_prompt"
        verdict = validate_prompt(prompt, self.s.catalogue, self.s.dirs,
                                  body.get("partial_execution_targets"), newer_errors=newer)
        extra_data = copy.deepcopy(body.get("extra_data") or {})
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        if self.s.version.jobs_api:
            extra_data["create_time"] = now_ms()  # what the jobs list sorts by
        if not verdict.ok:
            log.warning("invalid prompt: %s", verdict.error)
            return web.json_response({"error": verdict.error, "node_errors": verdict.node_errors},
                                     status=400)
        outputs, node_errors = verdict.outputs, verdict.node_errors
        if self.s.faults.node_errors_on_200:
            outputs, node_errors = self._fake_node_errors(prompt, outputs, node_errors)
        sensitive = {k: extra_data.pop(k) for k in SENSITIVE_KEYS if k in extra_data}
        self.s.prompts.append(body)
        await self.s.queue.put(QueueItem(number, prompt_id, prompt, extra_data, outputs,
                                         sensitive))
        return web.json_response({"prompt_id": prompt_id, "number": number,
                                  "node_errors": node_errors})

    @staticmethod
    def _fake_node_errors(prompt: dict[str, Any], outputs: list[str],
                          node_errors: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
        """The fault: one output "fails validation". It is dropped from the run when others
        remain, as ComfyUI does; a lone output still runs (ComfyUI would have answered 400)."""
        victim = outputs[0]
        node_errors = {**node_errors, victim: {
            "errors": [{"type": "custom_validation_failed",
                        "message": "Custom validation failed for node",
                        "details": "fault injected by the ComfyUI double",
                        "extra_info": {}}],
            "dependent_outputs": [victim],
            "class_type": prompt[victim]["class_type"]}}
        remaining = [o for o in outputs if o != victim]
        return (remaining or outputs), node_errors

    async def get_queue(self, request: web.Request) -> web.Response:
        queue = self.s.queue
        return web.json_response({
            "queue_running": [queue.running.public()] if queue.running else [],
            "queue_pending": [item.public() for item in queue.pending],
        })

    async def post_queue(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        if body.get("clear"):
            await self.s.queue.clear()
        if "delete" in body:
            await self.s.queue.delete([str(i) for i in body["delete"]])
        return web.Response(status=200)

    async def post_interrupt(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        body = body if isinstance(body, dict) else {}
        self.s.interrupts.append(body)
        self.s.runner.interrupt(body.get("prompt_id"))
        return web.Response(status=200)

    async def post_free(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        self.s.runner.free(bool(body.get("free_memory", False)))
        return web.Response(status=200)

    async def get_history(self, request: web.Request) -> web.Response:
        max_items = request.query.get("max_items")
        offset = int(request.query.get("offset", -1))
        return web.json_response(self.s.queue.history_slice(
            int(max_items) if max_items is not None else None, offset))

    async def get_history_item(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self.s.queue.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry is not None else {})

    async def post_history(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        if body.get("clear"):
            self.s.queue.history.clear()
        for prompt_id in body.get("delete", []):
            self.s.queue.history.pop(str(prompt_id), None)
        return web.Response(status=200)

    async def view(self, request: web.Request) -> web.StreamResponse:
        if self.s.faults.view_404:
            return web.Response(status=404)
        status, path = view_path(self.s.dirs, dict(request.query))
        self.s.views.append((request.query.get("filename", ""), self.s.queue.running is not None))
        if path is None:
            return web.Response(status=status)
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if content_type in {"text/html", "text/html-sandboxed", "application/xhtml+xml",
                            "text/javascript", "text/css"}:
            content_type = "application/octet-stream"  # ComfyUI forces these to download
        return web.FileResponse(path, headers={
            "Content-Disposition": f'filename="{path.name}"', "Content-Type": content_type})

    async def upload_image(self, request: web.Request) -> web.Response:
        post = await request.post()
        image = post.get("image")
        if not isinstance(image, web.FileField) or not image.filename:
            return web.Response(status=400)
        kind = str(post.get("type") or "input")
        base = self.s.dirs.by_type(kind)
        if base is None:
            return web.Response(status=400)
        subfolder = str(post.get("subfolder", ""))
        overwrite = str(post.get("overwrite")) in ("true", "1")
        data = image.file.read()
        target, name, duplicate = upload_target(base, subfolder, image.filename, data, overwrite)
        if target is None:
            return web.Response(status=400)
        if not duplicate:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return web.json_response({"name": name, "subfolder": subfolder, "type": kind})

    async def system_stats(self, request: web.Request) -> web.Response:
        ram_total, ram_free = _memory()
        version = self.s.version
        system: dict[str, Any] = {
            "os": os.name, "ram_total": ram_total, "ram_free": ram_free, **version.system,
            "python_version": sys.version, "pytorch_version": "2.14.1+cu130",
            "embedded_python": False, **version.extra_stats, "argv": self.s.argv,
        }
        frontend = self.s.faults.required_frontend_version
        if frontend is None:
            del system["required_frontend_version"]
        elif frontend != AS_RECORDED:
            system["required_frontend_version"] = frontend
        return web.json_response({
            "system": system,
            "devices": [{"name": "cpu", "type": "cpu", "index": None, "vram_total": ram_total,
                         "vram_free": ram_free, "torch_vram_total": ram_total,
                         "torch_vram_free": ram_free}],
        })

    async def object_info(self, request: web.Request) -> web.Response:
        return web.json_response(self.s.catalogue.all_specs())

    async def object_info_one(self, request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        if name not in self.s.catalogue:
            return web.json_response({})
        return web.json_response({name: self.s.catalogue.spec(name)})

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(MODEL_FOLDERS)

    async def models_in(self, request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        if folder not in MODEL_FOLDERS and folder not in self.s.catalogue.models:
            return web.Response(status=404)
        return web.json_response(self.s.catalogue.model_files(folder))

    async def features(self, request: web.Request) -> web.Response:
        return web.json_response(self.s.version.features)

    async def empty_list(self, request: web.Request) -> web.Response:
        return web.json_response([])


def _canonical_uuid(value: Any) -> bool:
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value
    except ValueError:
        return False


def _memory() -> tuple[int, int]:
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return page * os.sysconf("SC_PHYS_PAGES"), page * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0, 0


def build_app(state: ServerState) -> web.Application:
    app = web.Application(client_max_size=MAX_UPLOAD_SIZE,
                          middlewares=[_fault_middleware(state)])
    for method, path, handler in Routes(state).table():
        app.router.add_route(method, path, handler)
        app.router.add_route(method, "/api" + path, handler)
    if state.version.jobs_api:
        for method, path, handler in JobRoutes(state).table():
            app.router.add_route(method, path, handler)
    return app
