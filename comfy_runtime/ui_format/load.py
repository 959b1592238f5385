"""Load a workflow the way the frontend does before it builds the API graph.

Before anything is built, the nodes it expands to are counted (`count_nodes`). Then order
matters and follows the frontend: unknown types are found first (and refused, all of
them at once), subgraph definitions are configured before the nodes that use them, link
target slots are re-pointed at the reordered inputs, PrimitiveNodes push their value into
their targets, and subgraph instances push their promoted values into the widgets inside.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from .configure import (
    RENAMED_TYPES,
    VIRTUAL_TYPES,
    Graph,
    Node,
    configure_comfy,
    configure_instance,
    configure_virtual,
    takes_target_value,
)
from .definitions import NodeDefinitions
from .errors import TooManyNodes, UnknownNodeTypes, UnsupportedStructure, problem
from .frontends import is_legacy
from .graph import IOSlot, Link, RawGraph, check_links, read_workflow
from .group_nodes import PREFIX, check_legacy_instance, group_configs, missing_inner_types
from .group_subgraphs import groups_to_subgraphs
from .values import UNDEFINED

# What the editor-only members of a group node are (they never reach the API graph).
_INNER_KINDS = {"PrimitiveNode": "primitive", "Reroute": "reroute"}

# --- how many nodes it becomes, counted before anything is built -----------------------------
# A subgraph instance becomes itself plus everything its definition holds, instances inside
# included; a legacy group node itself plus one node per member. A few KB of nested
# definitions can so stand for millions of nodes, and the work follows the expanded count.
# One pass over the definitions, each counted once however often used, saturating at
# COUNT_CAP so the number stays small whatever the nesting.
COUNT_CAP = 10**12
"""Counts stop here: past it the exact number says nothing more, and would grow without end."""


def expanded_count(root: RawGraph, subgraphs: Mapping[str, RawGraph],
                   group_members: Mapping[str, int]) -> int:
    """Nodes `root` flattens to (every node once per place it appears), at most `COUNT_CAP`.

    Node types must already be as the loader sees them (group nodes `workflow>Name`).
    """
    sizes: dict[str, int] = {}
    for sub_id in subgraphs:
        _size_of(sub_id, subgraphs, group_members, sizes)
    return _graph_size(root, sizes, group_members)


def _graph_size(graph: RawGraph, sizes: Mapping[str, int],
                group_members: Mapping[str, int]) -> int:
    total = 0
    for node in graph.nodes:
        total += 1 + sizes.get(node.type, 0) + group_members.get(node.type, 0)
        if total >= COUNT_CAP:
            return COUNT_CAP
    return total


def _size_of(start: str, subgraphs: Mapping[str, RawGraph], group_members: Mapping[str, int],
             sizes: dict[str, int]) -> None:
    """Fill `sizes[start]` and every definition it uses: depth first, without recursion, each
    definition's nodes walked once."""
    if start in sizes:
        return
    stack = [(start, iter(subgraphs[start].nodes))]
    open_ = {start}
    while stack:
        sub_id, rest = stack[-1]
        for node in rest:
            if node.type in subgraphs and node.type not in sizes:
                if node.type in open_:
                    text = f"subgraph '{subgraphs[node.type].name}' contains itself"
                    raise UnsupportedStructure(text, [problem(None, node.type, text)])
                stack.append((node.type, iter(subgraphs[node.type].nodes)))
                open_.add(node.type)
                break
        else:
            sizes[sub_id] = _graph_size(subgraphs[sub_id], sizes, group_members)
            stack.pop()
            open_.discard(sub_id)


def group_member_counts(workflow: dict[str, Any]) -> dict[str, int]:
    """Members per legacy group node type (`workflow>Name`), from `extra.groupNodes`."""
    extra = workflow.get("extra")
    groups = extra.get("groupNodes") if isinstance(extra, dict) else None
    if not isinstance(groups, dict):
        return {}
    return {PREFIX + str(name): len(data["nodes"]) for name, data in groups.items()
            if isinstance(data, dict) and isinstance(data.get("nodes"), list)}


def count_nodes(workflow: Any) -> int:
    """Nodes the workflow flattens to (subgraph instances times their contents, group node
    instances times their members); `ConversionError` if it is not an editor workflow."""
    root, subgraphs = read_workflow(workflow)
    for node in root.nodes:
        if node.type.startswith("workflow/"):  # the older spelling of a group node type
            node.type = PREFIX + node.type[len("workflow/"):]
    return expanded_count(root, subgraphs, group_member_counts(workflow))


def check_count(count: int, limit: int) -> None:
    """Refuse a workflow that flattens to more than `limit` nodes."""
    if count > limit:
        raise TooManyNodes(count, limit, capped=count >= COUNT_CAP)


# Input types for which the frontend can build a PrimitiveNode widget without a widget locator.
_WIDGET_TYPES = frozenset({"INT", "FLOAT", "BOOLEAN", "STRING", "COMBO", "MARKDOWN"})


def _places(places: list[tuple[str | None, str]]) -> str:
    where = [(str(i) + w) if i is not None else w.strip() for i, w in places]
    return ("nodes " if len(where) > 1 else "node ") + ", ".join(where)


def _unknown_types(graphs: list[RawGraph], known: set[str], defs: NodeDefinitions,
                   missing: dict[str, list[tuple[str | None, str]]]) -> None:
    for graph in graphs:
        for node in graph.nodes:
            node.type = RENAMED_TYPES.get(node.type, node.type)
            if graph.subgraph_id is None and node.type.startswith("workflow/"):
                node.type = PREFIX + node.type[len("workflow/"):]
            if node.type.startswith(PREFIX) and graph.subgraph_id is not None:
                text = "legacy group node inside a subgraph (the frontend refuses it too)" \
                    if is_legacy(defs.frontend) else (
                        f"legacy group node inside a subgraph: frontend {defs.frontend} leaves it "
                        f"unconverted and queues '{node.type}', a class ComfyUI does not have")
                raise UnsupportedStructure(text, [problem(node.id, node.type, text)])
            if node.type in defs or node.type in VIRTUAL_TYPES or node.type in known:
                continue
            where = "" if graph.subgraph_id is None else f" in subgraph '{graph.name}'"
            missing.setdefault(node.type, []).append((node.id, where))
    if not missing:
        return
    details = [problem(node_id, t, f"node type '{t}'{where} is not in ComfyUI's node "
                                   "definitions; it is probably a custom node to install")
               for t, places in missing.items() for node_id, where in places]
    names = "; ".join(f"{t} ({_places(p)})" for t, p in missing.items())
    raise UnknownNodeTypes(f"unknown node types, probably custom nodes to install: {names}",
                           details)


def _newer_rewrites(workflow: Any, root: RawGraph, subs: dict[str, RawGraph]) -> None:
    """What newer frontends change on load first: every subgraph node whose id an earlier
    node already holds (root first, then definitions in file order) gets the next id after
    the workflow's last node id, and its links follow. (Group nodes come after: see
    `group_subgraphs`.)"""
    seen = {node.id for node in root.nodes}
    last: int | None = None
    for sub in subs.values():
        renamed: dict[str, str] = {}
        for node in sub.nodes:
            if node.id in seen:
                last = _last_node_id(workflow, node) if last is None else last
                last += 1
                renamed[node.id] = node.id = str(last)
            seen.add(node.id)
        for link in sub.links.values() if renamed else ():
            link.origin_id = renamed.get(link.origin_id, link.origin_id)
            link.target_id = renamed.get(link.target_id, link.target_id)


def _last_node_id(workflow: Any, node: Any) -> int:
    state = workflow.get("state")
    last = state.get("lastNodeId") if isinstance(state, dict) else workflow.get("last_node_id")
    if isinstance(last, bool) or not isinstance(last, int) or not 0 <= last < 2**53:
        text = ("subgraph node ids repeat and the workflow names no last node id to renumber "
                "them from, as this frontend does")
        raise UnsupportedStructure(text, [problem(node.id, node.type, text)])
    return last


class _Loader:
    def __init__(self, workflow: Any, defs: NodeDefinitions, max_nodes: int) -> None:
        self.defs = defs
        self.root_raw, self.sub_raw = read_workflow(workflow)
        missing = missing_inner_types(workflow, defs)
        newer = not is_legacy(defs.frontend)
        self.groups = {} if missing else group_configs(workflow, defs, newer)
        known = set(self.sub_raw) | set(self.groups)
        _unknown_types([self.root_raw, *self.sub_raw.values()], known, defs, missing)
        # Counted from the definitions before any node is built: building is what costs.
        members = {name: len(config.nodes) for name, config in self.groups.items()}
        check_count(expanded_count(self.root_raw, self.sub_raw, members), max_nodes)
        self._order = {sub_id: index for index, sub_id in enumerate(self.sub_raw)}
        self._uses = Counter(node.type for raw in (self.root_raw, *self.sub_raw.values())
                             for node in raw.nodes if node.type in self.sub_raw)
        if newer:
            _newer_rewrites(workflow, self.root_raw, self.sub_raw)
        for raw in (self.root_raw, *self.sub_raw.values()):
            check_links(raw)
        # Subgraphs that newer frontends make of group nodes: their PrimitiveNodes push nothing.
        self.converted: set[str] = set()
        if newer and self.groups:
            self.converted = groups_to_subgraphs(workflow, self.root_raw, self.sub_raw,
                                                 self.groups, defs)
            for sub_id in self.converted:
                check_links(self.sub_raw[sub_id])
        self.subgraphs: dict[str, Graph] = {}
        self._building: list[str] = []

    def subgraph(self, sub_id: str) -> Graph:
        found = self.subgraphs.get(sub_id)
        if found is not None:
            return found
        if sub_id in self._building:
            text = f"subgraph '{self.sub_raw[sub_id].name}' contains itself"
            raise UnsupportedStructure(text, [problem(None, sub_id, text)])
        self._building.append(sub_id)
        raw = self.sub_raw[sub_id]
        graph = self.build(raw, root=False)
        graph.subgraph_id, graph.name = sub_id, raw.name
        graph.inputs, graph.outputs = raw.inputs, raw.outputs
        self._building.pop()
        self.subgraphs[sub_id] = graph
        return graph

    def build(self, raw: RawGraph, root: bool) -> Graph:
        graph = Graph({}, raw.links)
        order = self._order
        for node in raw.nodes:
            if node.type in self.sub_raw:
                if raw.subgraph_id is not None and order[node.type] > order[raw.subgraph_id] \
                        and (is_legacy(self.defs.frontend) or self._uses[node.type] > 1
                             or node.mode != 0):
                    # The editor configures definitions in file order; an instance of a later
                    # one is built before its contents exist: 1.27 loses its saved values;
                    # 1.48 keeps them, but renumbers one used twice and queues the contents
                    # of a muted or bypassed one.
                    text = (f"subgraph '{raw.name}' uses subgraph '{self.sub_raw[node.type].name}'"
                            ", which is defined after it")
                    raise UnsupportedStructure(text, [problem(node.id, node.type, text)])
                built = configure_instance(node, self.subgraph(node.type))
            elif node.type in VIRTUAL_TYPES:
                built = configure_virtual(node)
            elif node.type in self.groups:
                config = self.groups[node.type]
                built = configure_comfy(node, self.defs, root, config.node_def)
                built.kind, built.group = "group", config
            else:
                built = configure_comfy(node, self.defs, root)
            graph.nodes[node.id] = built
        return graph


def _fix_link_slots(graph: Graph, seen: set[int]) -> None:
    """Point each link's target slot at the input that holds it, as the frontend does."""
    if id(graph) in seen:
        return
    seen.add(id(graph))
    for node in graph.nodes.values():
        for index, slot in enumerate(node.inputs):
            link = graph.links.get(slot.link) if slot.link else None
            if link is not None:
                link.target_slot = index
        if node.subgraph is not None:
            _fix_link_slots(node.subgraph, seen)


def _apply_primitive(graph: Graph, node: Node, root: Graph,
                     outgoing: dict[str, list[Link]]) -> None:
    links = _primitive_links(graph, node, outgoing)
    if not links or not node.widgets:
        return
    if graph is not root:
        text = "PrimitiveNode inside a subgraph (the frontend resolves its links in the root graph)"
        raise UnsupportedStructure(text, [problem(node.id, node.type, text)])
    value = _primitive_value(graph, node, links[0])
    for link in links:
        target = graph.nodes.get(link.target_id)
        if target is None or not 0 <= link.target_slot < len(target.inputs):
            continue  # the frontend warns and skips such a link
        widget = target.widget(target.inputs[link.target_slot].widget)
        if widget is not None:
            widget.value = value


def _primitive_value(graph: Graph, node: Node, first: Link) -> Any:
    """The primitive's value once configured: it only gets a widget (and so a value) when its
    first link ends at a widget input; otherwise it pushes `undefined`."""
    target = graph.nodes.get(first.target_id)
    slot = target.inputs[first.target_slot] if target is not None \
        and 0 <= first.target_slot < len(target.inputs) else None
    if target is None or slot is None or (slot.widget is None and slot.type not in _WIDGET_TYPES):
        return UNDEFINED
    if not takes_target_value(node.widgets[0]):
        return node.widgets[0].value
    theirs = target.widget(slot.widget or slot.name)
    if theirs is None:
        text = "PrimitiveNode saved no value and its target has no widget to copy one from"
        raise UnsupportedStructure(text, [problem(node.id, node.type, text)])
    return theirs.value


def _primitive_links(graph: Graph, node: Node, outgoing: dict[str, list[Link]]) -> list[Link]:
    """The links out of a primitive once the editor's link repair has run: stale ids in its
    output list are dropped, links the table has from its output are added."""
    listed = [graph.links[i] for i in node.outputs[0].links if i in graph.links]
    links = [lk for lk in listed if lk.origin_id == node.id and lk.origin_slot == 0]
    found = {id(lk) for lk in links}  # each id is one record: identity is equality here
    links += [lk for lk in outgoing.get(node.id, ()) if id(lk) not in found]
    return links


def _outgoing(graph: Graph) -> dict[str, list[Link]]:
    """The links from each node's first output, in table order: read once per graph, not
    once per primitive."""
    result: dict[str, list[Link]] = {}
    for link in graph.links.values():
        if link.origin_slot == 0:
            result.setdefault(link.origin_id, []).append(link)
    return result


def _push_promoted(instance: Node) -> None:
    """An instance's promoted values overwrite the widgets inside its (shared) definition."""
    sub = instance.subgraph
    assert sub is not None
    names = {slot.name for slot in instance.inputs}
    sub_inputs: dict[str, IOSlot] = {}
    for io_slot in sub.inputs:
        sub_inputs.setdefault(io_slot.name, io_slot)  # the first of a name, as the editor finds
    for widget in instance.widgets:
        if widget.name not in names:
            continue
        sub_input = sub_inputs.get(widget.name)
        for link_id in sub_input.link_ids if sub_input else []:
            link = sub.links.get(link_id)
            inner = sub.nodes.get(link.target_id) if link else None
            if link is None or inner is None or not 0 <= link.target_slot < len(inner.inputs):
                continue
            target = inner.widget(inner.inputs[link.target_slot].widget)
            if target is not None:
                target.value = widget.value


def _graphs_in_serialize_order(root: Graph, subgraphs: dict[str, Graph]) -> list[Graph]:
    return [root, *subgraphs.values()]


def load(workflow: Any, defs: NodeDefinitions, max_nodes: int) -> tuple[Graph, dict[str, Graph]]:
    """The workflow's root graph and its subgraphs, configured as the editor holds them;
    `TooManyNodes` before anything is built if it flattens to more than `max_nodes`."""
    loader = _Loader(workflow, defs, max_nodes)
    for sub_id in loader.sub_raw:
        loader.subgraph(sub_id)
    root = loader.build(loader.root_raw, root=True)
    _fix_link_slots(root, set())
    for graph in _graphs_in_serialize_order(root, loader.subgraphs):
        primitives = [node for node in graph.nodes.values() if node.kind == "primitive"
                      and graph.subgraph_id not in loader.converted]
        outgoing = _outgoing(graph) if primitives else {}
        for node in primitives:
            _apply_primitive(graph, node, root, outgoing)
    for graph in _graphs_in_serialize_order(root, loader.subgraphs):
        for node in graph.nodes.values():
            if node.kind == "subgraph":
                _push_promoted(node)
    for node in root.nodes.values():
        if node.kind == "group":
            _expand_group(node, defs)
    return root, loader.subgraphs


def _expand_group(node: Node, defs: NodeDefinitions) -> None:
    """Recreate the inner nodes from the group's data, then give them the instance's values
    (a PrimitiveNode's value goes to the widgets it feeds)."""
    config = node.group
    check_legacy_instance(node.id, node.type, node.mode, node.inputs, config)
    node.group_inner = [
        Node(raw.id, raw.type, _INNER_KINDS.get(raw.type, "note"), raw.mode, [], [], raw=raw)
        if raw.type in VIRTUAL_TYPES
        else configure_comfy(raw, defs, root=False) for raw in config.nodes]
    for name, (index, inner_name) in config.widget_to_inner.items():
        outer = node.widget(name)
        if outer is None:
            continue
        targets = config.primitive_targets.get(index) or [(index, inner_name)]
        for target, target_name in targets:
            inner = node.group_inner[target].widget(target_name)
            if inner is not None:
                inner.value = outer.value
