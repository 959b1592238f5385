"""Fault switches of the ComfyUI double.

Tests flip these while the server runs, so every consumer reads them at the moment it acts
instead of copying them at start-up.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

AS_RECORDED = "as recorded"
"""`Faults.required_frontend_version`'s default: the version played answers as recorded."""


@dataclass
class Faults:
    """Everything defaults to off: a double with default faults behaves like ComfyUI."""

    step_delay_s: float = 0.0
    """Each sampler step (and each node) sleeps this long; interruptible."""
    node_delay_s: float = 0.0
    """Every node sleeps this long before running; interruptible."""
    hang: bool = False
    """The first node that runs never finishes on its own; only /interrupt ends the run."""
    busy_class: str | None = None
    """Nodes of this class_type work `busy_s` without looking for interrupts, as a model load or
    a VAE decode does in ComfyUI (it checks only between steps and nodes): an /interrupt that
    arrives meanwhile takes effect when the work is done."""
    busy_s: float = 0.0
    execution_error_class: str | None = None
    """Nodes of this class_type raise RuntimeError while running."""
    node_errors_on_200: bool = False
    """POST /prompt answers 200 with a non-empty node_errors for one output node."""
    http_500: set[str] = field(default_factory=set)
    """Route paths ("/prompt", "/view", "/history" ...) that answer 500."""
    malformed_json: set[str] = field(default_factory=set)
    """Route paths that answer 200 with a body that is not JSON."""
    view_404: bool = False
    """/view answers 404 even for files that exist."""
    response_delay_s: float = 0.0
    """Every HTTP response (not the websocket) is delayed this long."""
    required_frontend_version: str | None = AS_RECORDED
    """The frontend `/system_stats` says this ComfyUI pins: as the version played recorded it
    (0.3.64: 1.27.10, 0.33.0: 1.48.7), another version, or None for a ComfyUI too old to name
    one (the field is left out)."""
    drop_ws_after: int | None = None
    """Close the prompt's websocket after N per-prompt messages; the run goes on."""
    garbled_ws_text: bool = False
    """Before each per-prompt message, a text frame whose bytes are not UTF-8."""
    no_end: bool = False
    """Never send the final `executing` {node: null}; history is still written."""
    crash_on_prompt: bool = False
    """Die when a prompt starts executing (process: exit code 3; thread: server stops)."""
    cuda_error_class: str | None = None
    """Nodes of this class_type fail like a CUDA fault (an illegal memory access), after which
    a real GPU process is not to be trusted."""
    pause_after_prompt_s: float = 0.0
    """After each prompt ends, the whole server answers nothing this long: ComfyUI collects
    garbage right after a prompt holding its interpreter lock (0.4 s measured with an SD1.5
    checkpoint loaded on the CPU), so its HTTP and websocket side wait too."""
    out_of_memory_class: str | None = None
    """Nodes of this class_type fail like a CUDA out-of-memory error."""

    extra_frames: set[str] = field(default_factory=set)
    """Binary frames sent beside each sampler preview, to the prompt's client: "other_prompt"
    (a type 4 preview naming another prompt, all red), "malformed" (frames that do not parse:
    cut short, a length past the end, metadata that is not JSON, no image, an unknown type),
    "huge" (a type 4 preview whose PNG header claims 30000x30000 pixels), "not_an_image"
    (a type 4 preview whose bytes are no image)."""
    feature_flags_ignored: bool = False
    """Ignore the feature flags clients declare, as a ComfyUI before them did: previews go out
    as type 1 frames that name no prompt."""
    progress_text: str | None = None
    """Sampler stand-ins send this as a type 3 progress text frame at every step, as API nodes
    do."""

    @classmethod
    def from_json(cls, text: str) -> Faults:
        """Build from a JSON object of field values (the COMFY_DOUBLE_FAULTS variable)."""
        raw: dict[str, Any] = json.loads(text) if text.strip() else {}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown fault switches: {sorted(unknown)}")
        for name in ("http_500", "malformed_json", "extra_frames"):
            if name in raw:
                raw[name] = set(raw[name])
        return cls(**raw)

    def matches_route(self, switch: set[str], path: str) -> bool:
        """True when `path` (without the /api prefix) is one of the routes in `switch`.

        "/history" also covers "/history/{id}", so a test can break a whole family at once.
        """
        return any(path == route or path.startswith(route.rstrip("/") + "/") for route in switch)
