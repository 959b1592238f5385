"""Property tests of workflow files (issue 22): any bytes sent as a workflow file, mutated
JSON files and images ComfyUI wrote among them, become a graph or a `JobError` (never another
exception), within a time budget per example; an editor workflow from a file then converts or
is refused the same way. Strategies live here, to grow with `workflow_source`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comfy_runtime import ui_format
from comfy_runtime.contract import EditorWorkflow
from comfy_runtime.errors import JobError
from comfy_runtime.workflow_source import graph_in_file
from tests.ui_format import hostile_shapes as shapes

UI = Path(__file__).parent / "ui_format"
OBJECT_INFO = json.loads((UI / "object_info.json").read_text(encoding="utf-8"))
MAX_BYTES = 256 * 1024
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")), deadline=3000,
                derandomize=not os.environ.get("FUZZ_RANDOM"), database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_SMALL = sorted(p for p in (UI / "recordings").glob("*.json")
                if p.name != "index.json" and p.stat().st_size < 20_000)
SEEDS = [json.dumps(json.loads(p.read_text(encoding="utf-8"))["workflow"]).encode()
         for p in _SMALL[:12]]
SEEDS += [(UI / "comfyui_written.png").read_bytes(),
          shapes.png(16, 16, {"workflow": SEEDS[0].decode()}),
          json.dumps({"1": {"class_type": "EmptyImage", "inputs": {"width": 8}}}).encode(),
          shapes.deep_json(3000), shapes.empty_lists_json(4096)]


@st.composite
def mutated_file(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 5))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["byte", "cut", "insert", "token"]))
        if action == "byte":
            data[at] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[at:at + draw(st.integers(1, 200))]
        elif action == "insert":
            data[at:at] = draw(st.binary(max_size=16))
        else:  # JSON tokens that have broken parsers: huge numbers, nesting, odd literals
            data[at:at] = draw(st.sampled_from([b"1e309", b"-1e309", b"NaN", b"[" * 50,
                                                b'{"nodes":7}', b"9" * 5000, b"\\ud800"]))
    return bytes(data)


def _read_then_convert(data: bytes) -> None:
    try:
        found = graph_in_file(data, MAX_BYTES)
    except JobError:
        return
    if isinstance(found, EditorWorkflow):
        try:
            ui_format.to_api(found.raw(), OBJECT_INFO, max_nodes=2000)
        except ui_format.ConversionError:
            pass
    else:
        assert isinstance(found, dict)


@FUZZ
@given(mutated_file())
def test_a_mutated_workflow_file_gives_a_graph_or_a_job_error(data: bytes) -> None:
    _read_then_convert(data)


@FUZZ
@given(st.binary(max_size=512).map(lambda b: b"{" + b))
def test_any_bytes_after_a_brace_give_a_graph_or_a_job_error(data: bytes) -> None:
    _read_then_convert(data)


@FUZZ
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) |
                    st.dictionaries(st.sampled_from(["nodes", "links", "definitions", "extra",
                                                     "subgraphs", "id", "type", "inputs",
                                                     "class_type", "1"]), inner, max_size=4),
                    max_leaves=30))
def test_any_json_value_gives_a_graph_or_a_job_error(value: Any) -> None:
    _read_then_convert(json.dumps({"nodes": [], "x": value}).encode())
    _read_then_convert(json.dumps(value).encode())
