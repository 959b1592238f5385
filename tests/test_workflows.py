"""Bundled workflows: typed parameters, clear errors, models checked before queueing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfy_runtime.errors import InvalidInput, MissingModel
from comfy_runtime.settings import REPO_ROOT
from comfy_runtime.workflows import WorkflowRegistry

REGISTRY = WorkflowRegistry(REPO_ROOT / "workflows")
MODELS = {"checkpoints": ["sd15.safetensors", "other.safetensors"]}


def _models(folder: str) -> list[str]:
    return MODELS.get(folder, [])


def test_the_shipped_workflows_load() -> None:
    assert {"txt2img", "img2img", "upscale", "warmup"} <= set(REGISTRY.names())


def test_txt2img_params_land_in_the_graph() -> None:
    graph = REGISTRY.resolve("txt2img", {"prompt": "a cat", "steps": 2, "width": 64, "height": 64},
                             models=_models)
    assert graph["6"]["inputs"]["text"] == "a cat"
    assert graph["3"]["inputs"]["steps"] == 2
    assert (graph["5"]["inputs"]["width"], graph["5"]["inputs"]["height"]) == (64, 64)
    assert graph["4"]["inputs"]["ckpt_name"] == "sd15.safetensors"  # the default: ComfyUI's first
    assert 0 <= graph["3"]["inputs"]["seed"] < 2**32  # -1 became a random seed


def test_building_does_not_change_the_bundled_graph() -> None:
    REGISTRY.resolve("txt2img", {"prompt": "changed"}, models=_models)
    assert REGISTRY.get("txt2img").graph["6"]["inputs"]["text"] == ""


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"prompt": "x", "steps": "many"}, "params.steps"),
        ({"prompt": "x", "steps": 0}, "greater than or equal to 1"),
        ({"prompt": "x", "width": 100000}, "params.width"),
        ({"prompt": "x", "stepz": 3}, "params.stepz: unknown parameter"),
        ({}, "params.prompt: Field required"),
    ],
)
def test_bad_params_are_named(params: dict, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        REGISTRY.resolve("txt2img", params, models=_models)
    assert words in caught.value.message
    assert "takes: prompt" in caught.value.message


def test_unknown_workflow_lists_the_known_ones() -> None:
    with pytest.raises(InvalidInput, match="no bundled workflow named 'txt2imgg'; known: .*txt2img"):
        REGISTRY.resolve("txt2imgg", {}, models=_models)


def test_absent_checkpoint_is_missing_model_with_the_list() -> None:
    with pytest.raises(MissingModel) as caught:
        REGISTRY.resolve("txt2img", {"prompt": "x", "checkpoint": "typo.safetensors"}, models=_models)
    assert "sd15.safetensors, other.safetensors" in caught.value.message
    with pytest.raises(MissingModel, match="no models in 'checkpoints'"):
        REGISTRY.resolve("txt2img", {"prompt": "x"}, models=lambda folder: [])


def test_input_params_must_name_a_job_image() -> None:
    graph = REGISTRY.resolve("upscale", {"image": "a.png"}, input_names=["a.png"], models=_models)
    assert graph["1"]["inputs"]["image"] == "a.png"
    with pytest.raises(InvalidInput, match="params.image: 'b.png' is not the name of any"):
        REGISTRY.resolve("upscale", {"image": "b.png"}, input_names=["a.png"], models=_models)


def test_params_with_a_graph_are_refused() -> None:
    with pytest.raises(InvalidInput, match="params: only used with a bundled workflow"):
        REGISTRY.resolve({}, {"x": 1})


def test_a_dropped_in_workflow_needs_no_code(tmp_path: Path) -> None:
    (tmp_path / "mine.json").write_text(json.dumps({"1": {"class_type": "EmptyImage", "inputs": {}}}))
    (tmp_path / "mine.params.json").write_text(json.dumps(
        {"params": {"size": {"type": "integer", "default": 8, "targets": ["1.width", "1.height"]}}}))
    (tmp_path / "broken.json").write_text("{not json")
    registry = WorkflowRegistry(tmp_path)
    assert registry.names() == ["mine"]
    graph = registry.resolve("mine", {"size": 16})
    assert graph["1"]["inputs"] == {"width": 16, "height": 16}
    schema = registry.get("mine").json_schema()
    assert schema["properties"]["size"]["default"] == 8


def test_a_bundled_workflow_may_be_saved_in_editor_format(tmp_path: Path) -> None:
    from comfy_runtime import ui_format

    recorded = json.loads((REPO_ROOT / "tests/ui_format/recordings/default.json").read_text())
    (tmp_path / "mine.json").write_text(json.dumps(recorded["workflow"]))
    (tmp_path / "mine.params.json").write_text(json.dumps({"params": {
        "prompt": {"type": "string", "default": "a fox", "targets": ["6.text"]},
        "steps": {"type": "integer", "default": 20, "minimum": 1, "targets": ["3.steps"]}}}))
    object_info = json.loads((REPO_ROOT / "tests/ui_format/object_info.json").read_text())
    registry = WorkflowRegistry(tmp_path)
    graph = registry.resolve("mine", {"steps": 3},
                             convert=lambda editor: ui_format.to_api(editor, object_info))
    expected = {k: {"class_type": v["class_type"], "inputs": dict(v["inputs"])}
                for k, v in recorded["frontend_output"].items()}
    expected["6"]["inputs"]["text"], expected["3"]["inputs"]["steps"] = "a fox", 3
    assert {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in graph.items()} == expected
