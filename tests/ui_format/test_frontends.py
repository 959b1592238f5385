"""Which recorded frontend the converter follows, and inputs it must refuse on every frontend.

The nearest recorded frontend is followed for any version a ComfyUI pins, and an input kind
the converter does not reproduce (ComfyUI's V3 kinds, unknown widget types) is refused naming
the node, the input and the kind, under each frontend: a different graph is never the answer.
Real definitions: `/object_info` of ComfyUI 0.33.0 (`recordings-1.49.6/object_info.json`).
"""

from __future__ import annotations

import copy
import gzip
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from comfy_runtime.ui_format import (
    ConversionError,
    NodeDefinitions,
    UnsupportedStructure,
    WidgetMismatch,
    choose_frontend,
    to_api,
)
from comfy_runtime.ui_format.configure import configure_comfy
from comfy_runtime.ui_format.frontends import LEGACY, RECORDED
from comfy_runtime.ui_format.graph import RawNode
from tests.ui_format.recorded_sets import SETS, outcome, score
from tests.ui_format.test_convert_fuzz import FUZZ, JUNK, _places

OBJECT_INFO_0_33 = SETS[1].object_info
NEWER_OBJECT_INFO: dict[str, Any] = json.loads(OBJECT_INFO_0_33.read_text(encoding="utf-8")) \
    if OBJECT_INFO_0_33.is_file() else {}


@pytest.fixture(scope="module")
def object_info() -> dict[str, Any]:
    return dict(json.loads(OBJECT_INFO_0_33.read_text(encoding="utf-8")))


@pytest.mark.parametrize(("version", "follows", "recorded"), [
    (None, LEGACY, True), ("1.27.10", "1.27.10", True), ("1.48.7", "1.48.7", True),
    ("1.49.6", "1.49.6", True), ("1.48.9", "1.48.7", False), ("1.58.1", "1.49.6", False),
    ("1.30.2", "1.27.10", False), ("1.27.2", "1.27.10", False), ("2.0.0", "1.49.6", False),
    ("nightly", RECORDED[-1], False),
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


@pytest.mark.parametrize(("node_type", "inputs", "values", "outputs", "name", "kind"), V3_CASES,
                         ids=[c[0] for c in V3_CASES])
def test_a_v3_input_kind_is_refused_where_the_frontend_predates_it(
        object_info: dict[str, Any], node_type: str, inputs: list[tuple[str, str]],
        values: list[Any], outputs: list[str], name: str, kind: str) -> None:
    with pytest.raises(UnsupportedStructure) as caught:
        to_api(_one_node(node_type, inputs, values, outputs), object_info, frontend=LEGACY)
    [detail] = caught.value.details
    assert (detail["node_id"], detail["class_type"]) == ("7", node_type)
    assert f"input '{name}' is of kind {kind}" in detail["problem"]


def _v3_classes(object_info: dict[str, Any]) -> list[str]:
    return sorted({name for name, info in object_info.items()
                   for section in ("required", "optional")
                   for raw in ((info.get("input") or {}).get(section) or {}).values()
                   if isinstance(raw, list) and isinstance(raw[0], str)
                   and raw[0].startswith("COMFY_") and raw[0].endswith("_V3")})


def test_every_v3_class_of_real_definitions_is_refused_by_the_legacy_frontend(
        object_info: dict[str, Any]) -> None:
    classes = _v3_classes(object_info)
    assert len(classes) > 100
    for node_type in classes:
        with pytest.raises(UnsupportedStructure, match="which the converter does not"):
            to_api(_one_node(node_type, [], [], []), object_info, frontend=LEGACY)


@pytest.mark.parametrize("kind", ["COMFY_MULTITYPED_V3", "COMFY_SOMETHINGNEW_V3"])
def test_a_v3_kind_the_converter_does_not_know_is_refused_on_newer_frontends(kind: str) -> None:
    info = {"Future": {"input": {"required": {"thing": [kind, {}], "n": ["INT", {}]}},
                       "output": ["IMAGE"]}}
    with pytest.raises(UnsupportedStructure) as caught:
        to_api(_one_node("Future", [], [3], ["IMAGE"]), info, frontend="1.48.7")
    assert f"input 'thing' is of kind {kind}" in caught.value.details[0]["problem"]
    assert caught.value.details[0]["node_id"] == "7"


def test_an_autogrow_list_holding_widgets_is_refused_on_newer_frontends() -> None:
    template = {"input": {"required": {"n": ["INT", {"default": 1}]}}, "prefix": "n", "min": 1}
    info = {"Grow": {"input": {"required": {"ns": ["COMFY_AUTOGROW_V3", {"template": template}]}},
                     "output": ["INT"]}}
    with pytest.raises(UnsupportedStructure, match="COMFY_AUTOGROW_V3 holding widgets"):
        to_api(_one_node("Grow", [], [1, 2], ["INT"]), info, frontend="1.48.7")


def _api(workflow: dict[str, Any], object_info: dict[str, Any]) -> dict[str, Any]:
    return {k: v["inputs"] for k, v in to_api(workflow, object_info, frontend="1.48.7").items()}


def test_a_dynamic_combo_adds_the_chosen_options_inputs_after_it(
        object_info: dict[str, Any]) -> None:
    """SaveVideo's codec: h264 adds `codec.encoding`, whose re-encode adds `codec.encoding.crf`;
    the saved values fill them in that order, and the next input's value follows."""
    workflow = _one_node("SaveVideo", [("video", "VIDEO")],
                         ["video/x", "mp4", "h264", "re-encode", 18], [])
    assert _api(workflow, object_info)["7"] == {
        "filename_prefix": "video/x", "format": "mp4", "codec": "h264",
        "codec.encoding": "re-encode", "codec.encoding.crf": 18}
    workflow = _one_node("ResizeImageMaskNode", [("input", "IMAGE,MASK")],
                         ["scale by multiplier", 1.5, "area"], ["IMAGE,MASK"])
    assert _api(workflow, object_info)["7"] == {
        "resize_type": "scale by multiplier", "resize_type.multiplier": 1.5,
        "scale_method": "area"}


def test_a_short_value_list_gives_the_default_option_with_its_defaults(
        object_info: dict[str, Any]) -> None:
    workflow = _one_node("SaveVideo", [("video", "VIDEO")], ["video/x"], [])
    assert _api(workflow, object_info)["7"] == {
        "filename_prefix": "video/x", "format": "auto", "codec": "auto"}


def test_a_value_that_is_no_option_of_a_dynamic_combo_is_refused(
        object_info: dict[str, Any]) -> None:
    workflow = _one_node("SaveVideo", [("video", "VIDEO")], ["video/x", "mp4", "vp9"], [])
    with pytest.raises(WidgetMismatch, match="not an option of the dynamic combo 'codec'"):
        _api(workflow, object_info)


def test_autogrow_and_matched_sockets_are_queued_by_their_saved_names(
        object_info: dict[str, Any]) -> None:
    workflow = {"version": 0.4, "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 1, 0, 2, 2, "IMAGE"]],
                "nodes": [
        {"id": 1, "type": "EmptyImage", "mode": 0, "widgets_values": [8, 8, 1, 0],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1, 2]}]},
        {"id": 2, "type": "BatchImagesNode", "mode": 0, "widgets_values": [],
         "inputs": [{"name": "images.image0", "type": "IMAGE", "link": 1},
                    {"name": "images.image1", "type": "IMAGE", "link": None},
                    {"name": "images.image2", "type": "IMAGE", "link": 2}],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": []}]}]}
    assert _api(workflow, object_info)["2"] == {"images.image0": ["1", 0],
                                                "images.image2": ["1", 0]}


def _bypassed_v3(saved_inputs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version": 0.4, "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]],
            "nodes": [
        {"id": 1, "type": "EmptyImage", "mode": 0, "widgets_values": [8, 8, 1, 0],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1]}]},
        {"id": 2, "type": "BatchImagesNode", "mode": 4, "widgets_values": [],
         "inputs": saved_inputs, "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [2]}]},
        {"id": 3, "type": "PreviewImage", "mode": 0, "widgets_values": [],
         "inputs": [{"name": "images", "type": "IMAGE", "link": 2}], "outputs": []}]}


def test_a_bypassed_v3_node_passes_through_its_saved_slots(object_info: dict[str, Any]) -> None:
    workflow = _bypassed_v3([{"name": "images.image0", "type": "IMAGE", "link": 1}])
    assert _api(workflow, object_info) == {"1": {"width": 8, "height": 8, "batch_size": 1,
                                                 "color": 0}, "3": {"images": ["1", 0]}}


def test_a_bypassed_v3_node_missing_a_defined_slot_is_refused(
        object_info: dict[str, Any]) -> None:
    workflow = _bypassed_v3([{"name": "images.image0", "type": "IMAGE", "link": 1}])
    workflow["nodes"][1].update(type="ResizeImageMaskNode",
                                widgets_values=["scale by multiplier", 2, "area"])
    workflow["nodes"][1]["inputs"][0]["name"] = "image"
    with pytest.raises(UnsupportedStructure, match="bypassed node with V3 inputs"):
        _api(workflow, object_info)


def test_subgraph_node_ids_that_repeat_are_renumbered_from_the_last_node_id(
        object_info: dict[str, Any]) -> None:
    """1.48.7 gives a subgraph node whose id the root already uses `last_node_id + 1`
    (recorded: image_newbieimage_exp0_1-t2i and seven more templates); 1.27.10 does not."""
    sub = {"id": "sub-1", "name": "Inner", "inputs": [], "outputs": [],
           "links": [{"id": 1, "origin_id": 5, "origin_slot": 0, "target_id": 6,
                      "target_slot": 0, "type": "IMAGE"}],
           "nodes": [{"id": 5, "type": "EmptyImage", "mode": 0, "widgets_values": [8, 8, 1, 0],
                      "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1]}]},
                     {"id": 6, "type": "PreviewImage", "mode": 0,
                      "inputs": [{"name": "images", "type": "IMAGE", "link": 1}]}]}
    workflow = {"version": 0.4, "last_node_id": 9, "links": [],
                "definitions": {"subgraphs": [sub]},
                "nodes": [{"id": 5, "type": "sub-1", "mode": 0},
                          {"id": 6, "type": "Note", "mode": 0}]}
    assert sorted(_api(workflow, object_info)) == ["5:10", "5:11"]
    assert _api(workflow, object_info)["5:11"] == {"images": ["5:10", 0]}
    assert sorted(to_api(workflow, object_info, frontend=LEGACY)) == ["5:5", "5:6"]
    del workflow["last_node_id"]
    with pytest.raises(UnsupportedStructure, match="names no last node id"):
        _api(workflow, object_info)


def test_an_unknown_widget_type_is_refused() -> None:
    info = {"Painter": {"input": {"required": {
        "canvas": ["STRING", {"widgetType": "SKETCHPAD", "default": ""}]}}, "output": ["IMAGE"]}}
    for frontend in RECORDED:
        with pytest.raises(UnsupportedStructure, match="STRING shown as a SKETCHPAD widget"):
            to_api(_one_node("Painter", [], [""], ["IMAGE"]), info, frontend=frontend)


def test_a_muted_node_of_an_unknown_kind_is_no_obstacle(object_info: dict[str, Any]) -> None:
    workflow = _one_node("BatchImagesNode", [], [], ["IMAGE"])
    workflow["nodes"][0]["mode"] = 2
    assert to_api(workflow, object_info) == {}


# --------------------------------------------------------------------------- recorded frontends

# Per newer recorded frontend: (recordings, templates, templates exact today); the rest of the
# templates are refused with a reason, none is different.
NEWER_FIGURES = {"1.48.7": (549, 499, 485), "1.49.6": (556, 506, 487)}


@pytest.fixture(scope="module", params=sorted(NEWER_FIGURES))
def newer_outcomes(request: pytest.FixtureRequest) -> tuple[str, list[tuple[str, str, str]]]:
    """(frontend, [(source, outcome, detail) per recording]) for a newer recorded frontend."""
    recorded = next(s for s in SETS if s.frontend == request.param)
    if not recorded.available():
        pytest.skip(f"the {recorded.frontend} recordings are not in this checkout")
    definitions = NodeDefinitions(recorded.load_object_info(), frontend=recorded.frontend)
    return recorded.frontend, [(r["source"], *outcome(r, definitions)) for r in recorded.items()]


def test_no_recording_of_a_newer_frontend_converts_differently(
        newer_outcomes: tuple[str, list[tuple[str, str, str]]]) -> None:
    frontend, outcomes = newer_outcomes
    assert [detail for _, kind, detail in outcomes if kind == "different"] == []
    assert len(outcomes) == NEWER_FIGURES[frontend][0]


def test_newer_frontend_templates_stay_exact(
        newer_outcomes: tuple[str, list[tuple[str, str, str]]]) -> None:
    frontend, outcomes = newer_outcomes
    kinds = [kind for source, kind, _ in outcomes if source == "template"]
    print(f"\n{frontend} templates: {len(kinds)}: exact {kinds.count('exact')}, "
          f"refused {kinds.count('refused')}")
    _, templates, exact = NEWER_FIGURES[frontend]
    assert len(kinds) == templates
    assert kinds.count("exact") >= exact


def test_the_legacy_recordings_still_hold() -> None:
    legacy = SETS[0]
    if not legacy.available():
        pytest.skip("the 1.27.10 recordings are not in this checkout")
    result = score(legacy)
    assert [len(result["template"][k]) for k in ("exact", "refused", "different")] == [169, 3, 0]
    assert result["handmade"]["different"] == []


def _our_fresh_widgets(definitions: NodeDefinitions,
                       class_type: str) -> list[tuple[str, bool, bool]]:
    node_def = definitions.get(class_type)
    raw = RawNode({"id": 1, "type": class_type}, "1", class_type, 0)
    widgets = configure_comfy(raw, definitions, root=True).widgets
    # Widgets that are neither saved nor queued change nothing; control widgets are saved but
    # never queued, so only their place counts, not their name.
    return [(w.name if w.spec.in_prompt else "-", w.spec.has_slot, w.spec.in_prompt)
            for w in widgets if w.spec.has_slot or w.spec.in_prompt] if node_def else []


@pytest.mark.parametrize("frontend", sorted(NEWER_FIGURES))
def test_every_class_is_laid_out_as_the_newer_frontend_builds_it_or_refused(
        frontend: str) -> None:
    """For each of ComfyUI 0.33.0's 849 classes, a fresh node's saved and queued widgets, in
    order, and (V3 aside: their slots are read from the saved node) its input slots are what
    the frontend builds (`recordings-<version>/layouts.json.gz`), or the class is refused."""
    recorded = next(s for s in SETS if s.frontend == frontend)
    path = recorded.recordings.parent / "layouts.json.gz"
    layouts = json.loads(gzip.decompress(path.read_bytes()))
    definitions = NodeDefinitions(recorded.load_object_info(), frontend=frontend)
    differing, refused = {}, []
    for class_type, theirs in sorted(layouts.items()):
        node_def = definitions.get(class_type)
        if node_def.unsupported:
            refused.append(class_type)
            continue
        if node_def.extension:  # built from the saved values (CustomCombo): the recordings
            continue
        expected = [(w[0] if w[3] else "-", w[2], w[3]) for w in theirs["widgets"]
                    if w[2] or w[3]]
        ours = _our_fresh_widgets(definitions, class_type)
        inputs_differ = not node_def.v3 and [i.name for i in node_def.inputs] != [
            i[0] for i in theirs["inputs"]]
        if ours != expected or inputs_differ:
            differing[class_type] = (ours, expected)
    assert differing == {}
    assert len(layouts) == 849 and len(refused) < 40, refused


# --------------------------------------------------------------------------- property test

def _small_newer_templates() -> dict[str, dict[str, Any]]:
    """1.48.7 templates under 40 KB that use V3 inputs, CustomCombo or subgraphs."""
    if not SETS[1].available():
        return {}
    found = {}
    for recording in SETS[1].items():
        text = json.dumps(recording["workflow"])
        if recording["source"] == "template" and len(text) < 40_000 and (
                "_V3" in text or "CustomCombo" in text or '"subgraphs"' in text
                or "resize_type" in text or "images.image" in text):
            found[recording["name"]] = recording["workflow"]
    return found


NEWER_TEMPLATES = _small_newer_templates()


@st.composite
def mutated_newer_template(draw: st.DrawFn) -> dict[str, Any]:
    workflow = copy.deepcopy(NEWER_TEMPLATES[draw(st.sampled_from(sorted(NEWER_TEMPLATES)))])
    for _ in range(draw(st.integers(1, 4))):
        places = _places(workflow, [])
        container, key = draw(st.sampled_from(places))
        action = draw(st.sampled_from(["junk", "junk", "delete", "copy"]))
        if action == "junk":
            container[key] = draw(JUNK)
        elif action == "delete":
            del container[key]
        else:  # a value from elsewhere in the same workflow: ids, option keys, slots
            other, other_key = draw(st.sampled_from(places))
            container[key] = copy.deepcopy(other[other_key])
    return workflow


@FUZZ
@given(mutated_newer_template())
def test_a_mutated_newer_template_converts_or_is_refused(workflow: dict[str, Any]) -> None:
    """Dynamic combos, grown slots, CustomCombo values and renumbered ids, broken at random,
    under 1.48.7: a graph of plain JSON or a `ConversionError`, nothing else."""
    try:
        out = to_api(workflow, NEWER_OBJECT_INFO, max_nodes=2000, frontend="1.48.7")
    except ConversionError:
        return
    assert isinstance(out, dict)
    json.dumps(out, allow_nan=True)
