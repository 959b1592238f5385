"""Which recorded frontend the converter follows, and inputs it must refuse on every frontend.

The nearest recorded frontend is followed for any version a ComfyUI pins, and an input kind
the converter does not reproduce (ComfyUI's V3 kinds, unknown widget types) is refused naming
the node, the input and the kind, under each frontend: a different graph is never the answer.
Real definitions: `/object_info` of ComfyUI 0.33.0 (`recordings-1.49.6/object_info.json`).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from comfy_runtime.ui_format import UnsupportedStructure, choose_frontend, to_api
from comfy_runtime.ui_format.frontends import LEGACY, RECORDED
from tests.ui_format.recorded_sets import SETS

OBJECT_INFO_0_33 = SETS[1].object_info


@pytest.fixture(scope="module")
def object_info() -> dict[str, Any]:
    return dict(json.loads(OBJECT_INFO_0_33.read_text(encoding="utf-8")))


@pytest.mark.parametrize(("version", "follows", "recorded"), [
    (None, LEGACY, True), ("1.27.10", "1.27.10", True), ("1.48.7", "1.48.7", True),
    ("1.49.6", "1.48.7", False), ("1.58.1", "1.48.7", False), ("1.30.2", "1.27.10", False),
    ("1.27.2", "1.27.10", False), ("2.0.0", "1.48.7", False), ("nightly", RECORDED[-1], False),
])
def test_the_nearest_recorded_frontend_is_followed(version: str | None, follows: str,
                                                   recorded: bool) -> None:
    choice = choose_frontend(version)
    assert (choice.follows, choice.recorded) == (follows, recorded)
    if recorded:
        assert choice.note() is None
    else:
        assert f"frontend {version}" in (choice.note() or "") and follows in (choice.note() or "")


def _one_node(node_type: str, inputs: list[tuple[str, str]], values: list[Any],
              outputs: list[str]) -> dict[str, Any]:
    return {"version": 0.4, "links": [], "nodes": [
        {"id": 7, "type": node_type, "mode": 0, "widgets_values": values,
         "inputs": [{"name": n, "type": t, "link": None} for n, t in inputs],
         "outputs": [{"name": t, "type": t, "links": []} for t in outputs]}]}


V3_CASES = [
    # a dynamic combo: its nested inputs follow the chosen option
    ("ResizeImageMaskNode", [("input", "IMAGE,MASK")], ["scale dimensions", 512, 512, "center",
                                                        "area"], ["IMAGE,MASK"],
     "input", "COMFY_MATCHTYPE_V3"),
    # a list of sockets that grows as they are linked
    ("BatchImagesNode", [("images.image0", "IMAGE")], [], ["IMAGE"],
     "images", "COMFY_AUTOGROW_V3"),
]


@pytest.mark.parametrize("frontend", RECORDED)
@pytest.mark.parametrize(("node_type", "inputs", "values", "outputs", "name", "kind"), V3_CASES,
                         ids=[c[0] for c in V3_CASES])
def test_a_v3_input_kind_is_refused_naming_node_input_and_kind(
        object_info: dict[str, Any], frontend: str, node_type: str,
        inputs: list[tuple[str, str]], values: list[Any], outputs: list[str], name: str,
        kind: str) -> None:
    with pytest.raises(UnsupportedStructure) as caught:
        to_api(_one_node(node_type, inputs, values, outputs), object_info, frontend=frontend)
    [detail] = caught.value.details
    assert (detail["node_id"], detail["class_type"]) == ("7", node_type)
    assert f"input '{name}' is of kind {kind}" in detail["problem"]


def test_every_v3_kind_in_real_definitions_is_refused(object_info: dict[str, Any]) -> None:
    """Each class of ComfyUI 0.33.0 with a V3 input, on its own in a workflow, is refused."""
    v3 = sorted(name for name, info in object_info.items() for section in ("required", "optional")
                for raw in ((info.get("input") or {}).get(section) or {}).values()
                if isinstance(raw, list) and isinstance(raw[0], str)
                and raw[0].startswith("COMFY_") and raw[0].endswith("_V3"))
    assert len(set(v3)) > 100
    for node_type in sorted(set(v3)):
        for frontend in RECORDED:
            with pytest.raises(UnsupportedStructure, match="which the converter does not"):
                to_api(_one_node(node_type, [], [], []), object_info, frontend=frontend)


def test_an_unknown_widget_type_is_refused(object_info: dict[str, Any]) -> None:
    info = {"Painter": {"input": {"required": {
        "canvas": ["STRING", {"widgetType": "PAINTER", "default": ""}]}}, "output": ["IMAGE"]}}
    with pytest.raises(UnsupportedStructure, match="STRING shown as a PAINTER widget"):
        to_api(_one_node("Painter", [], [""], ["IMAGE"]), info)


def test_a_muted_node_of_an_unknown_kind_is_no_obstacle(object_info: dict[str, Any]) -> None:
    workflow = _one_node("BatchImagesNode", [], [], ["IMAGE"])
    workflow["nodes"][0]["mode"] = 2
    assert to_api(workflow, object_info, frontend="1.48.7") == {}
