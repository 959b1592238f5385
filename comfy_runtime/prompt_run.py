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

from .client import ComfyClient, HistoryEntry
from .errors import ComfyUIUnavailable, JobCancelled, JobTimeout
from .event_hub import EventHub, Subscription
from .events import BinaryFrame, ComfyEvent, ConnectionLost
from .prompt_errors import raise_for_failure, rejected_prompt_error
from .run_record import RunRecord, where_text

log = logging.getLogger(__name__)

EventCallback = Callable[[ComfyEvent], None]
HealthCheck = Callable[[], None]

# How long the websocket may stay silent before we look at the history instead.
SILENCE_POLL_S = 1.0
# How long an interrupted prompt may take to wind down before we stop waiting for it.
STOP_GRACE_S = 15.0


@dataclass
class RunOutcome:
    prompt_id: str
    history: HistoryEntry
    node_ms: dict[str, float] = field(default_factory=dict)
    ws_images: list[tuple[str, BinaryFrame]] = field(default_factory=list)
    queued_ms: float = 0.0
    execution_ms: float = 0.0


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
        self._progress = RunRecord()
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
                    f"({where_text(where)}); raise timeout_s or JOB_TIMEOUT_S if it needs longer",
                    {"timeout_s": timeout_s, **where},
                )
        finally:
            self._subscription.close()
        started = self._progress.started_at
        return RunOutcome(
            prompt_id=self.prompt_id,
            history=raise_for_failure(history),
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
