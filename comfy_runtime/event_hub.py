"""One websocket to ComfyUI for the whole worker, its events handed to each prompt's follower.

Opening a websocket costs a few milliseconds, about a third of the worker's overhead on a
small job, so the worker keeps one open and queues every prompt under its client id. A
reader thread sorts the messages by `prompt_id` into subscriptions; binary frames carry no
prompt id and go to the prompt ComfyUI is executing (it runs one at a time).

A subscription is made before the prompt is queued (we choose the prompt id), so no event
is lost to a race. When the connection breaks, every open subscription is told
(`ConnectionLost`), so its follower knows it may have missed events and asks the history;
the reader reconnects with the same client id, which ComfyUI keeps sending to.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid

from .errors import ComfyUIUnavailable
from .events import BinaryFrame, ComfyEvent, ConnectionLost, EventStream

log = logging.getLogger(__name__)

_LOST = object()  # put into a subscription's queue when the connection broke
_RECEIVE_SLICE_S = 0.5
_MAX_BACKOFF_S = 1.0


class Subscription:
    """The events of one prompt, in order, as `EventStream.receive` would give them."""

    def __init__(self, hub: EventHub, prompt_id: str) -> None:
        self._hub = hub
        self.prompt_id = prompt_id
        self._queue: queue.Queue[object] = queue.Queue()

    def put(self, item: object) -> None:
        self._queue.put(item)

    def receive(self, timeout_s: float) -> ComfyEvent | BinaryFrame | None:
        try:
            item = self._queue.get(timeout=max(timeout_s, 0.001))
        except queue.Empty:
            return None
        if item is _LOST:
            raise ConnectionLost("ComfyUI's websocket broke; events may have been missed")
        return item  # type: ignore[return-value]

    def close(self) -> None:
        self._hub.unsubscribe(self.prompt_id)


class EventHub:
    """The worker's websocket to ComfyUI and the thread that reads it."""

    def __init__(self, ws_url: str, *, client_id: str | None = None) -> None:
        self.client_id = client_id or f"comfy-worker-{uuid.uuid4().hex[:12]}"
        self._ws_url = ws_url
        self._stream: EventStream | None = None
        self._subscriptions: dict[str, Subscription] = {}
        self._running_prompt: str | None = None
        self._lock = threading.Lock()
        self._connect_lock = threading.Lock()
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._reader: threading.Thread | None = None

    def subscribe(self, prompt_id: str) -> Subscription:
        """Start collecting `prompt_id`'s events; connects first if need be."""
        self._ensure_connected()
        subscription = Subscription(self, prompt_id)
        with self._lock:
            self._subscriptions[prompt_id] = subscription
        return subscription

    def unsubscribe(self, prompt_id: str) -> None:
        with self._lock:
            self._subscriptions.pop(prompt_id, None)

    def close(self) -> None:
        self._stopping.set()
        if self._stream is not None:
            self._stream.abort()
        if self._reader is not None:
            self._reader.join(timeout=2 * _RECEIVE_SLICE_S + 1)
        if self._stream is not None:
            self._stream.close()

    # --- the connection ---------------------------------------------------------------------
    def _ensure_connected(self) -> None:
        self._connect_if_needed()
        with self._lock:
            if self._reader is None or not self._reader.is_alive():
                self._reader = threading.Thread(
                    target=self._read_forever, name="comfyui-events", daemon=True
                )
                self._reader.start()

    def _connect_if_needed(self) -> None:
        """The one place a connection is made: a subscriber and the reader may both find it
        down, and two sockets under one client id would leave one of them unread."""
        with self._connect_lock:
            if self._connected.is_set():
                return
            stream = EventStream(self._ws_url, self.client_id)
            try:
                stream.connect()
            except ConnectionLost as exc:
                raise ComfyUIUnavailable(str(exc)) from exc
            self._stream = stream
            self._connected.set()

    def _read_forever(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            if not self._connected.is_set():
                try:
                    self._connect_if_needed()
                    backoff = 0.1
                    log.info("connected to ComfyUI's websocket again")
                except ComfyUIUnavailable:
                    self._stopping.wait(backoff)
                    backoff = min(backoff * 2, _MAX_BACKOFF_S)
                    continue
            assert self._stream is not None
            try:
                message = self._stream.receive(_RECEIVE_SLICE_S)
            except ConnectionLost as exc:
                if not self._stopping.is_set():
                    log.warning("%s; telling %d prompts and reconnecting", exc,
                                len(self._subscriptions))
                self._connection_lost()
                continue
            if message is not None:
                self._dispatch(message)

    def _connection_lost(self) -> None:
        with self._connect_lock:
            self._connected.clear()
            if self._stream is not None:
                self._stream.close()
        with self._lock:
            for subscription in self._subscriptions.values():
                subscription.put(_LOST)

    def _dispatch(self, message: ComfyEvent | BinaryFrame) -> None:
        if isinstance(message, BinaryFrame):
            target = self._running_prompt
        else:
            target = message.prompt_id
            if message.type == "executing" and target is not None:
                self._running_prompt = target if message.node is not None else None
            elif message.type == "execution_start":
                self._running_prompt = target
        if target is None:
            return  # queue status and other broadcasts: nobody follows them
        with self._lock:
            subscription = self._subscriptions.get(target)
        if subscription is not None:
            subscription.put(message)

