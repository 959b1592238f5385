"""Access to the recorded exchanges of a real ComfyUI.

They are kept in tests/protocol/, a copy of the team's shared/comfyui-protocol/, so the tests
run from a plain clone; test_protocol_copy.py fails if the copy and the original drift apart.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

RECORDINGS = Path(__file__).resolve().parent / "protocol"
SHARED_ORIGINAL = Path(__file__).resolve().parents[2] / "shared" / "comfyui-protocol"


@cache
def recording(name: str) -> Any:
    return json.loads((RECORDINGS / name).read_text())


def history_entry(name: str) -> dict[str, Any]:
    """The single history entry of a recorded run."""
    (entry,) = recording(name)["history"].values()
    return entry
