"""Queue one prompt and follow it to its end, whatever happens on the way.

The websocket is opened before `POST /prompt` (ComfyUI only sends a prompt's events to the
client id it was queued with). The run is over when ComfyUI sends `executing` with
`node: null` for our prompt; the history entry, written just before that, is the record of
what happened. Missed events are never fatal: a dropped websocket is reconnected, and
silence is answered by reading the history, which keeps the run's status messages.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .client import ComfyClient, HistoryEntry, HistoryStatus
from .errors import ComfyUIUnavailable, ExecutionFailed, JobCancelled, JobTimeout
from .event_hub import EventHub, Subscription
from .events import BinaryFrame, ComfyEvent, ConnectionLost
from .prompt_errors import rejected_prompt_error

log = logging.getLogger(__name__)

EventCallback = Callable[[ComfyEvent], None]
HealthCheck = Callable[[], None]

# How long the websocket may stay silent before we look at the history instead.
SILENCE_POLL_S = 1.0
# How long an interrupted prompt may take to wind down before we stop waiting for it.
STOP_GRACE_S = 15.0
_TRACEBACK_LINES = 6


@dataclass
class RunOutcome:
    prompt_id: str
    history: HistoryEntry
    node_ms: dict[str, float] = field(default_factory=dict)
    ws_images: list[tuple[str, BinaryFrame]] = field(default_factory=list)
    queued_ms: float = 0.0
    execution_ms: float = 0.0


@dataclass
class _Progress:
    """What we learn from the events, kept to report how far a run got."""

    started_at: float | None = None
    current_node: str | None = None
    current_since: float = 0.0
    step: tuple[int, int] | None = None
    node_ms: dict[str, float] = field(default_factory=dict)
    ws_images: list[tuple[str, BinaryFrame]] = field(default_factory=list)
    ended: bool = False
    # The run's record as the events told it; complete unless an event was missed.
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    missed_events: bool = False

    def on_event(self, event: ComfyEvent) -> None:
        if event.type in ("execution_start", "execution_cached", "execution_success",
                          "execution_error", "execution_interrupted"):
            self.messages.append((event.type, event.data))
        if event.type == "executed" and isinstance(event.data.get("output"), dict):
            merged = self.outputs.setdefault(str(event.node), {})
            for key, value in event.data["output"].items():
                if isinstance(value, list):
                    merged.setdefault(key, []).extend(value)
                else:
                    merged[key] = value
        if event.type == "execution_start":
            self.started_at = event.received_at
        elif event.type == "executing":
            self._close_node(event.received_at)
            self.current_node = event.node
            self.current_since = event.received_at
            self.step = None
            if event.node is None:
                self.ended = True
        elif event.type == "progress":
            self.step = (int(event.data.get("value", 0)), int(event.data.get("max", 0)))
        elif event.type in ("execution_error", "execution_interrupted"):
            self._close_node(event.received_at)

    def _close_node(self, now: float) -> None:
        if self.current_node is not None:
            elapsed = (now - self.current_since) * 1000
            self.node_ms[self.current_node] = round(
                self.node_ms.get(self.current_node, 0.0) + elapsed, 1
            )
            self.current_node = None

    def as_history(self) -> HistoryEntry | None:
        """The history entry the events add up to, when we saw all of a successful run."""
        kinds = [kind for kind, _ in self.messages]
        if self.missed_events or "execution_start" not in kinds or "execution_success" not in kinds:
            return None
        status = HistoryStatus(status_str="success", completed=True, messages=self.messages)
        return HistoryEntry(outputs=self.outputs, status=status)

    def describe(self, graph: dict[str, Any]) -> dict[str, Any]:
        where: dict[str, Any] = {"nodes_done": sorted(self.node_ms)}
        if self.current_node is not None:
            where["node"] = self.current_node
            where["class_type"] = graph.get(self.current_node, {}).get("class_type")
        if self.step:
            where["step"], where["max"] = self.step
        if self.started_at is None:
            where["state"] = "queued"
        return where


class PromptRun:
    """One prompt on one ComfyUI, from queueing to the history entry."""

    def __init__(
        self,
        client: ComfyClient,
        graph: dict[str, Any],
        *,
        events: EventHub,
        prompt_id: str,
        extra_data: dict[str, Any] | None = None,
        on_event: EventCallback | None = None,
        health_check: HealthCheck | None = None,
    ) -> None:
        self.client = client
        self.graph = graph
        self.events = events
        self.prompt_id = prompt_id
        self.extra_data = extra_data
        self._on_event = on_event or (lambda event: None)
        self._health_check = health_check or (lambda: None)
        self._progress = _Progress()
        self._subscription: Subscription | None = None
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        """Ask the thread in `run` to stop the prompt and give up (thread-safe)."""
        self._cancelled.set()

    def run(self, deadline: float, timeout_s: float) -> RunOutcome:
        """Queue and follow; `deadline` is on the monotonic clock."""
        self._subscription = self._subscribe()
        try:
            queued_at = time.monotonic()
            queued = self.client.queue_prompt(
                self.graph,
                client_id=self.events.client_id,
                prompt_id=self.prompt_id,
                extra_data=self.extra_data,
            )
            if queued.node_errors:
                # Some outputs failed validation and ComfyUI runs the others: the client would
                # get fewer outputs than its graph asks for. Stop what was queued, then say why.
                self.stop()
                raise rejected_prompt_error(queued.model_dump())
            try:
                history = self._follow(deadline)
            except JobTimeout:
                raise
            except BaseException:
                # Cancelled or broken while ComfyUI still works on it: do not leave it running.
                self.stop()
                raise
            if history is None:
                where = self._progress.describe(self.graph)
                self.stop()
                raise JobTimeout(
                    f"the job ran past its time limit of {timeout_s:g} s and was stopped "
                    f"({_where_text(where)}); raise timeout_s or JOB_TIMEOUT_S if it needs longer",
                    {"timeout_s": timeout_s, **where},
                )
        finally:
            self._subscription.close()
        started = self._progress.started_at
        return RunOutcome(
            prompt_id=self.prompt_id,
            history=_raise_for_failure(history, self.graph),
            node_ms=dict(self._progress.node_ms),
            ws_images=self._progress.ws_images,
            queued_ms=round(((started or queued_at) - queued_at) * 1000, 1),
            execution_ms=_execution_ms(history),
        )

    def stop(self) -> None:
        """Take our prompt off the queue, or interrupt it if running, and wait until it ends."""
        try:
            queue = self.client.queue()
            pending = {_queue_item_id(item) for item in queue.get("queue_pending", [])}
            running = {_queue_item_id(item) for item in queue.get("queue_running", [])}
            if self.prompt_id in pending:
                self.client.delete_from_queue([self.prompt_id])
                return
            if self.prompt_id in running:
                self.client.interrupt(self.prompt_id)
                self._wait_until_gone(time.monotonic() + STOP_GRACE_S)
        except ComfyUIUnavailable as exc:
            log.warning("could not stop prompt %s: %s", self.prompt_id, exc.message)

    # --- following ------------------------------------------------------------------------
    def _subscribe(self) -> Subscription:
        try:
            return self.events.subscribe(self.prompt_id)
        except ComfyUIUnavailable:
            self._health_check()  # a dead child says more than a refused connection
            raise

    def _follow(self, deadline: float) -> HistoryEntry | None:
        """The history entry once the run ends, or None when the deadline passes first."""
        while True:
            if self._cancelled.is_set():
                raise JobCancelled("the job was cancelled", self._progress.describe(self.graph))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            assert self._subscription is not None
            try:
                message = self._subscription.receive(min(remaining, SILENCE_POLL_S))
            except ConnectionLost as exc:
                # The hub reconnects; what we missed, the history will tell.
                log.warning("prompt %s: %s", self.prompt_id, exc)
                self._progress.missed_events = True
                message = None
            if message is None:
                # Silence: either a long node, or events we will never see. The history says.
                self._health_check()
                history = self.client.history(self.prompt_id)
                if history is not None:
                    return history
                continue
            if isinstance(message, BinaryFrame):
                if self._progress.current_node is not None:
                    self._progress.ws_images.append((self._progress.current_node, message))
                continue
            if message.prompt_id not in (None, self.prompt_id):
                continue
            self._progress.on_event(message)
            self._on_event(message)
            if self._progress.ended:
                return self._progress.as_history() or self._read_history(deadline)

    def _read_history(self, deadline: float) -> HistoryEntry | None:
        # A failed run, or one whose events we partly missed: ComfyUI's own record decides.
        # It is written before the final `executing`, so the loop only guards against a
        # ComfyUI that differs.
        delay = 0.01
        while time.monotonic() < deadline:
            history = self.client.history(self.prompt_id)
            if history is not None:
                return history
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        return None

    def _wait_until_gone(self, until: float) -> None:
        while time.monotonic() < until:
            try:
                message = self._subscription.receive(0.2) if self._subscription else None
            except ConnectionLost:
                message = None
            if isinstance(message, ComfyEvent) and message.prompt_id == self.prompt_id:
                self._progress.on_event(message)
                if self._progress.ended:
                    return
            if message is None and self.client.history(self.prompt_id) is not None:
                return


def _queue_item_id(item: Any) -> str | None:
    # Queue items are [number, prompt_id, prompt, extra_data, outputs].
    return item[1] if isinstance(item, list) and len(item) > 1 else None


def _execution_ms(history: HistoryEntry) -> float:
    start = history.message("execution_start")
    end = (
        history.message("execution_success")
        or history.message("execution_error")
        or history.message("execution_interrupted")
    )
    if start and end and "timestamp" in start and "timestamp" in end:
        return float(end["timestamp"] - start["timestamp"])
    return 0.0


def _raise_for_failure(history: HistoryEntry, graph: dict[str, Any]) -> HistoryEntry:
    error = history.message("execution_error")
    if error is not None:
        raise execution_error(error)
    interrupted = history.message("execution_interrupted")
    if interrupted is not None:
        node = interrupted.get("node_id")
        raise ExecutionFailed(
            f"ComfyUI interrupted the run at node {node} ({interrupted.get('node_type')}): "
            "something other than this job stopped it",
            {"node_id": node, "class_type": interrupted.get("node_type")},
        )
    if history.status.status_str == "error":
        raise ExecutionFailed("ComfyUI reports the run failed without saying why", [])
    return history


def execution_error(data: dict[str, Any]) -> ExecutionFailed:
    """The error for ComfyUI's `execution_error` message (from the websocket or history)."""
    node_id = str(data.get("node_id"))
    node_type = data.get("node_type")
    exception_type = data.get("exception_type", "Exception")
    message = str(data.get("exception_message", "")).strip()
    traceback = [line.rstrip() for line in data.get("traceback", [])][-_TRACEBACK_LINES:]
    first_line = message.splitlines()[0] if message else ""
    summary = f"node {node_id} ({node_type}) failed: {exception_type}: {first_line}".rstrip(": ")
    if is_out_of_memory(exception_type, message):
        summary += (
            "; the GPU ran out of memory: use a smaller size or batch, or start ComfyUI with "
            "COMFYUI_ARGS=--lowvram"
        )
    return ExecutionFailed(
        summary,
        {
            "node_id": node_id,
            "class_type": node_type,
            "exception_type": exception_type,
            "exception_message": message,
            "traceback": traceback,
        },
    )


def is_out_of_memory(exception_type: str, message: str) -> bool:
    return "OutOfMemory" in exception_type or "out of memory" in message.lower()


def _where_text(where: dict[str, Any]) -> str:
    if where.get("state") == "queued":
        return "it had not started: ComfyUI was busy"
    if "node" not in where:
        return f"{len(where['nodes_done'])} nodes done"
    text = f"at node {where['node']} ({where.get('class_type')})"
    if "step" in where:
        text += f", step {where['step']} of {where['max']}"
    return text
