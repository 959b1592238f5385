"""ComfyUI's recorded refusals become errors a person can act on."""

from __future__ import annotations

import pytest

from comfy_runtime.comfyui.diagnosis import rejected_prompt_error
from comfy_runtime.errors import MissingModel, WorkflowInvalid
from tests.recordings import recording


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("unknown_class_type", ["NoSuchNode does not exist", "#1"]),
        ("missing_required_input", ["node 1 (EmptyImage) input 'color'", "Required input is missing"]),
        ("bad_link_missing_node", ["node 2 (SaveImage)", "Exception when validating node"]),
        ("bad_link_type_mismatch", ["node 2 (SaveImage) input 'images'", "LATENT"]),
        ("value_out_of_range", ["node 1 (EmptyImage) input 'width'", "smaller than min of 1"]),
        ("bad_combo_value_missing_image", ["node 1 (LoadImage) input 'image'", "does_not_exist.png"]),
        ("no_output_node", ["no output node", "SaveImage"]),
        ("missing_class_type_key", ["missing the class_type"]),
        ("no_prompt_key", ["No prompt provided"]),
    ],
)
def test_recorded_refusals_are_workflow_invalid(case: str, words: list[str]) -> None:
    error = rejected_prompt_error(recording("invalid_prompts.json")[case]["response"])
    assert type(error) is WorkflowInvalid
    assert error.code == "workflow_invalid"
    for word in words:
        assert word in error.message


def test_per_node_details_keep_comfyui_facts() -> None:
    error = rejected_prompt_error(recording("invalid_prompts.json")["value_out_of_range"]["response"])
    (detail,) = error.details
    assert detail["node_id"] == "1"
    assert detail["class_type"] == "EmptyImage"
    assert detail["input"] == "width"
    assert detail["received_value"] == 0


def test_missing_checkpoint_names_what_is_available() -> None:
    error = rejected_prompt_error(recording("invalid_missing_checkpoint.json")["response"])
    assert isinstance(error, MissingModel)
    assert error.code == "missing_model"
    assert "'nope.safetensors' is not available" in error.message
    assert "random-sd15.safetensors" in error.message
    assert error.details[0]["available"] == ["random-sd15.safetensors"]


def test_garbage_body_still_gives_an_error() -> None:
    assert rejected_prompt_error("500 Internal Server Error").code == "workflow_invalid"
