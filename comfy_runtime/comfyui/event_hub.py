"""One websocket to ComfyUI for the whole worker, its events handed to each prompt's follower.

ComfyUI sends a prompt's events only to the websocket whose `clientId` the prompt was queued
with. Opening a websocket costs a few milliseconds, about a third of the worker's overhead on
a small job, so the worker keeps one open and queues every prompt under its client id. A
reader thread decodes each message once (`events.decode_text`, `decode_binary`) and sorts them
by prompt id into subscriptions. The socket declares the feature flag
`supports_preview_metadata` as its first message (ComfyUI reads flags only there), so ComfyUI
sends previews as type 4 frames that name their prompt: a frame for another prompt reaches
only that prompt. Frames that name none (type 1 from a ComfyUI without the flag, progress
text) go to the prompt ComfyUI is executing (it runs one at a time).

A subscription is made before the prompt is queued (we choose the prompt id), so no event
is lost to a race. When the connection breaks, every open subscription is told
(`ConnectionLost`), so its follower knows it may have missed events and asks the history;
the reader reconnects with the same client id, which ComfyUI keeps sending to.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid

import websocket

from ..errors import ComfyUIUnavailable
from .events import (
    Event,
    ExecutionStarted,
    NodeStarted,
    PreviewFrame,
    ProgressText,
    RunEnded,
    decode_binary,
    decode_text,
)

log = logging.getLogger(__name__)

_RECEIVE_SLICE_S = 0.5
_MAX_BACKOFF_S = 1.0
_CONNECT_TIMEOUT_S = 10.0
# What this client understands, sent as the socket's first message (ComfyUI's server.py keeps
# it per client id; comfy_api/feature_flags.py lists the server's side).
FEATURE_FLAGS = {"type": "feature_flags", "data": {"supports_preview_metadata": True}}


class ConnectionLost(Exception):
    """The websocket closed or broke; the prompt may still be running."""


class _Lost:
    """Put into a subscription's queue when the connection broke."""


class Subscription:
    """The events of one prompt, in order."""

    def __init__(self, hub: EventHub, prompt_id: str) -> None:
        self._hub = hub
        self.prompt_id = prompt_id
        self._queue: queue.Queue[Event | _Lost] = queue.Queue()

    def put(self, item: Event | _Lost) -> None:
        self._queue.put(item)

    def receive(self, timeout_s: float) -> Event | None:
        """The next event, or None if none came within `timeout_s`."""
        try:
            item = self._queue.get(timeout=max(timeout_s, 0.001))
        except queue.Empty:
            return None
        if isinstance(item, _Lost):
            raise ConnectionLost("ComfyUI's websocket broke; events may have been missed")
        return item

    def close(self) -> None:
        self._hub.unsubscribe(self.prompt_id)


class _Socket:
    """One websocket connection; `receive` decodes what arrives."""

    def __init__(self, url: str) -> None:
        try:
            # The library checks each text frame's UTF-8 byte by byte in Python; json.loads
            # rejects bad UTF-8 anyway (decode_text drops such a frame), at C speed.
            self._ws = websocket.create_connection(
                url, timeout=_CONNECT_TIMEOUT_S, enable_multithread=True,
                skip_utf8_validation=True,
            )
            self._ws.send(json.dumps(FEATURE_FLAGS))
        except (OSError, websocket.WebSocketException) as exc:
            raise ConnectionLost(f"cannot open ComfyUI's websocket: {exc}") from exc

    def receive(self, timeout_s: float) -> Event | None:
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
            return decode_binary(payload, now)
        return decode_text(payload, now)

    def abort(self) -> None:
        """Wake a thread blocked in `receive` (it gets ConnectionLost)."""
        self._ws.abort()

    def close(self) -> None:
        try:
            self._ws.close(timeout=1)
        except (OSError, websocket.WebSocketException):
            pass


class EventHub:
    """The worker's websocket to ComfyUI and the thread that reads it."""

    def __init__(self, ws_url: str, *, client_id: str | None = None) -> None:
        self.client_id = client_id or f"comfy-worker-{uuid.uuid4().hex[:12]}"
        self._url = f"{ws_url}?clientId={self.client_id}"
        self._socket: _Socket | None = None
        self._subscriptions: dict[str, Subscription] = {}
        self._running_prompt: str | None = None
        self._lock = threading.Lock()
        self._connect_lock = threading.Lock()
        self._stopping = threading.Event()
        self._reader: threading.Thread | None = None

    def subscribe(self, prompt_id: str) -> Subscription:
        """Start collecting `prompt_id`'s events; connects first if need be."""
        self._connect_if_needed()
        with self._lock:
            if self._reader is None or not self._reader.is_alive():
                self._reader = threading.Thread(
                    target=self._read_forever, name="comfyui-events", daemon=True
                )
                self._reader.start()
            subscription = Subscription(self, prompt_id)
            self._subscriptions[prompt_id] = subscription
        return subscription

    def unsubscribe(self, prompt_id: str) -> None:
        with self._lock:
            self._subscriptions.pop(prompt_id, None)

    def close(self) -> None:
        self._stopping.set()
        socket = self._socket
        if socket is not None:
            socket.abort()
        if self._reader is not None:
            self._reader.join(timeout=2 * _RECEIVE_SLICE_S + 1)
        if socket is not None:
            socket.close()

    # --- the connection ---------------------------------------------------------------------
    def _connect_if_needed(self) -> _Socket:
        """The one place a connection is made: a subscriber and the reader may both find it
        down, and two sockets under one client id would leave one of them unread."""
        with self._connect_lock:
            if self._socket is None:
                try:
                    self._socket = _Socket(self._url)
                except ConnectionLost as exc:
                    raise ComfyUIUnavailable(str(exc)) from exc
            return self._socket

    def _read_forever(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                socket = self._connect_if_needed()
            except ComfyUIUnavailable:
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
                continue
            if backoff > 0.1:
                log.info("connected to ComfyUI's websocket again")
                backoff = 0.1
            try:
                event = socket.receive(_RECEIVE_SLICE_S)
            except ConnectionLost as exc:
                self._connection_lost(exc)
                backoff = 0.2  # logs the reconnection once it succeeds
                continue
            if event is not None:
                self._dispatch(event)

    def _connection_lost(self, exc: ConnectionLost) -> None:
        if not self._stopping.is_set():
            log.warning("%s; telling %d prompts and reconnecting", exc, len(self._subscriptions))
        with self._connect_lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None
        with self._lock:
            for subscription in self._subscriptions.values():
                subscription.put(_Lost())

    def _dispatch(self, event: Event) -> None:
        target = event.prompt_id
        if isinstance(event, (PreviewFrame, ProgressText)) and target is None:
            target = self._running_prompt
        elif isinstance(event, (ExecutionStarted, NodeStarted)):
            self._running_prompt = target
        elif isinstance(event, RunEnded) and target is not None:
            self._running_prompt = None
        if target is None:
            return  # queue status and other broadcasts: nobody follows them
        with self._lock:
            subscription = self._subscriptions.get(target)
        if subscription is not None:
            subscription.put(event)
