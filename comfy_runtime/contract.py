"""The job contract: what a client sends and what it gets back, as pydantic models.

Input is compatible with runpod-workers/worker-comfyui 5.x (`workflow`, `images`,
`comfy_org_api_key`); everything else is additive and optional. Validation errors are turned
into one `InvalidInput` whose message names every offending field by its path in the input.

The input's JSON Schema (`schema/job_input.schema.json`) is generated from these models:
`python -m comfy_runtime.contract` writes it, and a test keeps it current.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from .errors import InvalidInput
from .graph_checks import check_nesting
from .models.inputs import ModelRequest, ModelUsed
from .settings import REPO_ROOT

SCHEMA_PATH = REPO_ROOT / "schema" / "job_input.schema.json"

MediaKind = Literal["images", "videos", "audio", "files"]
_MAX_NAME = 256  # a bundled workflow's name is short; a file's base64 is not


class GraphNode(BaseModel):
    """One node of a ComfyUI API-format graph."""

    # `_meta` and other keys ComfyUI's exporter adds are kept and sent on unchanged.
    model_config = ConfigDict(extra="allow")

    class_type: str = Field(min_length=1)
    inputs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("inputs")
    @classmethod
    def _not_too_deep(cls, inputs: dict[str, Any]) -> dict[str, Any]:
        # Checked here, before anything walks the values recursively and overflows the stack.
        return check_nesting(inputs)


class EditorWorkflow(BaseModel):
    """A workflow as ComfyUI's editor saves it (`{"nodes": [...], "links": [...], ...}`).

    Converted to the API graph ComfyUI's own frontend would queue (`ui_format`); every key
    is kept for the converter, which refuses what it cannot reproduce exactly.
    """

    model_config = ConfigDict(extra="allow")

    nodes: list[dict[str, Any]]
    links: list[Any] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _not_too_deep(cls, value: Any) -> Any:
        return check_nesting(value) if isinstance(value, dict) else value

    def raw(self) -> dict[str, Any]:
        """The workflow as the client sent it."""
        return self.model_dump(mode="python")


def is_workflow_file(value: str) -> bool:
    """A `workflow` string that is a file (a PNG, WebP or JSON file ComfyUI wrote, as a data:
    URI, an http(s) URL or base64), not a bundled workflow's name."""
    return value.startswith(("data:", "http://", "https://")) or len(value) > _MAX_NAME


def _workflow_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return "editor" if isinstance(value.get("nodes"), list) else "graph"
    if isinstance(value, str):
        return "name"
    return None


# A discriminated union, so an error inside a graph is reported once, at its node, instead of
# once per union branch.
Workflow = Annotated[
    Annotated[dict[str, GraphNode], Tag("graph")]
    | Annotated[EditorWorkflow, Tag("editor")]
    | Annotated[str, Tag("name")],
    Discriminator(
        _workflow_kind,
        custom_error_type="workflow_type",
        custom_error_message="expected an API-format graph (an object of nodes), an editor "
        "workflow (an object with `nodes`), a bundled workflow's name, or a file ComfyUI wrote",
    ),
]


class InputFile(BaseModel):
    """A file the graph reads, uploaded to ComfyUI's input directory before the run."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255, description="File name the graph refers to.")
    image: str = Field(
        min_length=1, description="The content: base64, a data: URI, or an http(s) URL."
    )


class OutputOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["png", "jpeg", "webp"] | None = Field(
        None, description="Convert still images to this format; default: as ComfyUI saved them."
    )
    quality: int = Field(90, ge=1, le=100, description="JPEG/WebP quality.")
    delivery: Literal["auto", "base64", "s3"] = Field(
        "auto",
        description="auto: base64 unless the result would pass the size limit, then the object "
        "store.",
    )
    include_previews: bool = Field(False, description="Also return temp outputs (previews).")


class PreviewOptions(BaseModel):
    """`previews`: the sampler's newest preview inside the job's progress updates."""

    model_config = ConfigDict(extra="forbid")

    max_size: int = Field(
        256, ge=16, le=2048,
        description="Longest side of a preview, in pixels (no larger than the worker's "
        "PREVIEW_MAX_SIZE: ComfyUI draws none larger).",
    )
    interval_s: float = Field(
        1.0, ge=0.25, le=3600, description="At most one preview per this many seconds."
    )


def _previews(value: Any) -> Any:
    # `true` asks for the defaults, `false` for none: the object form is the one kept.
    if value is True:
        return PreviewOptions()
    return None if value is False else value


class JobInput(BaseModel):
    """`job["input"]`."""

    model_config = ConfigDict(extra="forbid")

    workflow: Workflow | None = Field(
        None,
        description="An API-format graph; a workflow as ComfyUI's editor saves it (converted "
        "as ComfyUI's frontend would); the name of a bundled workflow; or a PNG, WebP or JSON "
        "file ComfyUI wrote, as base64, a data: URI or an http(s) URL (its embedded API "
        "prompt is used, else its editor workflow is converted).",
    )
    params: dict[str, Any] | None = Field(
        None, description="Parameters of a bundled workflow (only with a workflow name)."
    )
    images: list[InputFile] = Field(
        default_factory=list, description="Input files (any media), worker-comfyui's field."
    )
    output: OutputOptions = Field(default_factory=OutputOptions)
    timeout_s: float | None = Field(
        None, gt=0, le=24 * 3600, description="Time limit for this job (default JOB_TIMEOUT_S)."
    )
    comfy_org_api_key: SecretStr | None = Field(
        None, description="Key for ComfyUI's API nodes for this job only."
    )
    info: bool = Field(False, description="Ask what this worker offers instead of running.")
    models: list[ModelRequest] = Field(
        default_factory=list,
        description="Model files the workflow needs, downloaded into the worker's model cache "
        "before it runs (once: later jobs find them there); the graph names each by `name`. "
        "A URL written straight into a core loader's model input is fetched the same way.",
    )
    previews: Annotated[
        PreviewOptions | None,
        BeforeValidator(_previews),
        WithJsonSchema({"anyOf": [{"type": "boolean"}, PreviewOptions.model_json_schema(),
                                  {"type": "null"}]}),
    ] = Field(
        None,
        description="`true`, or `{max_size, interval_s}`: progress updates carry the newest "
        "sampler preview (a JPEG as base64) while the job runs.",
    )
    convert_only: bool = Field(
        False,
        description="Return the API graph the workflow converts to (`api_workflow`) without "
        "queueing anything.",
    )
    strict_conversion: bool = Field(
        False,
        description="Refuse an editor-format workflow when ComfyUI's frontend is a version the "
        "converter was never recorded against, instead of converting it as the nearest "
        "recorded version and saying so in `errors`.",
    )


class OutputFile(BaseModel):
    """One delivered file. The first five fields are worker-comfyui's `images` item."""

    filename: str
    type: Literal["base64", "s3_url"]
    data: str
    node_id: str
    mime_type: str
    subfolder: str = ""


class ConvertedWorkflow(BaseModel):
    """The answer to `convert_only`: the API graph the job would have queued."""

    api_workflow: dict[str, Any]
    errors: list[str] = Field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        if not data["errors"]:
            del data["errors"]
        return data


class TextOutput(BaseModel):
    node_id: str
    text: str


class JobOutput(BaseModel):
    images: list[OutputFile] = Field(default_factory=list)
    videos: list[OutputFile] = Field(default_factory=list)
    audio: list[OutputFile] = Field(default_factory=list)
    files: list[OutputFile] = Field(default_factory=list)
    text: list[TextOutput] = Field(default_factory=list)
    prompt_id: str
    models: list[ModelUsed] = Field(default_factory=list)
    timings_ms: dict[str, Any] = Field(default_factory=dict)
    errors: list[str] = Field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        # Empty groups are left out so a worker-comfyui client sees the shape it knows.
        data = self.model_dump(mode="json")
        for key in ("videos", "audio", "files", "text", "models", "errors"):
            if not data[key]:
                del data[key]
        return data


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _explain(error: Any) -> tuple[str, str]:
    """(field path, problem) for one pydantic error."""
    # The union's tags show up in the location; they say nothing to the user.
    loc = error["loc"]
    if len(loc) > 1 and loc[0] == "workflow" and loc[1] in ("graph", "editor", "name"):
        loc = (loc[0], *loc[2:])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    elif error["type"] == "model_type":
        message = f"expected an object, got {type(error['input']).__name__}"
    return _field_path(loc) or "input", message


def parse_job_input(raw: Any) -> JobInput:
    """Validate `job["input"]`, raising one `InvalidInput` that lists every problem."""
    if not isinstance(raw, dict):
        raise InvalidInput(
            f"input: expected a JSON object, got {type(raw).__name__}",
            [{"field": "input", "problem": "not an object"}],
        )
    try:
        return JobInput.model_validate(raw)
    except ValidationError as exc:
        problems = list(dict.fromkeys(_explain(err) for err in exc.errors()))
        shown = "; ".join(f"{field}: {problem}" for field, problem in problems[:5])
        if len(problems) > 5:
            shown += f" (and {len(problems) - 5} more)"
        raise InvalidInput(
            shown, [{"field": field, "problem": problem} for field, problem in problems]
        ) from None


# --- the JSON Schema ---------------------------------------------------------------------------
def job_input_schema() -> dict[str, Any]:
    schema = JobInput.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "comfy-worker job input"
    schema["description"] = (
        "The `input` of a RunPod job sent to comfy-worker. Compatible with "
        "runpod-workers/worker-comfyui 5.x; the other fields are optional additions."
    )
    return schema


def render_schema() -> str:
    return json.dumps(job_input_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SCHEMA_PATH.parent.mkdir(exist_ok=True)
    Path(SCHEMA_PATH).write_text(render_schema())
