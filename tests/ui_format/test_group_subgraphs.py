"""Legacy group nodes under frontends 1.48.7 and 1.49.6 (issue 24): they become subgraphs on
load, and the converter queues exactly what those frontends recorded, or refuses where the
recording is not what the file means (values in the wrong widgets, a dropped link or mode).

Each shape is built and recorded as `tests/ui_format/README.md` says ("Legacy group nodes");
1.48.7's recordings are in `recordings-1.48.7/recordings.jsonl.gz`, 1.49.6's both there and
as files in `recordings-1.49.6/`, and the two frontends recorded the same graphs.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from comfy_runtime.ui_format import (
    ConversionError,
    NodeDefinitions,
    UnsupportedStructure,
    to_api_with_definitions,
)
from tests.ui_format import hostile_shapes as shapes
from tests.ui_format.recorded_sets import HERE, SETS, same_json, strip_meta

NEWER = [s for s in SETS if s.frontend in ("1.48.7", "1.49.6")]
_MISSING = object()

# "match": exactly the recording. Otherwise the refusal's words, and what the recording shows
# the frontend queueing that the file does not mean: (node, input or "class_type", value).
SHAPES: dict[str, tuple[str, tuple[str, str, Any] | None]] = {
    "group_node": ("lays the group's values out in another order: it queues 1 in 'width'",
                   ("12:9", "batch_size", "bilinear")),
    "group_node_modes": ("runs its members although the group node is bypassed",
                         ("14:12", "image", ["6", 0])),
    "group_primitives_inside": ("drops the value of its PrimitiveNode member: it queues 512 "
                                "in 'width'", ("15:13", "width", 512)),
    "group_primitives_exposed": ("match", None),
    "group_primitive_kinds": ("a COMBO PrimitiveNode inside it has no widget",
                              ("19:15", "height", 0.25)),
    "group_primitive_stale_links": ("drops the value of its PrimitiveNode member",
                                    ("7:6", "width", 512)),
    "group_external_node_object": ("match", None),
    "group_external_node_object_hidden": ("drops the link from its output 1",
                                          ("3", "images", _MISSING)),
    "group_reroutes": ("match", None),
    "group_reroute_widget": ("match", None),
    "group_reroute_widget_outside": ("links what feeds its input 'INT' into 'height'",
                                     ("8:7", "height", ["1", 0])),
    "group_converted_widgets": ("lays the group's values out in another order",
                                ("10:9", "height", "disabled")),
    "group_member_modes": ("match", None),
    "group_in_subgraph": ("leaves it unconverted and queues 'workflow>Inner'",
                          ("5:4", "class_type", "workflow>Inner")),
    "group_chained": ("lays the group's values out in another order",
                      ("15:13", "height", "disabled")),
    "group_values_length": ("lays the group's values out in another order",
                            ("12:11", "height", "disabled")),
    "group_primitive_widget_linked": ("links what feeds its input 'value' into 'height'",
                                      ("8:7", "height", ["5", 0])),
    "group_old_style_inputs": ("drops the link into its input 'height'",
                               ("8:6", "height", 12)),
    "group_chained_plain": ("match", None),
    "group_and_subgraphs": ("match", None),
    "group_subgraph_high_ids": ("match", None),
    "group_node_muted": ("runs its members although the group node is muted",
                         ("10:9", "images", ["10:8", 0])),
    "group_primitive_after_target": ("drops the value of its PrimitiveNode member: it queues "
                                     "512 in 'width'", ("7:5", "width", 512)),
    "group_load_image": ("match", None),
    "group_primitive_socket": ("drops the value its PrimitiveNode member gives 'video_id'",
                               ("6:5", "video_id", _MISSING)),
    "group_primitive_socket_after": ("drops the value its PrimitiveNode member gives "
                                     "'video_id'", ("6:4", "video_id", _MISSING)),
    # The frontend fails: the group node is dropped on load (recorded as an error).
    "group_without_members": ("has no members", None),
}


def _recordings() -> dict[tuple[str, str], tuple[dict[str, Any], NodeDefinitions]]:
    found = {}
    for recorded in NEWER:
        if not recorded.available():
            continue
        definitions = NodeDefinitions(recorded.load_object_info(), frontend=recorded.frontend)
        for recording in recorded.items():
            if recording["source"] == "handmade" and recording["name"] in SHAPES:
                found[(recorded.frontend, recording["name"])] = (recording, definitions)
    return found


RECORDED = _recordings()
CASES = [(frontend, name) for frontend in ("1.48.7", "1.49.6") for name in SHAPES]


def _queued(output: dict[str, Any], node: str, key: str) -> Any:
    if key == "class_type":
        return output[node]["class_type"]
    return output[node]["inputs"].get(key, _MISSING)


@pytest.mark.parametrize(("frontend", "name"), CASES, ids=[f"{f}-{n}" for f, n in CASES])
def test_group_shape_is_what_the_newer_frontend_queued_or_refused(frontend: str,
                                                                   name: str) -> None:
    if (frontend, name) not in RECORDED:
        pytest.skip(f"the {frontend} recording of {name} is not in this checkout")
    recording, definitions = RECORDED[(frontend, name)]
    expected, misqueued = SHAPES[name]
    if expected != "match" and misqueued is None:  # the frontend failed
        assert "Cannot convert to subgraph" in recording["frontend_error"]
        with pytest.raises(ConversionError, match=re.escape(expected)):
            to_api_with_definitions(recording["workflow"], definitions)
        return
    assert "frontend_output" in recording
    if expected == "match":
        got = strip_meta(to_api_with_definitions(recording["workflow"], definitions))
        assert same_json(got, strip_meta(recording["frontend_output"]))
        return
    with pytest.raises(ConversionError, match=re.escape(expected)) as info:
        to_api_with_definitions(recording["workflow"], definitions)
    assert f"frontend {frontend}" in str(info.value)
    assert misqueued is not None
    node, key, value = misqueued
    queued = _queued(recording["frontend_output"], node, key)
    assert queued is _MISSING if value is _MISSING else same_json(queued, value)


def test_the_two_newer_frontends_recorded_the_same_group_graphs() -> None:
    """The README's claim: 1.49.6 behaves as 1.48.7 on every group shape (and the files in
    recordings-1.49.6/ are the same recordings)."""
    if len({frontend for frontend, _ in RECORDED}) < 2:
        pytest.skip("both newer recordings are needed")
    for name in SHAPES:
        old, new = RECORDED[("1.48.7", name)][0], RECORDED[("1.49.6", name)][0]
        assert same_json(old["workflow"], new["workflow"])
        path = HERE / "recordings-1.49.6" / f"handmade_{name}.json"
        if "frontend_error" in new:  # the same failure (the page's addresses differ)
            assert "frontend_error" in old and old["frontend_error"].split(" at ")[0] == \
                new["frontend_error"].split(" at ")[0]
            continue
        assert same_json(old["frontend_output"], new["frontend_output"])
        assert same_json(json.loads(path.read_text(encoding="utf-8"))["frontend_output"],
                         new["frontend_output"])


def test_group_members_are_numbered_after_every_node_id_seen_in_subgraphs() -> None:
    """The editor's counter passes every node id it has loaded: with subgraph node ids
    (101-106) above the workflow's last node id (9), the group's members take 107 and 108 and
    its instance 109 (recorded: `handmade_group_subgraph_high_ids`)."""
    if ("1.49.6", "group_subgraph_high_ids") not in RECORDED:
        pytest.skip("the 1.49.6 recordings are not in this checkout")
    recording, definitions = RECORDED[("1.49.6", "group_subgraph_high_ids")]
    assert recording["workflow"]["last_node_id"] == 9
    got = strip_meta(to_api_with_definitions(recording["workflow"], definitions))
    assert sorted(k for k in got if k.startswith("109:")) == ["109:107", "109:108"]
    assert same_json(got, strip_meta(recording["frontend_output"]))


def _renumbered(output: dict[str, Any], shift: int) -> dict[str, Any]:
    """The recorded graph with every id made by the conversion moved up by `shift`."""
    def move(node_id: str) -> str:
        return ":".join(str(int(p) + shift) for p in node_id.split(":")) if ":" in node_id \
            else node_id
    result = {}
    for node_id, entry in output.items():
        inputs = {k: [move(v[0]), v[1]] if isinstance(v, list) and len(v) == 2
                  and isinstance(v[0], str) else v for k, v in entry["inputs"].items()}
        result[move(node_id)] = {"inputs": inputs, "class_type": entry["class_type"]}
    return result


@pytest.mark.parametrize("name", ["group_reroutes", "group_member_modes"])
def test_new_ids_follow_the_last_node_id_whatever_it_is(name: str) -> None:
    """Members take the ids after the graph's last node id in member order, the instance
    the next one: with a last node id 40 higher, every new id is 40 higher."""
    if ("1.49.6", name) not in RECORDED:
        pytest.skip("the 1.49.6 recordings are not in this checkout")
    recording, definitions = RECORDED[("1.49.6", name)]
    workflow = copy.deepcopy(recording["workflow"])
    workflow["last_node_id"] += 40
    got = strip_meta(to_api_with_definitions(workflow, definitions))
    assert same_json(got, _renumbered(strip_meta(recording["frontend_output"]), 40))


def test_two_group_nodes_convert_in_the_root_order() -> None:
    """Each group node takes its ids in turn, in the order of the root's node list."""
    if ("1.49.6", "group_reroutes") not in RECORDED:
        pytest.skip("the 1.49.6 recordings are not in this checkout")
    recording, definitions = RECORDED[("1.49.6", "group_reroutes")]
    workflow = copy.deepcopy(recording["workflow"])
    group = next(n for n in workflow["nodes"] if n["type"].startswith("workflow>"))
    workflow["nodes"].insert(0, {**copy.deepcopy(group), "id": 30, "outputs": [
        {**o, "links": []} for o in group["outputs"]], "inputs": [
        {**i, "link": None} for i in group["inputs"]]})
    workflow["last_node_id"] = 30
    got = to_api_with_definitions(workflow, definitions)
    # The inserted copy comes first: members 31..36, instance 37; then the original's.
    assert got["37:31"]["class_type"] == "EmptyImage" and "44:38" in got


def _group_workflow() -> tuple[dict[str, Any], NodeDefinitions]:
    if ("1.49.6", "group_reroute_widget") not in RECORDED:
        pytest.skip("the 1.49.6 recordings are not in this checkout")
    recording, definitions = RECORDED[("1.49.6", "group_reroute_widget")]
    return copy.deepcopy(recording["workflow"]), definitions


@pytest.mark.parametrize("path", [
    ("links",), ("links", 0), ("links", 0, 3), ("links", 1, 0), ("nodes", 2, "inputs"),
    ("nodes", 2, "inputs", 0), ("nodes", 1, "outputs"), ("nodes", 2, "widgets_values"),
    ("external",), ("external", 0, 0)])
@pytest.mark.parametrize("junk", [None, "x", 1.5, [], {}, [[1]], {"a": [1]}, True, -1, 99])
def test_malformed_group_data_under_a_newer_frontend_is_refused_never_crashes(
        path: tuple[Any, ...], junk: Any) -> None:
    workflow, definitions = _group_workflow()
    target: Any = workflow["extra"]["groupNodes"]["RerouteWidget"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = junk
    try:
        to_api_with_definitions(workflow, definitions)
    except ConversionError:
        pass


@pytest.mark.parametrize("junk", [None, "x", {"a": 1}, [[1]], 7])
def test_malformed_group_instance_under_a_newer_frontend_is_refused(junk: Any) -> None:
    workflow, definitions = _group_workflow()
    group = next(n for n in workflow["nodes"] if n["type"].startswith("workflow>"))
    group["widgets_values"] = junk
    try:
        to_api_with_definitions(workflow, definitions)
    except ConversionError:
        pass


def test_a_bypassed_group_node_is_refused_naming_it() -> None:
    workflow, definitions = _group_workflow()
    group = next(n for n in workflow["nodes"] if n["type"].startswith("workflow>"))
    group["mode"] = 2
    with pytest.raises(UnsupportedStructure, match=r"legacy group node 5 .* is muted"):
        to_api_with_definitions(workflow, definitions)


@pytest.mark.timeout(60)
def test_many_group_instances_convert_in_linear_time() -> None:
    """Every step is paid once per member or link, never per pair (counted: 20 uses of 1000
    members are 20,000 members pasted, each configured twice)."""
    definitions = NodeDefinitions(NEWER[-1].load_object_info(), frontend="1.49.6")
    out = to_api_with_definitions(shapes.group_node(1000, 20), definitions)
    assert len(out) == 20000 and out["1021:21"]["inputs"] == {
        "width": 64, "height": 64, "batch_size": 1}


@pytest.mark.timeout(60)
def test_a_group_with_many_inner_links_is_pasted_once() -> None:
    """The group's own links are followed once per group, not once per instance."""
    workflow = shapes.group_node(2, 2000)
    workflow["extra"]["groupNodes"]["Many"]["links"] = [
        [0, 0, 1, 0, i, "LATENT"] for i in range(50000)]
    definitions = NodeDefinitions(NEWER[-1].load_object_info(), frontend="1.49.6")
    assert len(to_api_with_definitions(workflow, definitions)) == 4000


def test_a_group_without_members_is_refused_as_the_frontend_drops_it() -> None:
    workflow, definitions = _group_workflow()
    group = workflow["extra"]["groupNodes"]["RerouteWidget"]
    group["nodes"], group["links"], group["external"] = [], [], []
    with pytest.raises(UnsupportedStructure, match="has no members"):
        to_api_with_definitions(workflow, definitions)
