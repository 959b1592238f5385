"""The websocket side: one socket per client id, JSON events and binary preview frames, and
the feature flags each client declared (ComfyUI reads them from a socket's first message)."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)


class Hub:
    def __init__(self) -> None:
        # ComfyUI keeps the latest socket per client id; a reconnect replaces the old one.
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.flags: dict[str, dict[str, Any]] = {}

    def set_flags(self, sid: str, flags: dict[str, Any]) -> None:
        self.flags[sid] = flags

    def previews_with_metadata(self, sid: str | None) -> bool:
        """Whether `sid` declared `supports_preview_metadata` (type 4 frames, else type 1)."""
        return sid is not None and self.flags.get(sid, {}).get("supports_preview_metadata") is True

    def register(self, sid: str, ws: web.WebSocketResponse) -> None:
        self.sockets[sid] = ws

    def unregister(self, sid: str, ws: web.WebSocketResponse) -> None:
        if self.sockets.get(sid) is ws:
            del self.sockets[sid]
            self.flags.pop(sid, None)

    async def send(self, event: str, data: dict[str, Any], sid: str | None) -> None:
        """To `sid` only, or to every socket when sid is None (ComfyUI's broadcast)."""
        text = json.dumps({"type": event, "data": data})
        for ws in self._targets(sid):
            await self._deliver(ws, text)

    async def send_bytes(self, payload: bytes, sid: str | None) -> None:
        for ws in self._targets(sid):
            await self._deliver(ws, payload)

    async def send_garbled(self, sid: str) -> None:
        """A text frame that is not UTF-8 (the garbled_ws_text fault)."""
        ws = self.sockets.get(sid)
        if ws is not None and not ws.closed:
            await ws.send_frame(b'{"type": "\xff\xfe"}', WSMsgType.TEXT)

    async def close(self, sid: str) -> None:
        ws = self.sockets.pop(sid, None)
        if ws is not None:
            await ws.close()

    async def close_all(self) -> None:
        for sid in list(self.sockets):
            await self.close(sid)

    def _targets(self, sid: str | None) -> list[web.WebSocketResponse]:
        if sid is None:
            return list(self.sockets.values())
        ws = self.sockets.get(sid)
        return [ws] if ws is not None else []

    @staticmethod
    async def _deliver(ws: web.WebSocketResponse, payload: str | bytes) -> None:
        if ws.closed:
            return
        try:
            if isinstance(payload, bytes):
                await ws.send_bytes(payload)
            else:
                await ws.send_str(payload)
        except (ConnectionError, RuntimeError) as exc:
            # A client that went away mid-send is not the run's problem, as in ComfyUI.
            log.debug("websocket send failed: %s", exc)
