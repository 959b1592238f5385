"""The root graph as newer frontends edit it on load: links made and broken, nodes made
into a subgraph (`LGraph.convertToSubgraph`).

`RootWork` holds copies of the root nodes' saved data, the root's links and the editor's
counters (node ids continue after the last one it has seen; link ids after the highest).
`connect` is `LGraphNode.connect`: nothing happens when a slot is missing or the types do not
fit, and a link already at the target input is replaced. `to_subgraph` moves nodes into a new
subgraph: links between them go with them, one subgraph input per outside output that feeds
them, one subgraph output per output of theirs used outside, and an instance that takes the
next id is linked in their place. Output link lists may keep ids of links that are gone while
work goes on; `finish` drops them once, so no step pays for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .graph import SUBGRAPH_INPUT_ID, SUBGRAPH_OUTPUT_ID, IOSlot, Link, RawGraph, RawNode


def valid_link(a: Any, b: Any) -> bool:
    """The editor's check before it makes a link: wildcards, then comma-separated types."""
    a = None if a in ("", "*", 0, None) else str(a).lower()
    b = None if b in ("", "*", 0, None) else str(b).lower()
    return not a or not b or a == b or bool(set(a.split(",")) & set(b.split(",")))


def copy_node(data: dict[str, Any]) -> dict[str, Any]:
    """A node's saved data with its own slot lists, to be changed without touching the file."""
    return {**data, "inputs": [dict(s) for s in data.get("inputs") or [] if isinstance(s, dict)],
            "outputs": [{**s, "links": list(s.get("links") or [])}
                        for s in data.get("outputs") or [] if isinstance(s, dict)]}


def _number(value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return 0
    return number if 0 <= number < 2**53 else 0


@dataclass
class RootWork:
    nodes: dict[str, dict[str, Any]]
    order: list[str]
    links: dict[Any, Link]
    next_id: int
    next_link: int
    removed: set[str] = field(default_factory=set)
    subgraphs: dict[str, RawGraph] = field(default_factory=dict)

    def new_id(self) -> str:
        self.next_id += 1
        return str(self.next_id)

    def new_link(self, origin: str, origin_slot: int, target: str, slot: int, kind: Any,
                 table: dict[Any, Link] | None = None) -> int:
        self.next_link += 1
        (self.links if table is None else table)[self.next_link] = Link(
            self.next_link, origin, origin_slot, target, slot, kind)
        return self.next_link

    def disconnect(self, target_id: str, slot: int) -> None:
        held = self.nodes[target_id]["inputs"][slot]
        if held.get("link") is not None:
            self.links.pop(held["link"], None)
        held["link"] = None

    def connect(self, origin_id: str, origin_slot: int, target_id: str, slot: int) -> None:
        origin, target = self.nodes[origin_id], self.nodes[target_id]
        if not (0 <= origin_slot < len(origin["outputs"]) and 0 <= slot < len(target["inputs"])):
            return
        kind = origin["outputs"][origin_slot].get("type")
        if not valid_link(kind, target["inputs"][slot].get("type")):
            return
        self.disconnect(target_id, slot)
        link = self.new_link(origin_id, origin_slot, target_id, slot, kind)
        origin["outputs"][origin_slot]["links"].append(link)
        target["inputs"][slot]["link"] = link

    def remove(self, node_id: str) -> None:
        node = self.nodes.pop(node_id)
        for slot in node["inputs"]:
            if slot.get("link") is not None:
                self.links.pop(slot["link"], None)
        for out in node["outputs"]:
            for link_id in out["links"]:
                link = self.links.get(link_id)
                if link is not None and link.origin_id == node_id:
                    del self.links[link_id]
                    target = self.nodes.get(link.target_id)
                    if target is not None and link.target_slot < len(target["inputs"]):
                        target["inputs"][link.target_slot]["link"] = None
        self.removed.add(node_id)

    def to_subgraph(self, members: list[str], sub_id: str, name: str) -> str:
        """Move `members` into a new subgraph `sub_id`; the id of its instance."""
        instance = self.new_id()
        sub = RawGraph([], {}, sub_id, name)
        inst: dict[str, Any] = {"id": int(instance), "type": sub_id, "mode": 0, "inputs": [],
                                "outputs": [], "properties": {}, "widgets_values": []}
        self._boundary_inputs(members, sub, inst, instance)
        self._boundary_outputs(members, sub, inst, instance)
        for member in members:
            data = self.nodes.pop(member)
            sub.nodes.append(RawNode(data, member, data["type"], data.get("mode") or 0))
        self.nodes[instance] = inst
        self.order.append(instance)
        self.subgraphs[sub_id] = sub
        return instance

    def _boundary_inputs(self, members: list[str], sub: RawGraph, inst: dict[str, Any],
                         instance: str) -> None:
        inside = set(members)
        by_origin: dict[tuple[str, int], int] = {}
        taken: dict[str, int] = {}
        for member in members:
            for slot, data in enumerate(self.nodes[member]["inputs"]):
                link = self.links.pop(data.get("link"), None)
                if link is None:
                    continue
                if link.origin_id in inside:
                    sub.links[link.id] = link
                    continue
                number = by_origin.setdefault((link.origin_id, link.origin_slot), len(by_origin))
                if number == len(sub.inputs):
                    label = _unique(str(data.get("name") or "input"), taken)
                    sub.inputs.append(IOSlot(label, link.type, []))
                    outer = self.new_link(link.origin_id, link.origin_slot, instance, number,
                                          link.type)
                    self.nodes[link.origin_id]["outputs"][link.origin_slot]["links"].append(outer)
                    inst["inputs"].append({"name": label, "type": link.type, "link": outer})
                data["link"] = self.new_link(SUBGRAPH_INPUT_ID, number, member, slot, link.type,
                                             sub.links)
                sub.inputs[number].link_ids.append(data["link"])

    def _boundary_outputs(self, members: list[str], sub: RawGraph, inst: dict[str, Any],
                          instance: str) -> None:
        for member in members:
            for slot, out in enumerate(self.nodes[member]["outputs"]):
                kept, number = [], -1
                for link_id in out["links"]:
                    link = self.links.get(link_id)
                    if link is None or link.origin_id != member or link.origin_slot != slot:
                        if link_id in sub.links:  # a link between members, moved inside
                            kept.append(link_id)
                        continue
                    if number == -1:
                        number, label = len(sub.outputs), str(out.get("name") or "output")
                        inner = self.new_link(member, slot, SUBGRAPH_OUTPUT_ID, number,
                                              out.get("type"), sub.links)
                        sub.outputs.append(IOSlot(label, out.get("type"), [inner]))
                        inst["outputs"].append({"name": label, "type": out.get("type"),
                                                "links": []})
                        kept.append(inner)
                    self.links[link_id] = Link(link_id, instance, number, link.target_id,
                                               link.target_slot, link.type)
                    inst["outputs"][number]["links"].append(link_id)
                out["links"] = kept


def _unique(name: str, taken: dict[str, int]) -> str:
    """The name, or the name with the next free number (a counter per name)."""
    if name not in taken:
        taken[name] = 1
        return name
    number = taken[name] + 1
    while f"{name}_{number}" in taken:
        number += 1
    taken[name], taken[f"{name}_{number}"] = number, 1
    return f"{name}_{number}"


def start(workflow: dict[str, Any], root: RawGraph, subs: dict[str, RawGraph]) -> RootWork:
    """Work on copies of the root's nodes, numbering on from the editor's counters."""
    state = workflow.get("state")
    last = _number(state.get("lastNodeId") if isinstance(state, dict)
                   else workflow.get("last_node_id"))
    for graph in (root, *subs.values()):  # the counter also passes every id it has seen
        for node in graph.nodes:
            last = max(last, _number(node.id) if node.id.isdigit() else 0)
    nodes = {}
    for node in root.nodes:
        nodes[node.id] = {**copy_node(node.data), "type": node.type, "mode": node.mode}
    top_link = max([_number(i) for i in root.links] + [0])
    return RootWork(nodes, [node.id for node in root.nodes], dict(root.links), last, top_link)


def finish(work: RootWork, root: RawGraph, subs: dict[str, RawGraph]) -> None:
    """Write the work back: the root's nodes in the editor's order, its links, new subgraphs;
    output link lists keep only links that still start there."""
    root.nodes = []
    for node_id in work.order:
        if node_id in work.removed:
            continue
        data = work.nodes[node_id]
        for slot, out in enumerate(data["outputs"]):
            out["links"] = [i for i in out["links"] if i in work.links
                            and work.links[i].origin_id == node_id
                            and work.links[i].origin_slot == slot]
        root.nodes.append(RawNode(data, node_id, data["type"], data.get("mode") or 0))
    root.links = work.links
    subs.update(work.subgraphs)
