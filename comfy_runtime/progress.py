"""Turn ComfyUI's events into small progress reports, a few per second at most.

A report is `{"status", "node", "class_type", "step", "max", "percent"}`; `percent` is of the
whole graph: nodes done plus the running node's share, over the nodes that will run. An API
node's progress text adds `text`. A job that asked for `previews` also gets, now and then,
`preview`: the sampler's newest frame, named as the Comfy API v2 names its preview events
(`{"node_id", "step", "steps", "content_type", "data_base64"}`), or `previews_off` saying why
none will come.

Each report costs the platform's SDK a thread and an HTTP request, so events are coalesced:
at most one report per `min_interval_s` (4 a second by default), whatever ComfyUI sends, plus
one with the final state when the run ends (so a client sees 100%). A preview rides in a
report that is sent anyway, at most one per the job's `interval_s`, and only then is its
frame decoded, shrunk and encoded as JPEG: a frame nobody will see costs nothing. The reporter
runs on the thread that follows the run, never on the event loop.
"""

from __future__ import annotations

import base64
import io
import logging
import time
from collections.abc import Callable
from typing import Any

from PIL import Image

from .comfyui.events import (
    Cached,
    Event,
    NodeStarted,
    PreviewFrame,
    Progress,
    ProgressText,
    RunEnded,
)
from .comfyui.wire import preview_method
from .contract import PreviewOptions

log = logging.getLogger(__name__)

ProgressSink = Callable[[dict[str, Any]], None]

# A frame past these is dropped unread: ComfyUI draws previews of at most --preview-size.
MAX_FRAME_BYTES = 16 * 1024 * 1024
MAX_FRAME_PIXELS = 4096 * 4096
_JPEG_QUALITY = 85
_NOT_PREVIEWS = {"SaveImageWebsocket"}  # its frames are outputs (outputs/collect.py)


def previews_off_reason(system_stats: Any) -> str | None:
    """Why a job that asks for previews gets none from this ComfyUI (None: it draws them)."""
    if preview_method(system_stats) != "none":
        return None
    return ("ComfyUI runs without a preview method (--preview-method none or not given), so it "
            "draws no previews; the worker launches it with PREVIEW_METHOD (default auto)")


def encode_preview(data: bytes, max_size: int) -> bytes | None:
    """A frame as a JPEG whose longest side is at most `max_size`; None when it is not an
    image Pillow reads, or larger than MAX_FRAME_BYTES or MAX_FRAME_PIXELS."""
    if len(data) > MAX_FRAME_BYTES:
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_FRAME_PIXELS:
                return None
            image.draft("RGB", (max_size, max_size))  # a JPEG decodes at a fraction: cheaper
            rgb = image.convert("RGB")
        rgb.thumbnail((max_size, max_size))
        out = io.BytesIO()
        rgb.save(out, "JPEG", quality=_JPEG_QUALITY)
        return out.getvalue()
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


class _Previews:
    """The newest frame of a job that asked for previews, and when one was last sent."""

    def __init__(self, options: PreviewOptions, graph: dict[str, Any]) -> None:
        self.options = options
        self._graph = graph
        self.frame: PreviewFrame | None = None
        self.node: str | None = None
        self.step: tuple[int, int] | None = None  # None: waiting for its progress event
        self._sent_at: float | None = None

    def take(self, frame: PreviewFrame, node: str | None, step: tuple[int, int] | None) -> bool:
        """Keep `frame`; True when it is a preview whose step is known now."""
        if node is None or self._graph.get(node, {}).get("class_type") in _NOT_PREVIEWS:
            return False
        self.frame, self.node = frame, node
        self.step = None if frame.before_its_progress else step
        return self.step is not None

    def on_progress(self, node: str | None, step: tuple[int, int]) -> bool:
        """A type 4 frame gets the step of the progress event that follows it."""
        if self.frame is None or self.step is not None or node != self.node:
            return False
        self.step = step
        return True

    def due(self, now: float) -> dict[str, Any] | None:
        """The preview to send in a report going out at `now`, if one is due."""
        if self.frame is None or self.step is None or self.node is None:
            return None
        if self._sent_at is not None and now - self._sent_at < self.options.interval_s:
            return None
        frame, self.frame = self.frame, None
        jpeg = encode_preview(frame.data, self.options.max_size)
        if jpeg is None:
            log.warning("dropping a preview frame of node %s that is not a readable image "
                        "within the limits", self.node)
            return None
        self._sent_at = now
        return {"node_id": self.node, "step": self.step[0], "steps": self.step[1],
                "content_type": "image/jpeg", "data_base64": base64.b64encode(jpeg).decode()}


class ProgressReporter:
    def __init__(self, graph: dict[str, Any], sink: ProgressSink, *, min_interval_s: float = 0.25,
                 previews: PreviewOptions | None = None, previews_off: str | None = None):
        self._graph = graph
        self._sink = sink
        self._min_interval_s = min_interval_s
        self._last_sent: float | None = None
        self._to_run = len(graph)
        self._done: set[str] = set()
        self._node: str | None = None
        self._step: tuple[int, int] | None = None
        self._text: str | None = None
        self._previews = _Previews(previews, graph) if previews and not previews_off else None
        self._previews_off = previews_off if previews else None

    def __call__(self, event: Event) -> None:
        if not self._update(event):
            return
        now = time.monotonic()
        due = self._last_sent is None or now - self._last_sent >= self._min_interval_s
        if due or isinstance(event, RunEnded):
            self._last_sent = now
            report = self.snapshot()
            preview = self._previews.due(now) if self._previews and due else None
            if preview is not None:
                report["preview"] = preview
            self._sink(report)

    def _update(self, event: Event) -> bool:
        """Take in `event`; True when it is news worth a report."""
        if isinstance(event, Cached):
            self._to_run = max(1, len(self._graph) - len(event.nodes))
        elif isinstance(event, (NodeStarted, RunEnded)):
            if self._node is not None:
                self._done.add(self._node)
            self._node = event.node if isinstance(event, NodeStarted) else None
            self._step = None
            self._text = None
        elif isinstance(event, Progress):
            self._step = (event.value, event.max)
            if self._previews is not None:
                self._previews.on_progress(event.node or self._node, self._step)
        elif isinstance(event, ProgressText):
            self._text = event.text
        elif isinstance(event, PreviewFrame) and self._previews is not None:
            return self._previews.take(event, event.node_id or self._node, self._step)
        else:
            return False
        return True

    def snapshot(self) -> dict[str, Any]:
        share = 0.0
        if self._step and self._step[1]:
            share = self._step[0] / self._step[1]
        done = len(self._done) + share
        report: dict[str, Any] = {
            "status": "finishing" if self._node is None and self._done else "running",
            "node": self._node,
            "class_type": self._graph.get(self._node, {}).get("class_type") if self._node else None,
            "percent": round(min(100.0, 100.0 * done / self._to_run), 1),
        }
        if self._step:
            report["step"], report["max"] = self._step
        if self._text is not None:
            report["text"] = self._text
        if self._previews_off is not None:
            report["previews_off"] = self._previews_off
        return report
