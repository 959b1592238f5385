"""The editor's `%Node.widget%` text replacement in save nodes' `filename_prefix`.

When queueing, the frontend rewrites `%X.w%` in the file name prefix of its save nodes (and in
PrimitiveNodes that ask for it) with the value of widget `w` on the first node whose
"Node name for S&R" property, or else title, is `X`, with characters that are unsafe in file
names replaced by `_`. `%date:...%` takes the browser's clock, which cannot be reproduced, so
it is refused; other patterns stay as written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from .configure import Graph, Node
from .errors import UnsupportedStructure, problem
from .values import js_number

SAVE_NODE_TYPES = frozenset({
    "SaveImage", "SaveAnimatedWEBP", "SaveWEBM", "SaveAudio", "SaveGLB", "SaveAnimatedPNG",
    "CLIPSave", "VAESave", "ModelSave", "LoraSave", "SaveLatent",
})
_PATTERN = re.compile(r"%([^%]+)%")
_UNSAFE = re.compile(r'[/?<>\\:*|"\x00-\x1f\x7f]')
_SR_PROPERTY = "Node name for S&R"


def js_string(value: Any) -> str:
    """String(value) as JavaScript writes it, for the scalars a widget holds."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return _js_number_string(value)
    raise TypeError(type(value).__name__)


def _js_number_string(value: int | float) -> str:
    number = js_number(value)
    if number is None:
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(number, int):
        return str(number)
    sign, digits_t, exponent = Decimal(repr(number)).normalize().as_tuple()
    digits = "".join(map(str, digits_t))
    k, n = len(digits), len(digits) + int(exponent)
    prefix = "-" if sign else ""
    if k <= n <= 21:
        return prefix + digits + "0" * (n - k)
    if 0 < n <= 21:
        return prefix + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return prefix + "0." + "0" * -n + digits
    e = n - 1
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{prefix}{mantissa}e{'+' if e > 0 else '-'}{abs(e)}"


def _all_nodes(graph: Graph, seen: set[int]) -> Iterator[Node]:
    # The frontend lists a subgraph's contents before the instance node itself. A definition
    # used again holds the same nodes, which cannot come first a second time: walked once.
    for node in graph.nodes.values():
        if node.subgraph is not None and id(node.subgraph) not in seen:
            seen.add(id(node.subgraph))
            yield from _all_nodes(node.subgraph, seen)
        yield node


def _sr_name(node: Node) -> Any:
    properties = (node.raw.data.get("properties") if node.raw else None) or {}
    if _SR_PROPERTY in properties:
        return properties[_SR_PROPERTY]
    # The frontend gives every definition-built node except save nodes this property.
    if node.kind == "comfy" and node.type not in SAVE_NODE_TYPES:
        return node.type
    return None


class NodeIndex:
    """The first node of each "Node name for S&R" and of each title, in the frontend's order;
    made once per conversion, on the first `%...%` that needs it."""

    def __init__(self, root: Graph, title: Callable[[Node], str]) -> None:
        self.root, self.title = root, title
        self._by_name: dict[str, Node] | None = None
        self._by_title: dict[str, Node] = {}

    def find(self, name: str) -> Node | None:
        if self._by_name is None:
            self._by_name = {}
            for node in _all_nodes(self.root, set()):
                sr_name = _sr_name(node)
                if isinstance(sr_name, str):
                    self._by_name.setdefault(sr_name, node)
                self._by_title.setdefault(self.title(node), node)
        return self._by_name.get(name) or self._by_title.get(name)


def apply_replacements(text: str, index: NodeIndex, where: Node) -> str:
    """`text` with each `%Node.widget%` replaced by the value of that widget."""
    if "%" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        parts = match.group(1).split(".")
        if len(parts) != 2:
            if parts[0].startswith("date:"):
                text_ = f"'{match.group(0)}' is filled in from the browser's clock when queued"
                raise UnsupportedStructure(text_, [problem(where.id, where.type, text_)])
            return match.group(0)
        found = index.find(parts[0])
        widget = found.widget(parts[1]) if found is not None else None
        if widget is None:
            return match.group(0)
        try:
            return _UNSAFE.sub("_", js_string(widget.value))
        except TypeError as exc:
            text_ = f"'{match.group(0)}' refers to a widget holding a {exc}"
            raise UnsupportedStructure(text_, [problem(where.id, where.type, text_)]) from exc

    return _PATTERN.sub(replace, text)
