"""Checks on a graph before it reaches ComfyUI: size, and file references that escape.

ComfyUI resolves a LoadImage-style file name inside its input folder, but a name with `..` or
an absolute path points elsewhere, and ComfyUI's API on 127.0.0.1 is unauthenticated: the
job input must not be a way to read the worker's other files or models.
"""

from __future__ import annotations

from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from .errors import InvalidInput


def check_graph(graph: dict[str, Any], *, max_nodes: int) -> None:
    """Raise `InvalidInput` naming the node and input of the first problem found."""
    if not graph:
        raise InvalidInput(
            "workflow: the graph has no nodes", [{"field": "workflow", "problem": "empty"}]
        )
    if len(graph) > max_nodes:
        raise InvalidInput(
            f"workflow: {len(graph)} nodes, more than the {max_nodes} allowed (MAX_GRAPH_NODES)",
            [{"field": "workflow", "problem": "too many nodes", "limit": max_nodes}],
        )
    for node_id, node in graph.items():
        for name, value in node.get("inputs", {}).items():
            if isinstance(value, str) and _escapes(value):
                field = f"workflow.{node_id}.inputs.{name}"
                raise InvalidInput(
                    f"{field}: {value!r} points outside the job's files; refer to an input by "
                    "the name given in `images`",
                    [{"field": field, "problem": "path outside the job's files"}],
                )


def _escapes(value: str) -> bool:
    """A file-like reference that climbs out of, or starts outside, ComfyUI's folders."""
    if "\x00" in value:
        return True
    text = value.split(" [", 1)[0].strip()  # ComfyUI's "name.png [input]" annotation
    if "\n" in text or len(text) > 1024:
        return False  # prose (a prompt), not a path
    posix, windows = PurePosixPath(text), PureWindowsPath(text)
    if posix.is_absolute() or windows.is_absolute() or windows.drive:
        return _looks_like_file(text)
    return ".." in posix.parts or ".." in windows.parts


def _looks_like_file(text: str) -> bool:
    # "/" alone or a sentence starting with "/" in a prompt is not a file reference.
    parts = max(len(PurePosixPath(text).parts), len(PureWindowsPath(text).parts))
    return " " not in text.strip() and parts > 1
