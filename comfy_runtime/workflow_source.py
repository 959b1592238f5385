"""A job's `workflow` field, whatever form it comes in, as the API graph ComfyUI runs.

* An API graph is used as it is.
* An editor workflow (what ComfyUI's "Save" writes) is converted exactly as ComfyUI's own
  frontend would (`ui_format`), against the node definitions of the ComfyUI that will run it.
  A workflow naming a class those definitions lack is tried once more with definitions
  fetched again (a node installed since), then refused naming every missing type.
* A file ComfyUI wrote (PNG or WebP with metadata, or a JSON file), sent as base64, a data: URI
  or an http(s) URL like any input: its embedded API prompt is used as is; without one, its
  editor workflow is converted.
* A bundled workflow's name, with its parameters (`workflows`); bundled workflows may be
  saved in editor format too.

Whatever the source, the result then meets the same checks as any API graph (`graph_checks`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter, ValidationError

from . import ui_format
from .comfyui.node_definitions import DefinitionsCache
from .contract import EditorWorkflow, GraphNode, JobInput, is_workflow_file
from .errors import InvalidInput, WorkflowInvalid
from .workflows import ModelLookup, WorkflowRegistry

_PNG = b"\x89PNG\r\n\x1a\n"
_API_GRAPH: TypeAdapter[dict[str, GraphNode]] = TypeAdapter(dict[str, GraphNode])
_NO_METADATA = (
    "workflow: the file carries no ComfyUI workflow (ComfyUI writes one into its PNG and WebP "
    "images unless started with --disable-metadata); send the image ComfyUI saved, or the "
    "workflow itself"
)


def resolve_workflow(
    job_input: JobInput,
    *,
    registry: WorkflowRegistry,
    definitions: DefinitionsCache,
    read_file: Callable[[str], bytes],
    max_nodes: int,
    models: ModelLookup | None = None,
) -> dict[str, Any]:
    """The API graph a job will run; raises the job error that says why not."""
    workflow: Any = job_input.workflow
    if isinstance(workflow, str) and is_workflow_file(workflow):
        workflow = graph_in_file(read_file(workflow))
    if isinstance(workflow, EditorWorkflow):
        if job_input.params:
            raise InvalidInput(
                "params: only used with a bundled workflow name; edit the workflow instead",
                [{"field": "params", "problem": "params with a workflow"}],
            )
        _check_size(workflow, max_nodes)
        return editor_to_api(workflow.raw(), definitions)
    return registry.resolve(
        workflow,
        job_input.params,
        input_names=[item.name for item in job_input.images],
        models=models,
        convert=lambda editor: editor_to_api(editor, definitions),
    )


def editor_to_api(workflow: dict[str, Any], definitions: DefinitionsCache) -> dict[str, Any]:
    """The API graph ComfyUI's frontend would queue for `workflow`, or `WorkflowInvalid`."""
    try:
        return ui_format.to_api_with_definitions(workflow, definitions.editor())
    except ui_format.UnknownNodeTypes:
        definitions.forget()  # classes installed since the definitions were fetched?
        try:
            return ui_format.to_api_with_definitions(workflow, definitions.editor())
        except ui_format.ConversionError as exc:
            raise _refusal(exc) from None
    except ui_format.ConversionError as exc:
        raise _refusal(exc) from None


def _check_size(workflow: EditorWorkflow, max_nodes: int) -> None:
    """Counted before converting: the limit on the graph is also a limit on the work."""
    definitions = workflow.raw().get("definitions")
    subgraphs = definitions.get("subgraphs", []) if isinstance(definitions, dict) else []
    count = len(workflow.nodes) + sum(
        len(sub.get("nodes") or []) for sub in subgraphs if isinstance(sub, dict)
    )
    if count > max_nodes:
        raise InvalidInput(
            f"workflow: {count} nodes (subgraphs included), more than the {max_nodes} allowed "
            "(MAX_GRAPH_NODES)",
            [{"field": "workflow", "problem": "too many nodes", "limit": max_nodes}],
        )


def _refusal(exc: ui_format.ConversionError) -> WorkflowInvalid:
    details = [dict(item) for item in exc.details] or [{"problem": exc.message}]
    return WorkflowInvalid(f"workflow: {str(exc)}".replace("\n", "; "), details)


def graph_in_file(data: bytes) -> dict[str, GraphNode] | EditorWorkflow:
    """The workflow inside a file ComfyUI wrote: its API prompt if it has one, else its
    editor workflow; a JSON file holds either."""
    if data.lstrip()[:1] == b"{":
        try:
            return _parse(json.loads(data))
        except ValueError:
            pass  # not JSON after all: perhaps an image
    if not data.startswith(_PNG) and not (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        # Only the formats ComfyUI writes workflows into: Pillow's other openers do more
        # than read headers (EPS runs Ghostscript).
        raise InvalidInput(
            "workflow: a workflow file must be a PNG or WebP image ComfyUI saved, or JSON",
            [{"field": "workflow", "problem": "unsupported file type"}],
        )
    try:
        prompt, editor = ui_format.read_image_workflow(data)
    except Exception as exc:  # noqa: BLE001 (whatever Pillow raises, the file is unreadable)
        raise InvalidInput(f"workflow: the image cannot be read ({type(exc).__name__})",
                           [{"field": "workflow", "problem": "unreadable file"}]) from None
    if prompt is None and editor is None:
        raise InvalidInput(_NO_METADATA, [{"field": "workflow", "problem": "no workflow in file"}])
    return _parse(prompt if prompt is not None else editor)


def _parse(value: Any) -> dict[str, GraphNode] | EditorWorkflow:
    try:
        if isinstance(value, dict) and isinstance(value.get("nodes"), list):
            return EditorWorkflow.model_validate(value)
        return _API_GRAPH.validate_python(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise InvalidInput(
            f"workflow: the file's workflow is not one ComfyUI could run ({where}: "
            f"{first['msg']})",
            [{"field": "workflow", "problem": "invalid workflow in file", "at": where}],
        ) from None
