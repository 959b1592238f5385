"""Workflows as users hold them, through the worker and the ComfyUI double: ComfyUI's editor
format converted as its own frontend does (recorded in tests/ui_format/), a PNG that ComfyUI
wrote (as base64, a data: URI or a URL), `convert_only`, and clear refusals."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tests.harness import WorkerHarness
from tests.images import open_image
from tests.slow_server import slow_server
from tests.ui_format import hostile_shapes as shapes

UI = Path(__file__).parent / "ui_format"
PNG = (UI / "comfyui_written.png").read_bytes()
WORKER_INPUTS = {"comfy_worker_job"}


def _recording(name: str) -> dict[str, Any]:
    return json.loads((UI / "recordings" / f"{name}.json").read_text())


def _as_sent(prompt: dict[str, Any]) -> dict[str, Any]:
    """The graph the worker queued, without what it adds to every job (its folder)."""
    graph = {}
    for node_id, node in prompt.items():
        if node_id.startswith("comfy_worker_prefix_"):
            continue
        inputs = {k: v for k, v in node["inputs"].items() if k not in WORKER_INPUTS}
        if isinstance(inputs.get("filename_prefix"), str):
            inputs["filename_prefix"] = inputs["filename_prefix"].split("/", 1)[1]
        graph[node_id] = {"class_type": node["class_type"], "inputs": inputs}
    return graph


def _plain(graph: dict[str, Any]) -> dict[str, Any]:
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in graph.items()}


def test_an_editor_template_runs_as_the_frontend_would_queue_it(harness: WorkerHarness) -> None:
    recorded = _recording("default")  # ComfyUI's own SD1.5 text-to-image template
    harness.double.models = {"checkpoints": ["v1-5-pruned-emaonly-fp16.safetensors"]}
    workflow = json.loads(json.dumps(recorded["workflow"]))
    for node in workflow["nodes"]:  # small and quick on the double; the rest as saved
        if node["type"] == "EmptyLatentImage":
            node["widgets_values"][:2] = [64, 64]
    result = harness.run({"workflow": workflow})
    assert open_image(base64.b64decode(result["images"][0]["data"])).size == (64, 64), result
    expected = _plain(recorded["frontend_output"])
    expected["5"]["inputs"].update(width=64, height=64)
    assert _as_sent(harness.double.prompts[-1]["prompt"]) == expected
    assert harness.leftovers() == []


@pytest.mark.parametrize("form", ["base64", "data_uri"])
def test_a_png_comfyui_wrote_runs_its_embedded_prompt(harness: WorkerHarness, form: str) -> None:
    text = base64.b64encode(PNG).decode()
    value = text if form == "base64" else f"data:image/png;base64,{text}"
    result = harness.run({"workflow": value})
    assert open_image(base64.b64decode(result["images"][0]["data"])).size == (48, 32), result
    embedded = json.loads(open_image(PNG).info["prompt"])
    assert _as_sent(harness.double.prompts[-1]["prompt"]) == _plain(embedded)


def test_a_png_by_url_runs_too(comfy_double) -> None:
    harness = WorkerHarness(comfy_double, allow_private_urls=True)
    with slow_server(PNG, delay_s=0) as base:
        result = harness.run({"workflow": f"{base}/made-by-comfyui.png"})
    assert "images" in result, result
    harness.worker.close()


def test_an_image_without_a_workflow_is_refused(harness: WorkerHarness) -> None:
    result = harness.run({"workflow": _long_png()})
    assert result["error_code"] == "invalid_input"
    assert "carries no ComfyUI workflow" in result["error"]


def _long_png() -> str:
    # Large enough to be read as a file, not a bundled workflow's name.
    from tests.images import png_bytes

    return base64.b64encode(png_bytes(200, 200)).decode()


def test_convert_only_returns_the_api_graph_without_queueing(harness: WorkerHarness) -> None:
    recorded = _recording("handmade_bypass_chain")
    result = harness.run({"workflow": recorded["workflow"], "convert_only": True})
    assert _plain(result["api_workflow"]) == _plain(recorded["frontend_output"])
    assert harness.double.prompts == []


def test_an_unknown_node_type_is_named_with_its_nodes(harness: WorkerHarness) -> None:
    recorded = _recording("handmade_unknown_node_type")
    result = harness.run({"workflow": recorded["workflow"]})
    assert result["error_code"] == "workflow_invalid"
    assert "custom node" in result["error"]
    missing = {(d["node_id"], d["class_type"]) for d in result["details"]}
    unknown = {(str(n["id"]), n["type"]) for n in recorded["workflow"]["nodes"]
               if n["type"] not in json.loads((UI / "object_info.json").read_text())
               and n["type"] not in ("Note", "MarkdownNote", "Reroute", "PrimitiveNode")}
    assert unknown and unknown <= missing
    assert harness.double.prompts == []


def test_an_editor_workflow_over_the_node_limit_is_refused_before_converting(comfy_double) -> None:
    harness = WorkerHarness(comfy_double, max_graph_nodes=10)
    nodes = [{"id": i, "type": "Note", "mode": 0, "widgets_values": [""]} for i in range(6)]
    sub = {"id": "s", "nodes": nodes[:], "links": []}
    result = harness.run({"workflow": {"nodes": nodes, "links": [],
                                       "definitions": {"subgraphs": [sub]}}})
    assert result["error_code"] == "invalid_input"
    assert "12 nodes" in result["error"] and "MAX_GRAPH_NODES" in result["error"]
    harness.worker.close()


def test_a_converted_graph_meets_the_path_checks(harness: WorkerHarness) -> None:
    recorded = _recording("handmade_load_media_upload")
    workflow = json.loads(json.dumps(recorded["workflow"]))
    for node in workflow["nodes"]:
        if node["type"] == "LoadImage":
            node["widgets_values"][0] = "../../secrets.png"
    result = harness.run({"workflow": workflow})
    assert result["error_code"] == "invalid_input", result
    assert "outside" in result["error"]
    assert harness.double.prompts == []


# --- issue 22: every cost counted before it is paid -------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.timeout(30)
def test_nested_subgraphs_are_refused_from_their_definitions(harness: WorkerHarness) -> None:
    # Defect 1: the size check counted each definition's own nodes (62) and let it through.
    result = harness.run({"workflow": shapes.nested_subgraphs(6)})
    assert result["error_code"] == "workflow_invalid", result
    assert "2111111 nodes" in result["error"] and "2000" in result["error"]
    assert "MAX_GRAPH_NODES" in result["error"]
    assert result["details"][0]["limit"] == 2000 and result["details"][0]["count"] == 2111111
    assert harness.double.prompts == []


@pytest.mark.timeout(30)
def test_a_group_node_is_counted_once_per_member_and_use(harness: WorkerHarness) -> None:
    # Defect 3: 10 uses of a 4000-node group were counted as 10 nodes, then built (36 s).
    result = harness.run({"workflow": shapes.group_node(4000, 10)})
    assert result["error_code"] == "invalid_input", result  # 4010 written in the file
    assert "4010 nodes" in result["error"] and "MAX_GRAPH_NODES" in result["error"]
    result = harness.run({"workflow": shapes.group_node(1500, 10)})  # 1510 in the file
    assert result["error_code"] == "workflow_invalid", result
    assert "15010 nodes" in result["error"] and "MAX_GRAPH_NODES" in result["error"]


@pytest.mark.timeout(30)
def test_links_and_slots_are_counted_before_converting(harness: WorkerHarness) -> None:
    # One PrimitiveNode listing 100,000 links (7 MB, under RunPod's input limit) took 1.4 s to
    # convert, linear but unbounded by any limit; the file's entries are now counted first.
    result = harness.run({"workflow": shapes.primitive_links(100_000), "convert_only": True})
    assert result["error_code"] == "invalid_input", result
    assert "300002 links and node slots" in result["error"], result["error"]
    assert "64000 allowed" in result["error"] and "MAX_GRAPH_NODES" in result["error"]
    assert result["details"][0]["problem"] == "too many links"
    # The densest recorded template converts as before.
    dense = _recording("video_wan2_2_14B_s2v")
    result = harness.run({"workflow": dense["workflow"], "convert_only": True})
    assert "api_workflow" in result, result


@pytest.mark.parametrize("workflow", [
    {"nodes": [], "links": [], "definitions": {"subgraphs": 5}},
    {"nodes": [], "links": [], "definitions": {"subgraphs": [{"id": "s", "nodes": 7}]}},
    {"nodes": [], "links": [], "definitions": {"subgraphs": [{"id": "s", "nodes": [3]}]}},
    {"nodes": [], "links": [], "definitions": 5},
], ids=["subgraphs-5", "nodes-7", "node-3", "definitions-5"])
def test_malformed_definitions_are_a_clear_refusal(harness: WorkerHarness,
                                                   workflow: dict[str, Any]) -> None:
    # Defect 11: a TypeError in the size check answered `internal_error`.
    result = harness.run({"workflow": workflow})
    assert result["error_code"] == "workflow_invalid", result
    assert any(word in result["error"] for word in ("definitions", "subgraph", "node")), result


def test_a_link_slot_of_1e309_is_a_clear_refusal(harness: WorkerHarness) -> None:
    # Defect 11: json reads 1e309 as infinity; int(infinity) raised OverflowError.
    text = shapes.as_text(shapes.primitive_links(2)).replace(",0,2,0,", ",0,2,1e309,", 1)
    assert "1e309" in text
    result = harness.run({"workflow": _b64(text.encode())})
    assert result["error_code"] == "workflow_invalid", result
    assert "slot" in result["error"]


def test_a_deeply_nested_workflow_file_is_a_clear_refusal(harness: WorkerHarness) -> None:
    # Defect 11: json.loads raised RecursionError, answered `internal_error`.
    result = harness.run({"workflow": _b64(shapes.deep_json(100_000))})
    assert result["error_code"] == "invalid_input", result
    assert "nested" in result["error"]


@pytest.mark.timeout(30)
def test_a_large_json_workflow_file_by_url_is_refused_before_parsing(comfy_double) -> None:
    # Defect 4: a 20 MiB file of empty lists was parsed whole (18.5 s, 2.3 GB).
    harness = WorkerHarness(comfy_double, allow_private_urls=True)
    body = shapes.empty_lists_json(harness.settings.max_workflow_file_bytes + 1)
    with slow_server(body, delay_s=0, content_type="application/json") as base:
        result = harness.run({"workflow": f"{base}/workflow.json"})
    harness.worker.close()
    assert result["error_code"] == "invalid_input", result
    assert "MAX_WORKFLOW_FILE_BYTES" in result["error"]


def test_a_json_workflow_file_of_too_many_lists_is_refused_before_parsing(
        harness: WorkerHarness) -> None:
    body = shapes.empty_lists_json(harness.settings.max_workflow_file_bytes // 2)
    result = harness.run({"workflow": _b64(body)})
    assert result["error_code"] == "invalid_input", result
    assert "lists and objects" in result["error"]


def test_a_json_workflow_file_of_too_many_values_is_refused_before_parsing(
        harness: WorkerHarness) -> None:
    # Few lists, millions of numbers: each becomes a Python object (8 MiB: 1.7 s, 217 MB).
    count = harness.settings.max_workflow_file_bytes // 8
    body = b'{"nodes": [], "links": [' + b"1e1," * count + b"1e1]}"
    result = harness.run({"workflow": _b64(body)})
    assert result["error_code"] == "invalid_input", result
    assert f"about {count + 5} values" in result["error"] and "500000" in result["error"]


def test_a_png_workflow_is_read_without_decoding_its_pixels(harness: WorkerHarness) -> None:
    # Defect 5: Pillow's getexif() decoded every pixel of a PNG without an eXIf chunk; here
    # the pixels are not even valid, and nothing needs them.
    editor = _recording("handmade_bypass_chain")["workflow"]
    data = shapes.png(64, 64, {"workflow": json.dumps(editor)}, pixels=b"not zlib at all")
    result = harness.run({"workflow": _b64(data), "convert_only": True})
    assert _plain(result["api_workflow"]) == _plain(
        _recording("handmade_bypass_chain")["frontend_output"]), result


def test_a_huge_png_without_a_workflow_is_refused_unread(harness: WorkerHarness) -> None:
    result = harness.run({"workflow": _b64(shapes.png(4000, 4000))})
    assert result["error_code"] == "invalid_input", result
    assert "carries no ComfyUI workflow" in result["error"]


def test_a_frontend_never_recorded_is_converted_as_the_nearest_and_said_so(
        harness: WorkerHarness) -> None:
    recorded = _recording("handmade_bypass_chain")
    harness.double.faults.required_frontend_version = "1.27.19"  # a 0.3.6x-era patch release
    result = harness.run({"workflow": recorded["workflow"], "convert_only": True})
    assert _plain(result["api_workflow"]) == _plain(recorded["frontend_output"])
    [note] = result["errors"]
    assert "frontend 1.27.19" in note and "as frontend 1.27.10 does" in note, note


def test_strict_conversion_refuses_a_frontend_never_recorded(harness: WorkerHarness) -> None:
    harness.double.faults.required_frontend_version = "1.52.0"
    result = harness.run({"workflow": _recording("handmade_bypass_chain")["workflow"],
                          "strict_conversion": True})
    assert result["error_code"] == "workflow_invalid", result
    assert "1.52.0" in result["error"] and "strict_conversion" in result["error"]
    assert result["details"][0]["converted_as"] == "1.49.6"
    assert harness.double.prompts == []


@pytest.mark.parametrize("version", ["1.27.10", None])
def test_a_recorded_or_unnamed_frontend_converts_without_a_note(
        harness: WorkerHarness, version: str | None) -> None:
    harness.double.faults.required_frontend_version = version  # None: too old to name one
    result = harness.run({"workflow": _recording("handmade_bypass_chain")["workflow"],
                          "convert_only": True, "strict_conversion": True})
    assert "errors" not in result and "api_workflow" in result, result


def test_comfyui_0_33_converts_as_its_frontend_1_48_7(tmp_path: Path) -> None:
    """The 0.33.0 double names frontend 1.48.7: a template recorded in that frontend, with
    V3 inputs, converts to exactly what it queued, with no note."""
    from tests.comfy_double import ComfyDouble
    from tests.ui_format.recorded_sets import SETS

    recorded = next(r for r in SETS[1].items() if r["name"] == "utility_image_stitch")
    double = ComfyDouble(tmp_path / "comfy", version="0.33.0")
    double.start()
    try:
        harness = WorkerHarness(double)
        result = harness.run({"workflow": recorded["workflow"], "convert_only": True})
        harness.worker.close()
    finally:
        double.stop()
    assert "errors" not in result, result
    assert _plain(result["api_workflow"]) == _plain(recorded["frontend_output"])
