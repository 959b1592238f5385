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
from typing import Any

from ..errors import ComfyUIUnavailable, JobCancelled, JobTimeout
from .client import ComfyClient, PromptRejected
from .diagnosis import rejected_prompt_error, run_failure
from .event_hub import ConnectionLost, EventHub, Subscription
from .events import Event
from .run_record import FinishedRun, RunRecord, where_text

log = logging.getLogger(__name__)

EventCallback = Callable[[Event], None]
HealthCheck = Callable[[], None]

# How long the websocket may stay silent before we look at the history instead.
SILENCE_POLL_S = 1.0
# How long an interrupted prompt may take to wind down before it counts as stuck (settings:
# STOP_GRACE_S). ComfyUI looks for interrupts only between steps and nodes, so a long model
# load or VAE decode can take a while.
DEFAULT_STOP_GRACE_S = 15.0


class PromptRun:
    """One prompt on one ComfyUI, from queueing to its end."""

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
        stop_grace_s: float = DEFAULT_STOP_GRACE_S,
    ) -> None:
        self.client = client
        self.graph = graph
        self.events = events
        self.prompt_id = prompt_id
        self.extra_data = extra_data
        self._on_event = on_event or (lambda event: None)
        self._health_check = health_check or (lambda: None)
        self._record = RunRecord()
        self._subscription: Subscription | None = None
        self._cancelled = threading.Event()
        self.stop_grace_s = stop_grace_s
        self.stuck = False  # interrupted, yet still running after the grace

    def cancel(self) -> None:
        """Ask the thread in `run` to stop the prompt and give up (thread-safe)."""
        self._cancelled.set()

    def run(self, deadline: float, timeout_s: float) -> FinishedRun:
        """Queue and follow; `deadline` is on the monotonic clock. Raises the run's failure."""
        self._subscription = self._subscribe()
        try:
            queued_at = time.monotonic()
            self._queue()
            finished = self._follow_or_stop(deadline, timeout_s)
        finally:
            self._subscription.close()
        failure = run_failure(finished)
        if failure is not None:
            raise failure
        finished.node_ms = dict(self._record.node_ms)
        finished.frames = self._record.frames
        started = self._record.started_at
        finished.queued_ms = round(((started or queued_at) - queued_at) * 1000, 1)
        return finished

    def _queue(self) -> None:
        try:
            queued = self.client.queue_prompt(
                self.graph,
                client_id=self.events.client_id,
                prompt_id=self.prompt_id,
                extra_data=self.extra_data,
            )
        except PromptRejected as rejected:
            raise rejected_prompt_error(rejected.body) from None
        if queued.node_errors:
            # Some outputs failed validation and ComfyUI runs the others: the client would
            # get fewer outputs than its graph asks for. Stop what was queued, then say why.
            self.stop()
            raise rejected_prompt_error(queued.model_dump())

    def _follow_or_stop(self, deadline: float, timeout_s: float) -> FinishedRun:
        try:
            finished = self._follow(deadline)
        except BaseException:
            # Cancelled or broken while ComfyUI still works on it: do not leave it running.
            self.stop()
            raise
        if finished is None:
            where = self._record.describe(self.graph)
            stopped = self.stop()
            how = "was stopped" if stopped else (
                f"ComfyUI did not stop it within {self.stop_grace_s:g} s (a node that does not "
                "look for interrupts); the worker cleans up once it ends, and restarts a "
                "ComfyUI that stays stuck")
            raise JobTimeout(
                f"the job ran past its time limit of {timeout_s:g} s and {how} "
                f"({where_text(where)}); raise timeout_s or JOB_TIMEOUT_S if it needs longer",
                {"timeout_s": timeout_s, "phase": "running", "stopped": stopped, **where},
            )
        return finished

    def stop(self) -> bool:
        """Take our prompt off the queue, or interrupt it if running, and wait until it ends.

        False (and `stuck` set) when it still runs after the grace. ComfyUI's jobs route
        cancels this prompt and no other; without it, /queue says where it is and /interrupt
        (naming it) stops it.
        """
        try:
            cancelled = self.client.cancel(self.prompt_id)
            if cancelled is None:
                queue = self.client.queue()
                if self.prompt_id in queue.pending:
                    self.client.delete_from_queue([self.prompt_id])
                    return True
                if self.prompt_id not in queue.running:
                    return True
                self.client.interrupt(self.prompt_id)
            elif not cancelled:
                return True  # it had ended already
            if not self._wait_until_gone(time.monotonic() + self.stop_grace_s):
                log.error("prompt %s still runs %.0f s after an interrupt", self.prompt_id,
                          self.stop_grace_s)
                self.stuck = True
                return False
        except ComfyUIUnavailable as exc:
            log.warning("could not stop prompt %s: %s", self.prompt_id, exc.message)
        return True

    # --- following ------------------------------------------------------------------------
    def _subscribe(self) -> Subscription:
        try:
            return self.events.subscribe(self.prompt_id)
        except ComfyUIUnavailable:
            self._health_check()  # a dead child says more than a refused connection
            raise

    def _follow(self, deadline: float) -> FinishedRun | None:
        """The finished run, or None when the deadline passes first."""
        assert self._subscription is not None
        while True:
            if self._cancelled.is_set():
                raise JobCancelled("the job was cancelled", self._record.describe(self.graph))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                event = self._subscription.receive(min(remaining, SILENCE_POLL_S))
            except ConnectionLost as exc:
                # The hub reconnects; what we missed, the history will tell.
                log.warning("prompt %s: %s", self.prompt_id, exc)
                self._record.missed_events = True
                event = None
            if event is None:
                # Silence: either a long node, or events we will never see. The history says.
                self._health_check()
                finished = self._history()
                if finished is not None:
                    return finished
                continue
            self._record.on_event(event)
            self._on_event(event)
            if self._record.ended:
                return self._record.finished(self.prompt_id) or self._read_history(deadline)

    def _history(self) -> FinishedRun | None:
        entry = self.client.history(self.prompt_id)
        return None if entry is None else FinishedRun.from_history(self.prompt_id, entry)

    def _read_history(self, deadline: float) -> FinishedRun | None:
        # A failed run, or one whose events we partly missed: ComfyUI's own record decides.
        # It is written before the final `executing`, so the loop only guards against a
        # ComfyUI that differs.
        delay = 0.01
        while time.monotonic() < deadline:
            finished = self._history()
            if finished is not None:
                return finished
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        return None

    def _wait_until_gone(self, until: float) -> bool:
        while time.monotonic() < until:
            try:
                event = self._subscription.receive(0.2) if self._subscription else None
            except ConnectionLost:
                event = None
            if event is not None:
                self._record.on_event(event)
                if self._record.ended:
                    return True
            elif self.client.prompt_state(self.prompt_id) == "ended":
                return True  # a dequeued prompt never ends with an event or a history
        return False


def wait_until_ended(client: ComfyClient, prompt_id: str, timeout_s: float) -> bool:
    """True once ComfyUI neither runs nor queues `prompt_id`; False if it still does after
    `timeout_s`. A ComfyUI that cannot be asked runs nothing: that counts as ended."""
    until = time.monotonic() + timeout_s
    while True:
        try:
            if client.prompt_state(prompt_id) == "ended":
                return True
        except ComfyUIUnavailable:
            return True
        if time.monotonic() >= until:
            return False
        time.sleep(0.25)
