"""The job input contract: worker-comfyui's shape is accepted, bad input is named precisely."""

from __future__ import annotations

import pytest

from comfy_runtime.contract import (
    SCHEMA_PATH,
    JobOutput,
    OutputFile,
    parse_job_input,
    render_schema,
)
from comfy_runtime.errors import InvalidInput


def test_worker_comfyui_input_is_accepted_unchanged() -> None:
    job = parse_job_input(
        {
            "workflow": {"3": {"class_type": "KSampler", "inputs": {"seed": 1}, "_meta": {"title": "K"}}},
            "images": [{"name": "a.png", "image": "aGVsbG8="}],
            "comfy_org_api_key": "sk-secret",
        }
    )
    assert job.workflow["3"].class_type == "KSampler"  # type: ignore[index]
    assert job.images[0].name == "a.png"
    assert "sk-secret" not in repr(job)


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        ({"workflow": [1, 2]}, "workflow", "API-format graph"),
        ({"workflow": {"3": {"inputs": {}}}}, "workflow.3.class_type", "required"),
        ({"workflow": {"3": 7}}, "workflow.3", "expected an object"),
        ({"workflw": {}}, "workflw", "unknown field"),
        ({"images": [{"name": "a.png"}]}, "images[0].image", "required"),
        ({"images": "x"}, "images", "list"),
        ({"output": {"format": "gif"}}, "output.format", "png"),
        ({"output": {"quality": 0}}, "output.quality", "greater than or equal"),
        ({"timeout_s": -1}, "timeout_s", "greater than"),
    ],
)
def test_bad_input_names_the_field(raw: dict, field: str, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_job_input(raw)
    assert caught.value.code == "invalid_input"
    assert caught.value.message.startswith(f"{field}: ")
    assert words in caught.value.message
    assert caught.value.details[0]["field"] == field


def test_input_that_is_not_an_object() -> None:
    with pytest.raises(InvalidInput, match="expected a JSON object, got list"):
        parse_job_input([1])


def test_output_leaves_out_empty_groups_for_worker_comfyui_clients() -> None:
    item = OutputFile(filename="a.png", type="base64", data="x", node_id="9", mime_type="image/png")
    data = JobOutput(images=[item], prompt_id="p").to_json()
    assert set(data) == {"images", "prompt_id", "timings_ms"}
    assert set(data["images"][0]) >= {"filename", "type", "data", "node_id", "mime_type"}


def test_the_published_job_schema_is_current() -> None:
    assert SCHEMA_PATH.read_text() == render_schema(), "run: python -m comfy_runtime.contract"


def test_an_editor_workflow_is_accepted_as_sent() -> None:
    editor = {"last_node_id": 1, "nodes": [{"id": 1, "type": "EmptyImage"}], "links": [],
              "extra": {"ds": {"scale": 1}}}
    parsed = parse_job_input({"workflow": editor, "convert_only": True})
    assert parsed.workflow.raw() == editor  # type: ignore[union-attr]
    assert parsed.convert_only is True


def test_previews_true_asks_for_the_defaults_and_false_for_none() -> None:
    from comfy_runtime.contract import PreviewOptions

    assert parse_job_input({"workflow": "txt2img", "previews": True}).previews == PreviewOptions()
    assert PreviewOptions().max_size == 256 and PreviewOptions().interval_s == 1.0
    assert parse_job_input({"workflow": "txt2img", "previews": False}).previews is None
    assert parse_job_input({"workflow": "txt2img"}).previews is None
    asked = parse_job_input({"workflow": "txt2img", "previews": {"max_size": 64}}).previews
    assert asked is not None and (asked.max_size, asked.interval_s) == (64, 1.0)


@pytest.mark.parametrize(("previews", "field", "words"), [
    ({"max_size": 8}, "previews.max_size", "greater than or equal to 16"),
    ({"max_size": 4096}, "previews.max_size", "less than or equal to 2048"),
    ({"interval_s": 0.01}, "previews.interval_s", "greater than or equal to 0.25"),
    ({"size": 64}, "previews.size", "unknown field"),
    ("yes", "previews", "expected an object"),
])
def test_bad_previews_name_the_field(previews: object, field: str, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_job_input({"workflow": "txt2img", "previews": previews})
    assert f"{field}: " in caught.value.message and words in caught.value.message
