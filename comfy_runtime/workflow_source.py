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

from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter, ValidationError

from . import ui_format
from .comfyui.node_definitions import DefinitionsCache
from .contract import EditorWorkflow, GraphNode, JobInput, is_workflow_file
from .errors import InvalidInput, JobError, WorkflowInvalid
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
    max_file_bytes: int,
    models: ModelLookup | None = None,
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """The API graph a job will run; raises the job error that says why not.

    `read_file` fetches or decodes a workflow file within `max_file_bytes`; the editor
    workflow's nodes, expanded, are counted against `max_nodes` before any is built. A
    conversion that followed a frontend never recorded appends a note to `warnings` (or is
    refused, with the job's `strict_conversion`)."""
    strict = job_input.strict_conversion
    workflow: Any = job_input.workflow
    if isinstance(workflow, str) and is_workflow_file(workflow):
        workflow = graph_in_file(_read_workflow_file(workflow, read_file, max_file_bytes),
                                 max_file_bytes)
    if isinstance(workflow, EditorWorkflow):
        if job_input.params:
            raise InvalidInput(
                "params: only used with a bundled workflow name; edit the workflow instead",
                [{"field": "params", "problem": "params with a workflow"}],
            )
        raw = workflow.raw()
        _check_size(raw, max_nodes)
        return editor_to_api(raw, definitions, max_nodes, strict=strict, warnings=warnings)
    return registry.resolve(
        workflow,
        job_input.params,
        input_names=[item.name for item in job_input.images],
        models=models,
        convert=lambda editor: editor_to_api(editor, definitions, max_nodes, strict=strict,
                                             warnings=warnings),
    )


def editor_to_api(workflow: dict[str, Any], definitions: DefinitionsCache, max_nodes: int,
                  *, strict: bool = False, warnings: list[str] | None = None) -> dict[str, Any]:
    """The API graph ComfyUI's frontend would queue for `workflow`, or `WorkflowInvalid`."""
    try:
        graph = ui_format.to_api_with_definitions(workflow, definitions.editor(), max_nodes)
    except ui_format.UnknownNodeTypes:
        definitions.forget()  # classes installed since the definitions were fetched?
        try:
            graph = ui_format.to_api_with_definitions(workflow, definitions.editor(), max_nodes)
        except ui_format.ConversionError as exc:
            raise _refusal(exc) from None
    except ui_format.ConversionError as exc:
        raise _refusal(exc) from None
    _note_frontend(definitions.frontend(), strict, warnings)
    return graph


def _note_frontend(choice: ui_format.FrontendChoice, strict: bool,
                   warnings: list[str] | None) -> None:
    """Say when the conversion followed a frontend other than the one ComfyUI serves."""
    note = choice.note()
    if note is None:
        return
    if strict:
        raise WorkflowInvalid(
            f"workflow: {note}; refused because the job asks for strict_conversion",
            [{"field": "strict_conversion", "problem": "frontend never recorded",
              "frontend": choice.asked, "converted_as": choice.follows}],
        )
    if warnings is not None and note not in warnings:
        warnings.append(note)


def _read_workflow_file(value: str, read_file: Callable[[str], bytes], max_bytes: int) -> bytes:
    """The file's bytes; past `max_bytes` (the reader stops there) a refusal naming the
    workflow file's own limit rather than an input's."""
    try:
        data = read_file(value)
    except JobError as exc:
        if any(d.get("reason") == "too_large" or d.get("problem") == "too large"
               for d in exc.details):
            raise _file_too_large(max_bytes) from None
        raise
    if len(data) > max_bytes:
        raise _file_too_large(max_bytes)
    return data


def _file_too_large(max_bytes: int) -> InvalidInput:
    return InvalidInput(
        f"workflow: the workflow file is larger than MAX_WORKFLOW_FILE_BYTES ({max_bytes} "
        "bytes); send the workflow itself, or an image ComfyUI saved",
        [{"field": "workflow", "problem": "too large", "limit_bytes": max_bytes}],
    )


# Links and slots (inputs, outputs, the link ids each output lists) the file may hold per node
# MAX_GRAPH_NODES allows: the densest editor workflow in the recorded templates and hand-made
# cases holds 8.8 per node, and converting costs about 13 us per entry, so a file at this bound
# converts in well under a second however its entries are arranged (one PrimitiveNode listing
# 100,000 links took 1.4 s before it was counted).
ENTRIES_PER_NODE = 32


def _check_size(raw: dict[str, Any], max_nodes: int) -> None:
    """The nodes the file holds (subgraph definitions and group node members included), and
    their links and slots, counted before converting; what the nodes expand to is the
    converter's count. Shapes that are not lists are left to the converter, which refuses them
    naming where they are."""
    graphs = [raw, *_listed(raw.get("definitions"), "subgraphs")]
    extra = raw.get("extra")
    groups = extra.get("groupNodes") if isinstance(extra, dict) else None
    graphs += [group for group in (groups.values() if isinstance(groups, dict) else [])
               if isinstance(group, dict)]
    nodes = [node for graph in graphs for node in _listed(graph, "nodes")]
    count = len(nodes)
    if count > max_nodes:
        raise InvalidInput(
            f"workflow: {count} nodes (subgraphs and group nodes included), more than the "
            f"{max_nodes} allowed (MAX_GRAPH_NODES)",
            [{"field": "workflow", "problem": "too many nodes", "limit": max_nodes}],
        )
    entries = sum(len(_listed(graph, "links")) for graph in graphs)
    for node in nodes:
        outputs = _listed(node, "outputs")
        entries += len(_listed(node, "inputs")) + len(outputs)
        entries += sum(len(_listed(output, "links")) for output in outputs)
    limit = ENTRIES_PER_NODE * max_nodes
    if entries > limit:
        raise InvalidInput(
            f"workflow: {entries} links and node slots, more than the {limit} allowed "
            f"({ENTRIES_PER_NODE} per node of MAX_GRAPH_NODES)",
            [{"field": "workflow", "problem": "too many links", "limit": limit}],
        )


def _listed(holder: Any, key: str) -> list[Any]:
    """`holder[key]` where both are what a well-formed file has there; else nothing to count."""
    value = holder.get(key) if isinstance(holder, dict) else None
    return value if isinstance(value, list) else []


def _refusal(exc: ui_format.ConversionError) -> WorkflowInvalid:
    if isinstance(exc, ui_format.TooManyNodes):
        return WorkflowInvalid(
            f"workflow: {exc.message} (MAX_GRAPH_NODES)",
            [{"field": "workflow", "problem": "too many nodes", "limit": exc.limit,
              "count": exc.count}],
        )
    details = [dict(item) for item in exc.details] or [{"problem": exc.message}]
    return WorkflowInvalid(f"workflow: {str(exc)}".replace("\n", "; "), details)


def graph_in_file(data: bytes, max_bytes: int) -> dict[str, GraphNode] | EditorWorkflow:
    """The workflow inside a file ComfyUI wrote: its API prompt if it has one, else its
    editor workflow; a JSON file holds either. Texts past `max_bytes`, or past what
    `ui_format.load_json` allows, are refused before they are parsed."""
    if data.lstrip()[:1] == b"{":
        try:
            return _parse(ui_format.load_json(data, max_bytes, "the workflow file"))
        except ui_format.ConversionError as exc:
            raise _unreadable(exc) from None
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
        prompt, editor = ui_format.read_image_workflow(data, max_bytes)
    except ui_format.ConversionError as exc:
        raise _unreadable(exc) from None
    except Exception as exc:  # noqa: BLE001 (whatever Pillow raises, the file is unreadable)
        raise InvalidInput(f"workflow: the image cannot be read ({type(exc).__name__})",
                           [{"field": "workflow", "problem": "unreadable file"}]) from None
    if prompt is None and editor is None:
        raise InvalidInput(_NO_METADATA, [{"field": "workflow", "problem": "no workflow in file"}])
    return _parse(prompt if prompt is not None else editor)


def _unreadable(exc: ui_format.ConversionError) -> InvalidInput:
    limit = " (MAX_WORKFLOW_FILE_BYTES)" if isinstance(exc, ui_format.TooLarge) else ""
    return InvalidInput(f"workflow: {exc.message}{limit}",
                        [{"field": "workflow", "problem": exc.message}])


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
