"""Checks on a graph before it reaches ComfyUI: size, shape, and file references that escape.

ComfyUI resolves a LoadImage-style file name inside its input folder, but a name with `..` or
an absolute path points elsewhere, and ComfyUI's API on 127.0.0.1 is unauthenticated: the
job input must not be a way to read the worker's other files or models. Every string in a
node's inputs, at any depth, is judged; a string that is exactly the name of one of the job's
own inputs is let through, because `job_files.isolate` replaces it with that input's path in
the job's folder before the graph is sent.

Input values are walked without recursion and refused past `MAX_VALUE_DEPTH` levels: real
graphs hold scalars, links (`["4", 0]`) and the odd small object, while a value nested
thousands deep would otherwise end the job in a RecursionError (or pydantic's own depth
limit) instead of an error the client can read.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from .errors import InvalidInput

MAX_VALUE_DEPTH = 32
"""Deepest nesting of lists and objects inside one node input."""

# Longer strings, or strings with a line break, are prose (a prompt), not file references.
_MAX_PATH_LENGTH = 1024


def check_graph(
    graph: dict[str, Any], *, max_nodes: int, input_names: Collection[str] = ()
) -> None:
    """Raise `InvalidInput` naming the node and input of the first problem found.

    `input_names` are the names the job's `images` were given: references to them are the
    job's own files, whatever characters the names hold.
    """
    if not graph:
        raise InvalidInput(
            "workflow: the graph has no nodes", [{"field": "workflow", "problem": "empty"}]
        )
    if len(graph) > max_nodes:
        raise InvalidInput(
            f"workflow: {len(graph)} nodes, more than the {max_nodes} allowed (MAX_GRAPH_NODES)",
            [{"field": "workflow", "problem": "too many nodes", "limit": max_nodes}],
        )
    own = set(input_names)
    for node_id, node in graph.items():
        inputs = node.get("inputs", {}) if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            field = f"workflow.{node_id}"
            raise InvalidInput(
                f"{field}: expected a node object with `class_type` and an `inputs` object",
                [{"field": field, "problem": "not a node"}],
            )
        for path, value, depth in walk_inputs(inputs):
            if depth > MAX_VALUE_DEPTH:
                # The top-level input: a path 33 levels long says nothing more.
                raise _too_deep(f"workflow.{node_id}.inputs.{_top_key(path)}")
            field = f"workflow.{node_id}.inputs.{path}"
            if isinstance(value, str) and value not in own and _escapes(value):
                raise InvalidInput(
                    f"{field}: {value!r} points outside the job's files; refer to an input by "
                    "the name given in `images`",
                    [{"field": field, "problem": "path outside the job's files"}],
                )


def check_nesting(inputs: dict[str, Any]) -> dict[str, Any]:
    """`inputs` unchanged, or ValueError naming the input nested past `MAX_VALUE_DEPTH`.

    For a pydantic validator on a node's inputs (or a whole editor workflow), which runs
    before anything serialises them. Only lists and objects are visited, and no path is
    built: an editor workflow's millions of numbers cost a type check each, nothing more.
    """
    for key, value in inputs.items():
        if isinstance(value, dict | list | tuple) and not _within_depth(value, 1):
            raise ValueError(
                f"the input {str(key)!r} is nested more than {MAX_VALUE_DEPTH} levels deep"
            )
    return inputs


def _within_depth(value: dict[str, Any] | list[Any] | tuple[Any, ...], depth: int) -> bool:
    # `depth` is that of the children. Recursion is safe: it stops MAX_VALUE_DEPTH deep.
    for child in value.values() if isinstance(value, dict) else value:
        if depth > MAX_VALUE_DEPTH:
            return False
        if isinstance(child, dict | list | tuple) and not _within_depth(child, depth + 1):
            return False
    return True


def walk_inputs(inputs: dict[str, Any]) -> Iterator[tuple[str, Any, int]]:
    """(path, value, depth) for every value in `inputs`, depth first, without recursion.

    Top-level inputs have depth 0 and paths like `image`; nested values `mask[0].x`. Values
    deeper than `MAX_VALUE_DEPTH` are yielded but not descended into, so a caller can refuse
    them without the walk itself going on for ever.
    """
    stack: list[tuple[str, Any, int]] = [
        (str(key), value, 0) for key, value in reversed(list(inputs.items()))
    ]
    while stack:
        path, value, depth = stack.pop()
        yield path, value, depth
        if depth > MAX_VALUE_DEPTH:
            continue
        if isinstance(value, dict):
            stack.extend(
                (f"{path}.{key}", item, depth + 1) for key, item in reversed(list(value.items()))
            )
        elif isinstance(value, list | tuple):
            stack.extend(
                (f"{path}[{index}]", item, depth + 1)
                for index, item in reversed(list(enumerate(value)))
            )


def _top_key(path: str) -> str:
    return path.split("[", 1)[0].split(".", 1)[0]


def _too_deep(field: str) -> InvalidInput:
    return InvalidInput(
        f"{field}: nested more than {MAX_VALUE_DEPTH} levels deep; node inputs are plain "
        'values, links like ["4", 0] or small objects',
        [{"field": field, "problem": "nested too deep", "limit": MAX_VALUE_DEPTH}],
    )


def _escapes(value: str) -> bool:
    """A file-like reference that climbs out of, or starts outside, ComfyUI's folders."""
    if "\x00" in value:
        return True
    text = value.split(" [", 1)[0].strip()  # ComfyUI's "name.png [input]" annotation
    if "\n" in text or len(text) > _MAX_PATH_LENGTH:
        return False
    posix, windows = PurePosixPath(text), PureWindowsPath(text)
    if posix.is_absolute() or windows.is_absolute() or windows.drive:
        return _looks_like_file(text)
    return ".." in posix.parts or ".." in windows.parts


def _looks_like_file(text: str) -> bool:
    # "/" alone, or a prompt such as "/imagine a red fox", is not a file reference; but
    # "/home/me/My Pictures/x.png" is, spaces or not: ComfyUI joins an absolute name onto its
    # input folder and gets the absolute name back.
    parts = max(len(PurePosixPath(text).parts), len(PureWindowsPath(text).parts))
    return parts > 2 or (parts == 2 and " " not in text)
