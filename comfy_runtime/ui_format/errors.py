"""Why an editor workflow was refused, as a small tree of exceptions.

The converter never returns a graph that differs from what ComfyUI's frontend would queue:
whatever it cannot reproduce exactly is refused with one of these, each carrying a list of
`{node_id, class_type, problem}` details a person can act on:

    ConversionError ............... base: the workflow could not be converted
    ├── UnknownNodeTypes .......... node types the node definitions do not hold (custom nodes)
    ├── BrokenLink ................ a link points at a node, slot or link that does not exist
    ├── WidgetMismatch ............ saved widget values do not fit the node's definition
    ├── UnsupportedStructure ...... something the converter does not reproduce exactly
    ├── TooManyNodes .............. it flattens to more nodes than the caller allows
    └── TooLarge .................. its text is longer than the caller allows

The worker maps every one of them to `workflow_invalid`.
"""

from __future__ import annotations

from typing import Any, TypedDict


class Problem(TypedDict):
    """One thing that did not fit, tied to a node where there is one."""

    node_id: str | None
    class_type: str | None
    problem: str


def problem(node_id: Any, class_type: str | None, text: str) -> Problem:
    """Build a detail entry; node ids are reported as the frontend writes them (strings)."""
    return {
        "node_id": None if node_id is None else str(node_id),
        "class_type": class_type,
        "problem": text,
    }


class ConversionError(Exception):
    """The editor workflow cannot be converted exactly; `details` says where and why."""

    def __init__(self, message: str, details: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: list[Problem] = list(details or [])

    def __str__(self) -> str:
        if not self.details:
            return self.message
        lines = [self.message]
        for item in self.details[:20]:
            where = f"node {item['node_id']}" if item["node_id"] is not None else "workflow"
            kind = f" ({item['class_type']})" if item["class_type"] else ""
            lines.append(f"  {where}{kind}: {item['problem']}")
        if len(self.details) > 20:
            lines.append(f"  ... and {len(self.details) - 20} more")
        return "\n".join(lines)


class UnknownNodeTypes(ConversionError):
    """Node types that ComfyUI's node definitions do not hold, probably custom nodes."""


class BrokenLink(ConversionError):
    """A link refers to a node, slot or link record that is not in the workflow."""


class WidgetMismatch(ConversionError):
    """Saved widget values do not fit the widgets the node definition creates."""


class UnsupportedStructure(ConversionError):
    """A part of the workflow the converter cannot reproduce exactly, so it refuses."""


class TooManyNodes(ConversionError):
    """The workflow flattens to more nodes than allowed; counted before anything is built."""

    def __init__(self, count: int, limit: int, capped: bool = False) -> None:
        amount = f"more than {count}" if capped else str(count)
        text = (f"the workflow expands to {amount} nodes (subgraph instances times their "
                f"contents, group nodes times their members), more than the {limit} allowed")
        super().__init__(text, [problem(None, None, text)])
        self.count, self.limit = count, limit


class TooLarge(ConversionError):
    """A workflow's text (a file, or a chunk of an image) is past the caller's size limit."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        text = f"{what} is {size} bytes, more than the {limit} allowed"
        super().__init__(text, [problem(None, None, text)])
        self.size, self.limit = size, limit


def refuse(cls: type[ConversionError], node_id: Any, class_type: str | None, text: str) -> None:
    """Raise `cls` for a single problem; the message repeats it so logs stay one line."""
    raise cls(text, [problem(node_id, class_type, text)])
