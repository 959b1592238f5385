"""ComfyUI's websocket: typed events for one client id.

ComfyUI sends a prompt's events only to the websocket whose `clientId` the prompt was queued
with, so each job opens its own connection (before `POST /prompt`). Text frames are JSON
`{"type", "data"}`; binary frames are `[u32 event][u32 format][bytes]` images: previews, or the
outputs of SaveImageWebsocket. Knows ComfyUI and nothing about RunPod.
"""

from __future__ import annotations

import json
import logging
import struct
import time
from typing import Any

import websocket
from pydantic import BaseModel, Field

log = logging.getLogger(__name__)

_BINARY_FORMATS = {1: "image/jpeg", 2: "image/png", 3: "image/webp"}


class ComfyEvent(BaseModel):
    """One text message. `received_at` is our monotonic clock, for per-node timings."""

    type: str
    data: dict[str, Any] = Field(default_factory=dict)
    received_at: float = 0.0

    @property
    def prompt_id(self) -> str | None:
        return self.data.get("prompt_id")

    @property
    def node(self) -> str | None:
        value = self.data.get("node", self.data.get("node_id"))
        return None if value is None else str(value)


class BinaryFrame(BaseModel):
    """An image sent over the websocket (a preview, or a SaveImageWebsocket output)."""

    event: int
    mime_type: str | None
    data: bytes
    received_at: float = 0.0


class ConnectionLost(Exception):
    """The websocket closed or broke; the prompt may still be running."""


class EventStream:
    """One websocket connection to ComfyUI for one client id."""

    def __init__(self, ws_url: str, client_id: str, *, connect_timeout_s: float = 10.0) -> None:
        self.url = f"{ws_url}?clientId={client_id}"
        self.client_id = client_id
        self._connect_timeout_s = connect_timeout_s
        self._ws: websocket.WebSocket | None = None

    def connect(self) -> None:
        try:
            self._ws = websocket.create_connection(
                self.url, timeout=self._connect_timeout_s, enable_multithread=True
            )
        except (OSError, websocket.WebSocketException) as exc:
            raise ConnectionLost(f"cannot open ComfyUI's websocket: {exc}") from exc

    def receive(self, timeout_s: float) -> ComfyEvent | BinaryFrame | None:
        """The next message, or None if none came within `timeout_s`."""
        if self._ws is None:
            raise ConnectionLost("websocket is not connected")
        self._ws.settimeout(max(timeout_s, 0.001))
        try:
            opcode, payload = self._ws.recv_data()
        except websocket.WebSocketTimeoutException:
            return None
        except (OSError, websocket.WebSocketException) as exc:
            raise ConnectionLost(f"ComfyUI's websocket broke: {exc}") from exc
        now = time.monotonic()
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise ConnectionLost("ComfyUI closed the websocket")
        if opcode == websocket.ABNF.OPCODE_BINARY:
            return _binary_frame(payload, now)
        try:
            message = json.loads(payload)
            return ComfyEvent(type=message["type"], data=message.get("data") or {}, received_at=now)
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a websocket message that is not ComfyUI's JSON shape")
            return None

    def abort(self) -> None:
        """Wake a thread blocked in `receive` on this connection (it gets ConnectionLost)."""
        if self._ws is not None:
            self._ws.abort()

    def close(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close(timeout=1)
            except (OSError, websocket.WebSocketException):
                pass
            self._ws = None


def _binary_frame(payload: bytes, now: float) -> BinaryFrame | None:
    if len(payload) < 8:
        return None
    event, image_format = struct.unpack(">II", payload[:8])
    return BinaryFrame(
        event=event, mime_type=_BINARY_FORMATS.get(image_format), data=payload[8:], received_at=now
    )
