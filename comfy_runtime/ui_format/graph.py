"""The editor workflow read into plain objects: graphs, nodes, slots, links, subgraphs.

Only structure is read here; what each node becomes once the frontend has configured it
(widgets, input order) is `configure.py`'s job. Both link layouts are accepted: the 0.4
schema's arrays `[id, origin_id, origin_slot, target_id, target_slot, type]` and the 1.0
schema's (and every subgraph's) objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .errors import BrokenLink, UnsupportedStructure, problem

# Subgraph links start at the subgraph's input node and end at its output node, which the
# frontend numbers with these reserved ids.
SUBGRAPH_INPUT_ID = "-10"
SUBGRAPH_OUTPUT_ID = "-20"
# Slot numbers past JavaScript's exact integers cannot come from the editor.
_MAX_SLOT = 2**53 - 1


@dataclass
class Link:
    id: Any
    origin_id: str
    origin_slot: int
    target_id: str
    target_slot: int
    type: Any


@dataclass
class InSlot:
    name: str
    type: Any
    link: Any
    widget: str | None = None


@dataclass
class OutSlot:
    name: str
    type: Any
    links: list[Any]


@dataclass
class IOSlot:
    """A subgraph's own input or output, with the ids of the links inside it."""

    name: str
    type: Any
    link_ids: list[Any]


@dataclass
class RawNode:
    data: dict[str, Any]
    id: str
    type: str
    mode: int
    _inputs: list[InSlot] | None = None


@dataclass
class RawGraph:
    nodes: list[RawNode]
    links: dict[Any, Link]
    subgraph_id: str | None = None
    name: str = ""
    inputs: list[IOSlot] = field(default_factory=list)
    outputs: list[IOSlot] = field(default_factory=list)


def _bad(text: str, node_id: Any = None, class_type: str | None = None) -> UnsupportedStructure:
    return UnsupportedStructure(text, [problem(node_id, class_type, text)])


def _int(value: Any, what: str) -> int:
    if type(value) is int:  # the common case, kept cheap
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _bad(f"{what} is not a number: {value!r}")
    try:
        number = int(value)
    except (ValueError, OverflowError) as exc:  # "x", NaN; infinity (JSON's 1e309)
        raise _bad(f"{what} is not a number: {value!r}") from exc
    if number != value and str(number) != value:
        raise _bad(f"{what} is not a whole number: {value!r}")
    if not -_MAX_SLOT <= number <= _MAX_SLOT:
        raise _bad(f"{what} is out of range: {str(value)[:40]}")
    return number


def _link_id(value: Any, what: str, node: RawNode | None = None) -> Any:
    """Link ids are numbers in every format the editor writes."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    where = (node.id, node.type) if node else (None, None)
    raise _bad(f"{what} has link id {str(value)[:40]!r}, which is not a number", *where)


def _items(value: Any, what: str, node: RawNode | None = None) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        where = (node.id, node.type) if node else (None, None)
        raise _bad(f"{what} is not a list", *where)
    return value


def _link(raw: Any) -> Link:
    if isinstance(raw, list) and len(raw) >= 5:
        link_id, origin, oslot, target, tslot = raw[:5]
        ltype = raw[5] if len(raw) > 5 else None
    elif isinstance(raw, dict) and "id" in raw:
        link_id, origin, oslot = raw.get("id"), raw.get("origin_id"), raw.get("origin_slot")
        target, tslot, ltype = raw.get("target_id"), raw.get("target_slot"), raw.get("type")
    else:
        raise _bad(f"a link is neither an array nor an object: {str(raw)[:80]}")
    link_id = _link_id(link_id, "a link")
    if link_id is None or not isinstance(origin, (int, str)) or not isinstance(target, (int, str)) \
            or isinstance(origin, bool) or isinstance(target, bool):
        raise _bad(f"link {link_id} has no id, origin or target node")
    return Link(link_id, str(origin), _int(oslot, f"link {link_id} origin slot"), str(target),
                _int(tslot, f"link {link_id} target slot"), ltype)


def _links(raw: Any) -> dict[Any, Link]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise _bad("'links' is not a list")
    result: dict[Any, Link] = {}
    for item in raw:
        if item is None:
            continue  # the frontend skips holes in the links array
        link = _link(item)
        result[link.id] = link
    return result


def _node(raw: Any) -> RawNode:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), (int, str)) \
            or isinstance(raw.get("id"), bool):
        raise _bad(f"a node is not an object with an id: {str(raw)[:80]}")
    node_type = raw.get("type")
    if not isinstance(node_type, str) or not node_type:
        raise _bad("node has no type", raw.get("id"))
    mode = raw.get("mode", 0)
    if mode is None:
        mode = 0
    if isinstance(mode, bool) or not isinstance(mode, int):
        raise _bad(f"node mode {mode!r} is not a number", raw.get("id"), node_type)
    if not isinstance(raw.get("properties") or {}, dict):
        raise _bad("node properties are not an object", raw.get("id"), node_type)
    return RawNode(raw, str(raw["id"]), node_type, mode)


def _io_slots(raw: Any, what: str) -> list[IOSlot]:
    slots = []
    for item in _items(raw, f"subgraph {what}s"):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise _bad(f"subgraph {what} without a name")
        ids = [_link_id(i, f"subgraph {what} '{item['name']}'")
               for i in _items(item.get("linkIds"), f"subgraph {what} links")]
        slots.append(IOSlot(item["name"], item.get("type"), ids))
    return slots


def _graph(data: dict[str, Any], subgraph_id: str | None = None) -> RawGraph:
    nodes = data.get("nodes")
    if not isinstance(nodes, list):
        where = "" if subgraph_id is None else f"subgraph '{subgraph_id}': "
        raise _bad(f"{where}'nodes' is not a list")
    graph = RawGraph([_node(n) for n in nodes], _links(data.get("links")), subgraph_id)
    seen: set[str] = set()
    for node in graph.nodes:
        if node.id in seen:
            raise _bad(f"node id {node.id} is used twice", node.id, node.type)
        seen.add(node.id)
    return graph


def read_workflow(workflow: Any) -> tuple[RawGraph, dict[str, RawGraph]]:
    """The root graph and the subgraph definitions by id."""
    if not isinstance(workflow, dict) or "nodes" not in workflow:
        raise _bad("not an editor workflow: no 'nodes' list")
    root = _graph(workflow)
    subgraphs: dict[str, RawGraph] = {}
    definitions = workflow.get("definitions") or {}
    if not isinstance(definitions, dict):
        raise _bad("'definitions' is not an object")
    for raw in _items(definitions.get("subgraphs"), "definitions.subgraphs"):
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            raise _bad("a subgraph definition has no id")
        sub = _graph(raw, raw["id"])
        sub.name = str(raw.get("name") or raw["id"])
        sub.inputs = _io_slots(raw.get("inputs"), "input")
        sub.outputs = _io_slots(raw.get("outputs"), "output")
        subgraphs[raw["id"]] = sub
    return root, subgraphs


def saved_inputs(node: RawNode) -> list[InSlot]:
    """The node's saved input slots (parsed once; callers copy before changing them)."""
    return [replace(slot) for slot in _inputs_view(node)]


def _inputs_view(node: RawNode) -> list[InSlot]:
    if node._inputs is None:
        node._inputs = _parse_inputs(node)
    return node._inputs


def _parse_inputs(node: RawNode) -> list[InSlot]:
    result = []
    for item in _items(node.data.get("inputs"), "inputs", node):
        if not isinstance(item, dict):
            raise _bad("an input slot is not an object", node.id, node.type)
        widget = item.get("widget")
        widget_name = widget.get("name") if isinstance(widget, dict) else None
        if widget_name is not None and not isinstance(widget_name, str):
            raise _bad("an input's widget name is not text", node.id, node.type)
        link = _link_id(item.get("link"), f"input '{item.get('name')}'", node)
        result.append(InSlot(str(item.get("name", "")), item.get("type"), link, widget_name))
    return result


def saved_outputs(node: RawNode) -> list[OutSlot]:
    result = []
    for item in _items(node.data.get("outputs"), "outputs", node):
        if not isinstance(item, dict):
            raise _bad("an output slot is not an object", node.id, node.type)
        links = [_link_id(i, f"output '{item.get('name')}'", node)
                 for i in _items(item.get("links"), "output links", node)]
        result.append(OutSlot(str(item.get("name", "")), item.get("type"), links))
    return result


def check_links(graph: RawGraph) -> None:
    """Refuse a links table that disagrees with the nodes' input slots.

    The editor repairs such files on load with heuristics of its own (or fails), so a
    converter that guessed could queue a different graph. Output-side leftovers (an output
    listing a link that is gone) are harmless here and are left to the callers.
    """
    nodes = {node.id: node for node in graph.nodes}
    details = []
    for link in graph.links.values():
        if link.origin_id in (SUBGRAPH_INPUT_ID,) or link.target_id == SUBGRAPH_OUTPUT_ID:
            continue
        target, origin = nodes.get(link.target_id), nodes.get(link.origin_id)
        if target is None or origin is None:
            missing = link.target_id if target is None else link.origin_id
            details.append(problem(link.target_id, target.type if target else None,
                                   f"link {link.id} connects node {missing}, which does not exist"))
            continue
        slots = _inputs_view(target)
        if not 0 <= link.target_slot < len(slots) or slots[link.target_slot].link != link.id:
            details.append(problem(target.id, target.type,
                                   f"link {link.id} ends at input {link.target_slot}, "
                                   "which does not hold it"))
    for node in graph.nodes:
        for index, slot in enumerate(_inputs_view(node)):
            if slot.link is None:
                continue
            held = graph.links.get(slot.link)
            if held is None or held.target_id != node.id or held.target_slot != index:
                details.append(problem(node.id, node.type,
                                       f"input '{slot.name}' holds link {slot.link}, which "
                                       "the links table does not end there"))
    if details:
        raise BrokenLink("the workflow's links table and node inputs disagree", details)
