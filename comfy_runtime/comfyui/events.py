"""ComfyUI's event protocol, decoded once into types every consumer switches on.

ComfyUI's websocket sends text frames `{"type", "data"}` and binary frames `[u32 event][...]`;
its history keeps the run's status messages in the same `(type, data)` form. Both are decoded
here, and only here. The binary frames of ComfyUI 0.3.64 (`protocol.BinaryEventTypes`):

    1  [u32 format][image]                       a preview, or SaveImageWebsocket's output, for
                                                 a client that did not declare
                                                 `supports_preview_metadata`: no prompt, no node
    3  [u32 n][node id: n bytes][utf-8 text]     progress text from an API node
    4  [u32 n][JSON: n bytes][image]             the same image for a client that did, the JSON
                                                 naming `prompt_id`, `node_id` and `image_type`

A frame of another event type, or one that does not parse, is dropped (None), never raised:

    Event
    ├── ExecutionStarted ..... execution_start          the prompt left the queue
    ├── Cached ............... execution_cached         nodes ComfyUI will not run again
    ├── NodeStarted .......... executing {node: id}     a node began
    ├── RunEnded ............. executing {node: null}   the run is over (history is written)
    ├── Progress ............. progress                 a step of the running node
    ├── NodeExecuted ......... executed                 a node's outputs
    ├── ExecutionSucceeded ... execution_success
    ├── ExecutionError ....... execution_error          a node raised
    ├── Interrupted .......... execution_interrupted
    ├── PreviewFrame ......... (binary 1 and 4)         an image sent over the socket
    ├── ProgressText ......... (binary 3)               a node's progress as text
    └── OtherEvent ........... status, crystools, ...   broadcasts nobody follows

`received_at` is our monotonic clock, for per-node timings. Knows nothing about RunPod.
"""

from __future__ import annotations

import json
import logging
import struct
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

_BINARY_FORMATS = {1: "image/jpeg", 2: "image/png", 3: "image/webp"}
PREVIEW_IMAGE = 1
PROGRESS_TEXT = 3
PREVIEW_WITH_METADATA = 4
_U32 = struct.Struct(">I")


class Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    prompt_id: str | None = None
    received_at: float = 0.0


class ExecutionStarted(Event):
    timestamp: float | None = None


class Cached(Event):
    nodes: list[str] = Field(default_factory=list)


class NodeStarted(Event):
    node: str


class RunEnded(Event):
    pass


class Progress(Event):
    node: str | None = None
    value: int = 0
    max: int = 0


class NodeExecuted(Event):
    node: str
    output: dict[str, Any] = Field(default_factory=dict)


class ExecutionSucceeded(Event):
    timestamp: float | None = None


class ExecutionError(Event):
    node_id: str | None = None
    node_type: str | None = None
    exception_type: str = "Exception"
    exception_message: str = ""
    traceback: list[str] = Field(default_factory=list)
    timestamp: float | None = None


class Interrupted(Event):
    node_id: str | None = None
    node_type: str | None = None
    timestamp: float | None = None


class PreviewFrame(Event):
    """An image sent over the websocket. Type 4 names its prompt and node; type 1 names
    neither (the running prompt's running node sent it)."""

    event: int
    mime_type: str | None
    data: bytes
    node_id: str | None = None

    @property
    def before_its_progress(self) -> bool:
        """ComfyUI sends a type 4 frame just before the `progress` event of its step, and a
        type 1 frame just after it (main.py's progress hook)."""
        return self.event == PREVIEW_WITH_METADATA


class ProgressText(Event):
    """Progress text of a node (ComfyUI's API nodes); it names no prompt."""

    node_id: str
    text: str


class OtherEvent(Event):
    type: str
    data: dict[str, Any] = Field(default_factory=dict)


RunEvent = (
    ExecutionStarted | Cached | NodeStarted | RunEnded | Progress | NodeExecuted
    | ExecutionSucceeded | ExecutionError | Interrupted
)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def decode(kind: str, data: dict[str, Any], received_at: float = 0.0) -> Event:
    """One `(type, data)` message, from the websocket or a history's status messages."""
    common: dict[str, Any] = {"prompt_id": _text(data.get("prompt_id")), "received_at": received_at}
    if kind == "executing":
        node = data.get("node")
        return RunEnded(**common) if node is None else NodeStarted(node=str(node), **common)
    if kind == "execution_start":
        return ExecutionStarted(timestamp=data.get("timestamp"), **common)
    if kind == "execution_cached":
        return Cached(nodes=[str(n) for n in data.get("nodes") or []], **common)
    if kind == "progress":
        return Progress(node=_text(data.get("node")), value=int(data.get("value") or 0),
                        max=int(data.get("max") or 0), **common)
    if kind == "executed" and data.get("node") is not None:
        output = data.get("output")
        return NodeExecuted(node=str(data["node"]),
                            output=output if isinstance(output, dict) else {}, **common)
    if kind == "execution_success":
        return ExecutionSucceeded(timestamp=data.get("timestamp"), **common)
    if kind == "execution_error":
        return _execution_error(data, common)
    if kind == "execution_interrupted":
        return Interrupted(node_id=_text(data.get("node_id")), node_type=_text(data.get("node_type")),
                           timestamp=data.get("timestamp"), **common)
    return OtherEvent(type=kind, data=data, **common)


def _execution_error(data: dict[str, Any], common: dict[str, Any]) -> ExecutionError:
    traceback = data.get("traceback")
    return ExecutionError(
        node_id=_text(data.get("node_id")),
        node_type=_text(data.get("node_type")),
        exception_type=str(data.get("exception_type") or "Exception"),
        exception_message=str(data.get("exception_message") or ""),
        traceback=[str(line) for line in traceback] if isinstance(traceback, list) else [],
        timestamp=data.get("timestamp"),
        **common,
    )


def decode_text(payload: str | bytes, received_at: float) -> Event | None:
    """A websocket text frame; None (and a warning) when it is not ComfyUI's JSON shape."""
    try:
        message = json.loads(payload)
        data = message.get("data") or {}
        if not isinstance(data, dict):
            raise TypeError("data is not an object")
        return decode(str(message["type"]), data, received_at)
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("ignoring a websocket message that is not ComfyUI's JSON shape")
        return None


def decode_binary(payload: bytes, received_at: float) -> PreviewFrame | ProgressText | None:
    """A websocket binary frame; None when it is of no known type or does not parse."""
    try:
        if len(payload) < 8:
            raise ValueError(f"{len(payload)} bytes")
        (event,) = _U32.unpack_from(payload)
        if event == PREVIEW_IMAGE:
            (image_format,) = _U32.unpack_from(payload, 4)
            return _frame(event, _BINARY_FORMATS.get(image_format), payload[8:], received_at)
        head, rest = _sized(payload)
        if event == PROGRESS_TEXT:
            return ProgressText(node_id=head.decode(), text=rest.decode(errors="replace"),
                                received_at=received_at)
        if event == PREVIEW_WITH_METADATA:
            return _metadata_frame(head, rest, received_at)
    except (ValueError, TypeError) as exc:  # UnicodeDecodeError and JSONDecodeError included
        log.warning("dropping a malformed binary websocket frame: %s", exc)
        return None
    log.debug("dropping a binary websocket frame of unknown type %d", event)
    return None


def _sized(payload: bytes) -> tuple[bytes, bytes]:
    """`[u32 event][u32 n][n bytes][rest]` -> (the n bytes, the rest)."""
    (size,) = _U32.unpack_from(payload, 4)
    if 8 + size > len(payload):
        raise ValueError(f"a length of {size} in a frame of {len(payload)} bytes")
    return payload[8:8 + size], payload[8 + size:]


def _metadata_frame(head: bytes, image: bytes, received_at: float) -> PreviewFrame:
    meta = json.loads(head)
    if not isinstance(meta, dict):
        raise TypeError("its metadata is not a JSON object")
    frame = _frame(PREVIEW_WITH_METADATA, _text(meta.get("image_type")), image, received_at)
    return frame.model_copy(update={"prompt_id": _text(meta.get("prompt_id")),
                                    "node_id": _text(meta.get("node_id"))})


def _frame(event: int, mime_type: str | None, data: bytes, received_at: float) -> PreviewFrame:
    if not data:
        raise ValueError("no image")
    return PreviewFrame(event=event, mime_type=mime_type, data=data, received_at=received_at)
