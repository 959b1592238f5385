"""Flatten subgraphs and follow links to the node that really produces each input.

Every node gets an execution id: its own id at the top level, `outer:inner` inside a
subgraph instance (`a:b:c` when nested). Following an input's link:
- into a bypassed node: continue from one of its inputs, chosen by type (same slot first,
  then the first input of exactly the same type, then the first compatible one);
- into a Reroute or other editor-only node: continue from its input of the same index;
- into a subgraph instance's output: continue inside, from whatever feeds that output;
- out of a subgraph through its input: continue outside, from what feeds the instance, or
  take the instance's promoted widget value when nothing does.
The frontend guards these walks against loops; so does this module, with the same keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .configure import Graph, Node
from .errors import BrokenLink, UnsupportedStructure, problem
from .graph import SUBGRAPH_INPUT_ID

BYPASS = 4
NEVER = 2


@dataclass
class Dto:
    """A node at one place in the flattened graph."""

    id: str
    node: Node
    graph: Graph
    path: tuple[str, ...]
    instance: Node | None  # the subgraph instance that contains it, if any
    group: Node | None = None  # the legacy group node it was recreated from, if any


@dataclass
class Origin:
    """Where an input comes from: a node's output, or a promoted widget's value."""

    node_id: str
    slot: int
    widget_value: Any = None
    is_widget: bool = False


def flatten(root: Graph) -> dict[str, Dto]:
    nodes: dict[str, Dto] = {}
    for node in root.nodes.values():
        if node.kind == "subgraph":
            _inner(node, root, (), None, nodes, set())
        for index, inner in enumerate(node.group_inner):
            exec_id = f"{node.id}:{index}"
            nodes[exec_id] = Dto(exec_id, inner, root, (node.id,), None, node)
        nodes[node.id] = Dto(node.id, node, root, (), None)
    return nodes


def _inner(instance: Node, graph: Graph, path: tuple[str, ...], parent: Node | None,
           nodes: dict[str, Dto], visited: set[int]) -> None:
    if id(instance) in visited:
        text = "subgraph contains an instance of itself"
        raise UnsupportedStructure(text, [problem(instance.id, instance.type, text)])
    visited = visited | {id(instance)}
    own = (*path, instance.id)
    nodes[":".join(own)] = Dto(":".join(own), instance, graph, path, parent)
    sub = instance.subgraph
    assert sub is not None
    for node in sub.nodes.values():
        if node.kind == "subgraph":
            _inner(node, sub, own, instance, nodes, visited)
        else:
            nodes[":".join((*own, node.id))] = Dto(":".join((*own, node.id)), node, sub, own,
                                                   instance)


def _valid(a: Any, b: Any) -> bool:
    """The editor's slot type compatibility: wildcards, then comma-separated alternatives."""
    a = None if a in ("", "*", 0) else a
    b = None if b in ("", "*", 0) else b
    if not a or not b or a == b:
        return True
    sa, sb = str(a).lower(), str(b).lower()
    if "," not in sa and "," not in sb:
        return sa == sb
    return any(_valid(x, y) for x in sa.split(",") for y in sb.split(","))


class Resolver:
    def __init__(self, nodes: dict[str, Dto]) -> None:
        self.nodes = nodes

    def _fail(self, dto: Dto, text: str, cls: type = UnsupportedStructure) -> Exception:
        return cls(text, [problem(dto.id, dto.node.class_type or dto.node.type, text)])

    def _key(self, dto: Dto, kind: str, slot: int) -> str:
        # Keyed by subgraph definition, not instance, exactly as the frontend keys its guard.
        sub_id = dto.instance.subgraph.subgraph_id if dto.instance and dto.instance.subgraph \
            else "undefined"
        return f"{sub_id}:{dto.node.id}[{kind}]{slot}"

    def _enter(self, dto: Dto, kind: str, slot: int, visited: set[str]) -> None:
        key = self._key(dto, kind, slot)
        if key in visited:
            raise self._fail(dto, f"circular link through slot {slot} (the frontend refuses it)")
        visited.add(key)

    def resolve_input(self, dto: Dto, slot: int, visited: set[str],
                      want: Any = None) -> Origin | None:
        if dto.group is not None:
            return self._group_child_input(dto, slot)
        self._enter(dto, "I", slot, visited)
        if not 0 <= slot < len(dto.node.inputs):
            raise self._fail(dto, f"no input slot {slot}", BrokenLink)
        slot_data = dto.node.inputs[slot]
        if slot_data.link is None:
            return None
        link = dto.graph.links.get(slot_data.link)
        if link is None:
            raise self._fail(dto, f"input '{slot_data.name}' names link {slot_data.link}, "
                                  "which is not in the links table", BrokenLink)
        if dto.instance is not None and link.origin_id == SUBGRAPH_INPUT_ID:
            return self._from_instance_input(dto, link.origin_slot, slot_data.name, visited)
        source = dto.graph.nodes.get(link.origin_id)
        if source is None:
            raise self._fail(dto, f"input '{slot_data.name}' is linked to node "
                                  f"{link.origin_id}, which does not exist", BrokenLink)
        source_dto = self.nodes[":".join((*dto.path, source.id))]
        return self.resolve_output(source_dto, link.origin_slot,
                                   want if want is not None else slot_data.type, visited)

    def _from_instance_input(self, dto: Dto, index: int, name: str,
                             visited: set[str]) -> Origin | None:
        instance = dto.instance
        assert instance is not None
        if not 0 <= index < len(instance.inputs):
            raise self._fail(dto, f"subgraph input {index} for '{name}' does not exist", BrokenLink)
        outer = instance.inputs[index]
        if outer.link is None:
            widget = instance.widget(outer.widget)
            if widget is None:
                return None
            return Origin(dto.id, -1, widget.value, True)
        instance_dto = self.nodes[":".join(dto.path)]
        outer_link = instance_dto.graph.links.get(outer.link)
        if outer_link is None:
            raise self._fail(instance_dto, f"input '{outer.name}' names link {outer.link}, "
                                           "which is not in the links table", BrokenLink)
        return self.resolve_input(instance_dto, outer_link.target_slot, visited)

    def resolve_output(self, dto: Dto, slot: int, want: Any, visited: set[str]) -> Origin | None:
        node = dto.node
        if node.kind == "group" and node.mode == BYPASS:
            # A bypassed group node takes the first input of exactly the wanted type.
            for index in (slot, *range(len(node.inputs))):
                if 0 <= index < len(node.inputs) and node.inputs[index].type == want:
                    return self.resolve_input(dto, index, visited)
            return None
        if node.kind != "group":
            self._enter(dto, "O", slot, visited)
        if node.mode == BYPASS:
            if node.v3:
                raise self._fail(dto, "bypassed node with V3 inputs: which input it passes "
                                      "through is not reproduced")
            index = self._bypass_index(dto, slot, want)
            return None if index == -1 else self.resolve_input(dto, index, visited)
        if node.kind == "subgraph":
            return self._from_subgraph_output(dto, slot, want, visited)
        if node.kind == "group":
            return self._group_output(dto, slot)
        if node.is_virtual:
            if 0 <= slot < len(node.inputs):
                return self.resolve_input(dto, slot, visited, want)
            return None
        return Origin(dto.id, slot)

    def _group_child_input(self, dto: Dto, slot: int) -> Origin | None:
        """An inner node of a group: its input comes from inside, or from the group's input
        as the link there says, without following bypasses or reroutes."""
        group = dto.group
        assert group is not None and group.group is not None
        index = int(dto.id.rsplit(":", 1)[1])
        outer_slot = group.group.input_map.get(index, {}).get(slot)
        if outer_slot is not None:
            if outer_slot >= len(group.inputs) or group.inputs[outer_slot].link is None:
                return None
            link = dto.graph.links.get(group.inputs[outer_slot].link)
            source = dto.graph.nodes.get(link.origin_id) if link else None
            if link is None or source is None:
                return None
            origin_id, origin_slot = source.id, link.origin_slot
        else:
            inner = group.group.links_to.get(index, {}).get(slot)
            if inner is None or group.group.nodes[inner[0]].type == "PrimitiveNode":
                return None  # a primitive's value is already in the widget
            origin_id, origin_slot = f"{group.id}:{inner[0]}", inner[1]
        if origin_id not in self.nodes and origin_id.rsplit(":", 1)[-1] not in self.nodes:
            raise self._fail(dto, f"input {slot} comes from node {origin_id}, which is not there")
        return Origin(origin_id, origin_slot)

    def _group_output(self, dto: Dto, slot: int) -> Origin:
        """A group's output names the inner node behind it (the first link decides), past
        the Reroutes inside that lead to it."""
        node = dto.node
        config = node.group
        assert config is not None
        links = node.outputs[slot].links if 0 <= slot < len(node.outputs) else []
        link = dto.graph.links.get(links[0]) if links else None
        if link is None:
            raise self._fail(dto, f"group node output {slot} has no usable link")
        if not 0 <= link.origin_slot < len(config.output_to_inner):
            raise self._fail(dto, f"group node output {link.origin_slot} is not among the "
                                  f"{len(config.output_to_inner)} outputs the group defines; "
                                  "the editor fails to queue it")
        index, inner_slot = config.output_to_inner[link.origin_slot]
        seen: set[int] = set()
        while config.nodes[index].type == "Reroute":
            source = config.links_to.get(index, {}).get(0)
            if index in seen or source is None \
                    or config.input_map.get(index, {}).get(0) is not None \
                    or config.nodes[source[0]].type == "PrimitiveNode":
                raise self._fail(dto, f"group node output {link.origin_slot} leads through a "
                                      "Reroute to no node inside the group; the editor fails "
                                      "to queue it")
            seen.add(index)
            index, inner_slot = source
        return Origin(f"{dto.id}:{index}", inner_slot)

    def _bypass_index(self, dto: Dto, slot: int, want: Any) -> int:
        inputs, outputs = dto.node.inputs, dto.node.outputs
        if not 0 <= slot < len(outputs):
            raise self._fail(dto, f"bypassed node has no output slot {slot}", BrokenLink)
        out_type = outputs[slot].type
        if want in ("*", ""):
            return slot if len(inputs) > slot else 0
        if slot < len(inputs) and _valid(inputs[slot].type, out_type) \
                and _valid(inputs[slot].type, want):
            return slot
        for i, slot_data in enumerate(inputs):
            if slot_data.type == want:
                return i
        for i, slot_data in enumerate(inputs):
            if _valid(slot_data.type, out_type) and _valid(slot_data.type, want):
                return i
        return -1

    def _from_subgraph_output(self, dto: Dto, slot: int, want: Any,
                              visited: set[str]) -> Origin | None:
        node, sub = dto.node, dto.node.subgraph
        assert sub is not None
        if not 0 <= slot < len(node.outputs) or slot >= len(sub.outputs):
            raise self._fail(dto, f"subgraph has no output slot {slot}", BrokenLink)
        links = [sub.links[i] for i in sub.outputs[slot].link_ids if i in sub.links]
        if not links:
            return None
        inner = sub.nodes.get(links[0].origin_id)
        if inner is None:
            raise self._fail(dto, f"subgraph output {slot} is fed by no node inside it")
        inner_dto = self.nodes[":".join((*dto.path, node.id, inner.id))]
        return self.resolve_output(inner_dto, links[0].origin_slot, want, visited)
