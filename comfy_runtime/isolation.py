"""Keep each job's files apart: its inputs and outputs live in a folder of its own.

Inputs are uploaded to `input/job-<id>/` and the graph's references to them rewritten.
Outputs get the same folder through their `filename_prefix`, which matters for more than
tidiness: ComfyUI caches output nodes, so a repeated identical graph would otherwise report
the previous job's file, which that job's cleanup has already removed. A per-job prefix
makes every job's save nodes run and write their own files.
"""

from __future__ import annotations

import uuid
from typing import Any

from .client import UploadedFile
from .naming import safe_filename

PREFIX_INPUT = "filename_prefix"


def job_folder(job_id: str) -> str:
    # The random tail keeps a retried job (same id) clear of its earlier attempt's files.
    return f"job-{safe_filename(job_id).replace(' ', '_')[:64]}-{uuid.uuid4().hex[:8]}"


def isolate(graph: dict[str, Any], folder: str, uploaded: dict[str, UploadedFile]) -> dict[str, Any]:
    """A copy of `graph` reading its inputs from, and saving its outputs to, `folder`."""
    paths = {name: file.graph_path for name, file in uploaded.items()}
    isolated: dict[str, Any] = {}
    for node_id, node in graph.items():
        inputs = dict(node.get("inputs", {}))
        for key, value in inputs.items():
            if isinstance(value, str) and value in paths:
                inputs[key] = paths[value]
        prefix = inputs.get(PREFIX_INPUT)
        if isinstance(prefix, str):
            inputs[PREFIX_INPUT] = f"{folder}/{prefix.lstrip('/')}"
        isolated[node_id] = {**node, "inputs": inputs}
    return isolated


def public_subfolder(subfolder: str, folder: str) -> str:
    """The subfolder as the client's graph named it, without our per-job folder."""
    if subfolder == folder:
        return ""
    return subfolder.removeprefix(folder + "/")
