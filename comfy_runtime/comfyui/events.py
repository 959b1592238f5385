"""ComfyUI's event protocol, decoded once into types every consumer switches on.

ComfyUI's websocket sends text frames `{"type", "data"}` and binary frames
`[u32 event][u32 format][bytes]` (previews, or SaveImageWebsocket's outputs); its history keeps
the run's status messages in the same `(type, data)` form. Both are decoded here, and only here:

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
    ├── PreviewFrame ......... (binary)                 an image sent over the socket
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
    """An image sent over the websocket; it names no prompt (the running one sent it)."""

    event: int
    mime_type: str | None
    data: bytes


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


def decode_binary(payload: bytes, received_at: float) -> PreviewFrame | None:
    if len(payload) < 8:
        return None
    event, image_format = struct.unpack(">II", payload[:8])
    return PreviewFrame(event=event, mime_type=_BINARY_FORMATS.get(image_format),
                        data=payload[8:], received_at=received_at)
