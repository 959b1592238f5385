"""Property tests of the converter (issue 22): whatever it is given, mutated real templates or
generated structures, it answers with a graph or a `ConversionError`, never anything else, and
within a time budget per example (hypothesis' deadline).

The strategies live here so they grow with the converter: a new structure it learns to read
belongs in `_node`/`generated_workflow`, a new way to break one in `_mutate`. Runs are
derandomized and keep no example database, so CI sees the same examples every time.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comfy_runtime.ui_format import ConversionError, count_nodes, to_api

HERE = Path(__file__).parent
OBJECT_INFO: dict[str, Any] = json.loads((HERE / "object_info.json").read_text(encoding="utf-8"))
# The smaller recordings (every kind of structure is among them), to keep examples quick.
TEMPLATES = {
    path.stem: json.loads(path.read_text(encoding="utf-8"))["workflow"]
    for path in sorted((HERE / "recordings").glob("*.json"))
    if path.name != "index.json" and path.stat().st_size < 40_000
}
MAX_NODES = 2000
# Newer frontends turn group nodes into subgraphs (issue 24): their recorded group cases.
NEWER_INFO: dict[str, Any] = json.loads(
    (HERE / "recordings-1.49.6" / "object_info.json").read_text(encoding="utf-8"))
GROUP_CASES = {
    path.stem: json.loads(path.read_text(encoding="utf-8"))["workflow"]
    for path in sorted((HERE / "recordings-1.49.6").glob("handmade_group_*.json"))
}

# FUZZ_EXAMPLES=5000 FUZZ_RANDOM=1 digs deeper, off CI.
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")), deadline=3000,
                derandomize=not os.environ.get("FUZZ_RANDOM"), database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["%SaveImage.filename_prefix%", "%date:yyyy%", "s0", "-10", "workflow>G",
                     "PrimitiveNode", "Reroute", "{a|b}", "*"]),
    st.lists(st.integers(-3, 5), max_size=6), st.dictionaries(st.text(max_size=4),
                                                              st.integers(), max_size=3),
)


def _places(value: Any, found: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key) in `value`, without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        pairs = item.items() if isinstance(item, dict) else \
            enumerate(item) if isinstance(item, list) else ()
        for key, child in pairs:
            found.append((item, key))
            stack.append(child)
    return found


@st.composite
def mutated_template(draw: st.DrawFn, sources: dict[str, Any] | None = None) -> dict[str, Any]:
    sources = TEMPLATES if sources is None else sources
    workflow = copy.deepcopy(sources[draw(st.sampled_from(sorted(sources)))])
    for _ in range(draw(st.integers(1, 4))):
        places = _places(workflow, [])
        if not places:
            break
        container, key = draw(st.sampled_from(places))
        action = draw(st.sampled_from(["junk", "junk", "delete", "copy", "grow"]))
        if action == "junk":
            container[key] = draw(JUNK)
        elif action == "delete":
            del container[key]
        elif action == "copy":  # a value from elsewhere in the same workflow: ids, links, nodes
            other, other_key = draw(st.sampled_from(places))
            container[key] = copy.deepcopy(other[other_key])
        elif isinstance(container[key], list):
            container[key] = container[key] * draw(st.integers(2, 50))
    return workflow


_TYPES = ["EmptyLatentImage", "SaveImage", "EmptyImage", "ImageInvert", "PrimitiveNode",
          "Reroute", "Note"]
_OUTPUTS = {"EmptyLatentImage": "LATENT", "EmptyImage": "IMAGE", "ImageInvert": "IMAGE",
            "PrimitiveNode": "INT", "Reroute": "*"}
_INPUTS = {"SaveImage": [("images", "IMAGE")], "ImageInvert": [("image", "IMAGE")],
           "Reroute": [("", "*")], "EmptyImage": [("width", "INT")]}


@st.composite
def _graph(draw: st.DrawFn, types: list[str], link_base: int) -> dict[str, Any]:
    """Nodes of `types`, linked at random, links table and slots in agreement (mostly)."""
    count = draw(st.integers(0, 8))
    nodes = []
    for index in range(count):
        node_type = draw(st.sampled_from(types))
        out = _OUTPUTS.get(node_type)
        node = {"id": index + 1, "type": node_type, "mode": draw(st.sampled_from([0, 0, 2, 4])),
                "inputs": [{"name": n, "type": t, "link": None} for n, t in
                           _INPUTS.get(node_type, [])],
                "outputs": [{"name": out, "type": out, "links": []}] if out else []}
        if draw(st.booleans()):
            node["widgets_values"] = draw(st.lists(JUNK, max_size=4))
        nodes.append(node)
    links = []
    for node in nodes:
        for slot, item in enumerate(node["inputs"]):
            sources = [n for n in nodes if n["outputs"] and n is not node]
            if sources and draw(st.booleans()):
                source = draw(st.sampled_from(sources))
                link_id = link_base + len(links) + 1
                item["link"] = link_id
                source["outputs"][0]["links"].append(link_id)
                links.append([link_id, source["id"], 0, node["id"], slot, item["type"]])
    if links and draw(st.integers(0, 4)) == 0:
        links[draw(st.integers(0, len(links) - 1))][draw(st.integers(0, 5))] = draw(JUNK)
    return {"nodes": nodes, "links": links}


@st.composite
def generated_workflow(draw: st.DrawFn) -> dict[str, Any]:
    """Subgraphs using each other (fan-out, nesting, cycles), group nodes, primitives."""
    n_defs = draw(st.integers(0, 4))
    sub_ids = [f"s{i}" for i in range(n_defs)]
    types = _TYPES + sub_ids + ["workflow>G"] * draw(st.integers(0, 1))
    subgraphs = []
    for index, sub_id in enumerate(sub_ids):
        inner = draw(_graph(types, 1000 * (index + 1)))
        for node in inner["nodes"]:
            if node["type"] == "workflow>G":
                node["type"] = "Note"  # group nodes inside subgraphs are refused anyway
        subgraphs.append({"id": sub_id, "name": sub_id, "inputs": [], "outputs": [], **inner})
    workflow = {"version": 0.4, **draw(_graph(types, 0)),
                "definitions": {"subgraphs": subgraphs}}
    members = [{"type": draw(st.sampled_from(["EmptyLatentImage", "EmptyImage"])),
                "widgets_values": [64, 64, 1]} for _ in range(draw(st.integers(0, 6)))]
    workflow["extra"] = {"groupNodes": {"G": {"nodes": members, "links": [], "external": []}}}
    return workflow


def _converts_or_refuses(workflow: Any, object_info: dict[str, Any] | None = None,
                         frontend: str = "1.27.10") -> None:
    try:
        out = to_api(workflow, object_info or OBJECT_INFO, max_nodes=MAX_NODES, frontend=frontend)
    except ConversionError:
        return
    assert isinstance(out, dict)
    assert len(out) <= count_nodes(workflow) <= MAX_NODES
    json.dumps(out, allow_nan=True)  # plain JSON values only


@FUZZ
@given(mutated_template())
def test_a_mutated_template_converts_or_is_refused(workflow: dict[str, Any]) -> None:
    _converts_or_refuses(workflow)


@FUZZ
@given(generated_workflow())
def test_a_generated_workflow_converts_or_is_refused(workflow: dict[str, Any]) -> None:
    _converts_or_refuses(workflow)


@FUZZ
@given(mutated_template(GROUP_CASES))
def test_a_mutated_group_node_converts_or_is_refused_by_a_newer_frontend(
        workflow: dict[str, Any]) -> None:
    _converts_or_refuses(workflow, NEWER_INFO, "1.49.6")


@FUZZ
@given(generated_workflow())
def test_a_generated_workflow_converts_or_is_refused_by_a_newer_frontend(
        workflow: dict[str, Any]) -> None:
    _converts_or_refuses(workflow, NEWER_INFO, "1.49.6")


@settings(FUZZ, max_examples=min(FUZZ.max_examples, 60))
@given(st.integers(1, 40), st.integers(1, 12), st.sampled_from(["EmptyLatentImage", "SaveImage"]))
def test_any_nesting_is_counted_before_it_is_built(levels: int, fanout: int, leaf: str) -> None:
    from tests.ui_format.hostile_shapes import expanded_size, nested_subgraphs

    workflow = nested_subgraphs(levels, fanout, leaf)
    assert count_nodes(workflow) == min(expanded_size(levels, fanout), 10**12)
    _converts_or_refuses(workflow)
