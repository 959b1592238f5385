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
