"""What ComfyUI's error reports mean, as the job errors a client sees (`errors`).

`errors` is the tree of codes; this module reads ComfyUI's reports and picks the code and the
words. A refused prompt becomes `WorkflowInvalid` (or `MissingModel`); a node that raised
while running becomes `ExecutionFailed` with the node, the exception and the end of the
traceback, and with the facts the worker acts on (`out_of_memory`, `fatal_gpu`) set here,
where the report is read.

ComfyUI answers `POST /prompt` with `{"error": {type, message, details}, "node_errors":
{node_id: {class_type, errors: [{type, message, details, extra_info}]}}}`, either as a 400 or,
when only some outputs failed, as a 200. The message we build names the node, its class and
the input, and for a model that is not there, what is.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import ExecutionFailed, JobError, MissingModel, WorkflowInvalid
from .events import ExecutionError
from .run_record import FinishedRun

MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx")
_NODE_ID = re.compile(r"Node ID '#?([^']+)'")
_MAX_LISTED = 20
_TRACEBACK_LINES = 6


def rejected_prompt_error(body: Any) -> WorkflowInvalid:
    """The error for a refused prompt, given ComfyUI's JSON answer."""
    body = body if isinstance(body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    node_errors = body.get("node_errors") if isinstance(body.get("node_errors"), dict) else {}
    problems = [
        _problem(node_id, node.get("class_type", "?"), item)
        for node_id, node in node_errors.items()
        if isinstance(node, dict)
        for item in node.get("errors", [])
        if isinstance(item, dict)
    ]
    if not problems:
        return WorkflowInvalid(_graph_level_message(error), [_graph_level_detail(error)])

    missing = [p for p in problems if p["type"] == "value_not_in_list" and _is_model(p)]
    lines = [p["text"] for p in (missing or problems)]
    summary = "; ".join(lines[:3]) + (f" (and {len(lines) - 3} more)" if len(lines) > 3 else "")
    details = [{k: v for k, v in p.items() if k != "text"} for p in problems]
    if missing:
        return MissingModel(summary, details)
    return WorkflowInvalid(f"ComfyUI refused the workflow: {summary}", details)


def _problem(node_id: str, class_type: str, item: dict[str, Any]) -> dict[str, Any]:
    raw_extra = item.get("extra_info")
    extra: dict[str, Any] = raw_extra if isinstance(raw_extra, dict) else {}
    input_name = extra.get("input_name")
    problem: dict[str, Any] = {
        "node_id": node_id,
        "class_type": class_type,
        "input": input_name,
        "type": item.get("type", ""),
        "message": item.get("message", ""),
        "details": item.get("details", ""),
    }
    if "received_value" in extra:
        problem["received_value"] = extra["received_value"]
    options = _options(extra.get("input_config"))
    where = f"node {node_id} ({class_type})" + (f" input '{input_name}'" if input_name else "")
    if problem["type"] == "value_not_in_list" and options is not None:
        problem["available"] = options
        shown = ", ".join(map(str, options[:_MAX_LISTED])) or "none"
        if len(options) > _MAX_LISTED:
            shown += f", ... ({len(options)} in all)"
        problem["text"] = (
            f"{where}: {extra.get('received_value')!r} is not available; available: {shown}"
        )
    else:
        explanation = item.get("message", "invalid")
        if item.get("details") and item.get("details") != input_name:
            explanation += f" ({item['details']})"
        problem["text"] = f"{where}: {explanation}"
    return problem


def _options(config: Any) -> list[Any] | None:
    # A combo input's config is [[option, ...], {...}] (or ["COMBO", {"options": [...]}]).
    if isinstance(config, list) and config:
        if isinstance(config[0], list):
            return config[0]
        if len(config) > 1 and isinstance(config[1], dict) and "options" in config[1]:
            return list(config[1]["options"])
    return None


def _is_model(problem: dict[str, Any]) -> bool:
    values = [problem.get("received_value"), *problem.get("available", [])]
    return any(isinstance(v, str) and v.lower().endswith(MODEL_EXTENSIONS) for v in values)


def _graph_level_message(error: dict[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "prompt_no_outputs":
        return (
            "the workflow has no output node: add one such as SaveImage, PreviewImage or "
            "SaveVideo"
        )
    message = error.get("message") or "ComfyUI refused the workflow"
    details = error.get("details")
    if details and details != message:
        message = f"{message} ({details})"
    return f"ComfyUI refused the workflow: {message}"


def _graph_level_detail(error: dict[str, Any]) -> dict[str, Any]:
    detail: dict[str, Any] = {"type": error.get("type", ""), "message": error.get("message", "")}
    match = _NODE_ID.search(str(error.get("details", "")))
    if match:
        detail["node_id"] = match.group(1)
    return detail


# --- failures while running ---------------------------------------------------------------
# Errors after which the GPU (or its driver) is not trusted again in this process.
_FATAL_GPU_MARKERS = (
    "CUDA error",
    "illegal memory access",
    "device-side assert",
    "CUBLAS_STATUS",
    "cuDNN error",
    "NVML",
)


def run_failure(run: FinishedRun) -> JobError | None:
    """Why a finished run failed, or None when it succeeded."""
    if run.error is not None:
        return execution_error(run.error)
    if run.interrupted is not None:
        node = run.interrupted.node_id
        return ExecutionFailed(
            f"ComfyUI interrupted the run at node {node} ({run.interrupted.node_type}): "
            "something other than this job stopped it",
            {"node_id": node, "class_type": run.interrupted.node_type},
        )
    if not run.succeeded:
        return ExecutionFailed("ComfyUI reports the run failed without saying why", [])
    return None


def execution_error(event: ExecutionError) -> ExecutionFailed:
    """The error for ComfyUI's `execution_error` report (from the websocket or history)."""
    message = event.exception_message.strip()
    traceback = [line.rstrip() for line in event.traceback][-_TRACEBACK_LINES:]
    first_line = message.splitlines()[0] if message else ""
    summary = (
        f"node {event.node_id} ({event.node_type}) failed: {event.exception_type}: {first_line}"
    ).rstrip(": ")
    out_of_memory = "OutOfMemory" in event.exception_type or "out of memory" in message.lower()
    if out_of_memory:
        summary += (
            "; the GPU ran out of memory: use a smaller size or batch, or start ComfyUI with "
            "COMFYUI_ARGS=--lowvram"
        )
    text = "\n".join([message, *event.traceback])
    return ExecutionFailed(
        summary,
        {
            "node_id": event.node_id,
            "class_type": event.node_type,
            "exception_type": event.exception_type,
            "exception_message": message,
            "traceback": traceback,
        },
        out_of_memory=out_of_memory,
        fatal_gpu=any(marker in text for marker in _FATAL_GPU_MARKERS),
    )
