"""Legacy group nodes as frontends 1.48 and later load them: each becomes a subgraph.

When such a frontend has configured a workflow, its group-node extension replaces every
root-level group node, one at a time in the root's node order (`convertToNodes`, then
`convertToSubgraph`):
1. the group's members are pasted as new nodes, numbered after the graph's last node id in
   member order, with the group's inner links (by saved slot number, type-checked);
2. the group node's widget values are copied by name onto the members' widgets (a
   PrimitiveNode member's are not: inside a subgraph it never pushes its value);
3. each input of the group node that the group's definition numbers for a member is linked
   to that member's input of the same name; each output's links are re-made from the member
   behind it; then the group node is removed;
4. the members become a subgraph whose instance takes the next id: one subgraph input per
   outside output feeding them, one subgraph output per member output used outside.
The rest of the conversion then follows the subgraph as any other, so the queued ids are
`<instance>:<member>` and links are followed as in subgraphs (through bypassed nodes outside,
Reroutes inside, other groups' subgraphs).

These frontends lay the group's values out differently from the frontends that wrote group
nodes (an old-style combo is an input slot to them, so the group's widgets come in another
order), and drop what they cannot place. What the file means is what the frontend that wrote
it queued (`group_nodes` as 1.27 builds it); every group node whose subgraph would queue a
value, link or mode other than that is refused, naming the group node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .configure import GROUP_MEMBER, Node, Widget, configure_comfy
from .definitions import NodeDef, NodeDefinitions
from .errors import UnsupportedStructure, problem
from .graph import RawGraph, RawNode
from .group_nodes import PREFIX, PRIMITIVE, GroupConfig, group_configs
from .to_subgraph import RootWork, copy_node, finish, start
from .values import same_json

_VIRTUAL = frozenset({"PrimitiveNode", "Reroute", "Note", "MarkdownNote"})


def group_values(raw: RawNode, node_def: NodeDef) -> dict[str, Any]:
    """The group node's widget values by name (first of a name), filled in order from its
    saved list as the editor does, without judging whether a value fits its widget."""
    widgets = [Widget(spec, spec.default) for spec in node_def.widgets]
    values = raw.data.get("widgets_values")
    if values is not None and not isinstance(values, list):
        text = "a group node's widgets_values is not a list; the editor would ignore it"
        raise UnsupportedStructure(text, [problem(raw.id, raw.type, text)])
    if values and sum(count for _, _, count in node_def.migration) == len(values):
        force = [forced for _, forced, _ in node_def.migration]
        values = [v for i, v in enumerate(values) if i >= len(force) or not force[i]]
    for widget, value in zip([w for w in widgets if w.spec.has_slot], values or []):
        if not widget.spec.fixed:
            widget.value = value
    result: dict[str, Any] = {}
    for widget in widgets:
        result.setdefault(widget.name, widget.value)
    return result


def _refuse(raw: RawNode, frontend: str, text: str) -> UnsupportedStructure:
    full = (f"legacy group node {raw.id} ('{raw.type}'): frontend {frontend} turns it into a "
            f"subgraph that {text}, which is not what the file means; open the workflow in "
            "that editor, check the group's values and save it again (it is then saved as a "
            "subgraph, which converts as it shows)")
    return UnsupportedStructure(full, [problem(raw.id, raw.type, full)])


def groups_to_subgraphs(workflow: dict[str, Any], root: RawGraph, subs: dict[str, RawGraph],
                        configs: dict[str, GroupConfig], defs: NodeDefinitions) -> set[str]:
    """Replace each root group node by a subgraph instance, as the frontend does on load;
    the ids of the subgraphs made. Refuses a group node whose subgraph means otherwise."""
    work = start(workflow, root, subs)
    groups = (workflow.get("extra") or {}).get("groupNodes") or {}
    templates: dict[str, _Template] = {}
    for node in list(root.nodes):
        config = configs.get(node.type)
        if config is None:
            continue
        data = groups[node.type[len(PREFIX):]]
        template = templates.get(node.type)
        if template is None:
            template = templates[node.type] = _Template(_legacy_config(config.name, data, defs))
        _Group(work, node, config, template, data, defs).convert()
    finish(work, root, subs)
    return set(work.subgraphs)


def _legacy_config(name: str, data: dict[str, Any], defs: NodeDefinitions) -> GroupConfig | str:
    """The group as the frontends that wrote group nodes built it, or why they could not."""
    try:
        return group_configs({"extra": {"groupNodes": {name: data}}}, defs)[PREFIX + name]
    except UnsupportedStructure as exc:
        return str(exc)


@dataclass
class _Template:
    """What is the same for every instance of one group: what the file means by it, and the
    links the paste leaves between members (member index, slot) -> (member index, slot)."""

    legacy: GroupConfig | str
    links: list[tuple[int, int, int, int]] | None = None


class _Group:
    """One group node instance, converted as `GroupNodeHandler.convertToNodes` and
    `LGraph.convertToSubgraph` do."""

    def __init__(self, work: RootWork, raw: RawNode, config: GroupConfig, template: _Template,
                 data: dict[str, Any], defs: NodeDefinitions) -> None:
        self.work, self.raw, self.config, self.template = work, raw, config, template
        self.data, self.defs, self.frontend = data, defs, defs.frontend
        self.members: list[str] = []
        self.comfy: dict[int, Node] = {}  # member index -> the member as configured
        self.outside: dict[str, Node | None] = {}  # nodes outside, configured once each

    def fail(self, text: str) -> UnsupportedStructure:
        return _refuse(self.raw, self.frontend, text)

    def convert(self) -> None:
        if self.raw.mode != 0:
            state = "muted" if self.raw.mode == 2 else "bypassed"
            raise self.fail(f"runs its members although the group node is {state}")
        if not self.config.nodes:
            text = (f"legacy group node {self.raw.id} ('{self.raw.type}') has no members: "
                    f"frontend {self.frontend} cannot make a subgraph of it and drops it")
            raise UnsupportedStructure(text, [problem(self.raw.id, self.raw.type, text)])
        legacy = self.template.legacy
        for index, linked, _ in [] if isinstance(legacy, str) else legacy.misread:
            # recorded: `handmade_group_primitive_socket` queues the member without it
            raise self.fail(f"drops the value its PrimitiveNode member gives '{linked}' of "
                            f"member {index} ({self.config.nodes[index].type}), an input "
                            "without a widget")
        values = group_values(self.raw, self.config.node_def)
        self._paste()
        for name, (index, inner) in self.config.widget_to_inner.items():
            # A PrimitiveNode member (not in `comfy`) never pushes a value inside a subgraph.
            widget = self.comfy[index].widget(inner) if index in self.comfy else None
            if widget is not None and name in values:
                widget.value = values[name]
        self._reconnect_inputs()
        self._reconnect_outputs()
        self._check_values()
        self.work.remove(self.raw.id)
        self._to_subgraph()

    def _member(self, raw: RawNode, new_id: str, index: int) -> dict[str, Any]:
        data = copy_node({**raw.data, "id": int(new_id)})
        data.pop("index", None)
        data[GROUP_MEMBER] = True
        if raw.type in _VIRTUAL:
            for slot in data["inputs"]:
                slot["link"] = None
            for out in data["outputs"]:
                out["links"] = []
            return data
        node = configure_comfy(RawNode(data, new_id, raw.type, raw.mode), self.defs, root=False)
        self.comfy[index] = node
        data["inputs"] = [{"name": s.name, "type": s.type, "link": None,
                           **({"widget": {"name": s.widget}} if s.widget else {})}
                          for s in node.inputs]
        data["outputs"] = [{"name": s.name, "type": s.type, "links": []} for s in node.outputs]
        return data

    def _paste(self) -> None:
        for index, raw in enumerate(self.config.nodes):
            new_id = self.work.new_id()
            self.members.append(new_id)
            self.work.nodes[new_id] = self._member(raw, new_id, index)
        if self.template.links is None:
            count = len(self.members)
            for link in self.data.get("links") or []:
                if isinstance(link, list) and len(link) >= 4 and link[0] is not None:
                    src, src_slot, dst, dst_slot = (int(x) for x in link[:4])
                    if 0 <= src < count and 0 <= dst < count:
                        self.work.connect(self.members[src], src_slot, self.members[dst],
                                          dst_slot)
            self.template.links = self._inner_links()
            return
        for src, src_slot, dst, dst_slot in self.template.links:
            self.work.connect(self.members[src], src_slot, self.members[dst], dst_slot)

    def _inner_links(self) -> list[tuple[int, int, int, int]]:
        index = {member: i for i, member in enumerate(self.members)}
        found = []
        for dst, member in enumerate(self.members):
            for slot, data in enumerate(self.work.nodes[member]["inputs"]):
                link = self.work.links.get(data["link"]) if data["link"] is not None else None
                if link is not None:
                    found.append((index[link.origin_id], link.origin_slot, dst, slot))
        return found

    def _reconnect_inputs(self) -> None:
        """Each numbered group input's link goes to the member input of that name; the number
        picks the group node's input by position, which may be another input."""
        saved = self.work.nodes[self.raw.id]["inputs"]
        by_name = {s.get("name"): s for s in saved}
        defined = [d.name for d in self.config.node_def.inputs]
        known = set(defined)
        names = defined + [s.get("name") for s in saved if s.get("name") not in known]
        for index in sorted(self.config.input_names):
            member = self.members[index]
            first: dict[Any, int] = {}  # `findInputSlot`: the first input of a name
            for i, held in enumerate(self.work.nodes[member]["inputs"]):
                first.setdefault(held.get("name"), i)
            for inner, number in self.config.input_names[index].items():
                want = self.config.counted[number]
                have = names[number] if number < len(names) else None
                link_id = (by_name.get(have) or {}).get("link")
                if have != want and (link_id is not None
                                     or (by_name.get(want) or {}).get("link") is not None):
                    raise self.fail(f"links what feeds its input '{have}' into '{inner}' of "
                                    f"member {index} ({self.config.nodes[index].type}), where "
                                    f"the file links its input '{want}' there")
                link = self.work.links.get(link_id) if link_id is not None else None
                slot = first.get(inner, -1)
                if link is not None and slot != -1 and link.origin_id in self.work.nodes:
                    self.work.connect(link.origin_id, link.origin_slot, member, slot)
        numbered = set(self.config.counted)
        for name in names:
            if name not in numbered and (by_name.get(name) or {}).get("link") is not None:
                raise self.fail(f"drops the link into its input '{name}'")

    def _reconnect_outputs(self) -> None:
        outputs = self.work.nodes[self.raw.id]["outputs"]
        for number, out in enumerate(outputs):
            for link_id in list(out["links"]):
                link = self.work.links.get(link_id)
                if link is None or link.origin_id != self.raw.id:
                    continue
                if number >= len(self.config.output_to_inner):
                    raise self.fail(f"drops the link from its output {number} "
                                    f"('{out.get('name')}'): the group defines "
                                    f"{len(self.config.output_to_inner)} outputs")
                index, slot = self.config.output_to_inner[number]
                self.work.connect(self.members[index], slot, link.target_id, link.target_slot)

    def _legacy(self) -> GroupConfig:
        if isinstance(self.template.legacy, str):
            raise self.fail(f"the file's meaning cannot be told: {self.template.legacy}")
        return self.template.legacy

    def _check_values(self) -> None:
        """Every widget a group value reaches in the frontends that wrote group nodes must
        hold that value here too."""
        legacy = self._legacy()
        meant = group_values(self.raw, legacy.node_def)
        for name, (index, inner) in legacy.widget_to_inner.items():
            if name not in meant:
                continue
            if legacy.nodes[index].type != PRIMITIVE:
                self._check(index, inner, meant[name], "lays the group's values out in "
                                                       "another order: it queues")
                continue
            for target, target_name in legacy.primitive_targets.get(index, []):
                self._check(target, target_name, meant[name], "drops the value of its "
                            "PrimitiveNode member: it queues", from_primitive=True)
            self._check_outside(self.members[index], meant[name])

    def _check(self, index: int, name: str, meant: Any, what: str,
               from_primitive: bool = False) -> None:
        widget = self.comfy[index].widget(name) if index in self.comfy else None
        slots = self.work.nodes[self.members[index]]["inputs"]
        if not from_primitive and any(
                s.get("link") is not None and (s.get("widget") or {}).get("name") == name
                for s in slots):
            return  # a link from outside gives the value, not the widget
        if widget is not None and not same_json(widget.value, meant):
            raise self.fail(f"{what} {widget.value!r} in '{name}' of member {index} "
                            f"({self.config.nodes[index].type}) where the file means {meant!r}")

    def _check_outside(self, member: str, meant: Any) -> None:
        """A PrimitiveNode member's value, where the group's output behind it is used."""
        members = set(self.members)
        for out in self.work.nodes[member]["outputs"][:1]:
            for link_id in out["links"]:
                link = self.work.links.get(link_id)
                if link is None or link.origin_id != member or link.target_id in members:
                    continue
                target = self.work.nodes[link.target_id]
                slot = target["inputs"][link.target_slot]
                name = (slot.get("widget") or {}).get("name")
                if link.target_id not in self.outside:
                    self.outside[link.target_id] = configure_comfy(
                        RawNode(target, link.target_id, target["type"], target.get("mode") or 0),
                        self.defs, True) if target["type"] in self.defs else None
                node = self.outside[link.target_id]
                widget = node.widget(name) if node is not None else None
                if widget is None or not same_json(widget.value, meant):
                    value = "no value" if widget is None else repr(widget.value)
                    raise self.fail(f"drops the value of its PrimitiveNode member: it queues "
                                    f"{value} in input {link.target_slot} of node "
                                    f"{link.target_id} where the file means {meant!r}")

    def _to_subgraph(self) -> None:
        for index, node in self.comfy.items():
            self.work.nodes[self.members[index]]["widgets_values"] = [
                w.value for w in node.widgets if w.spec.has_slot]
        # The id is never a real subgraph's (those are uuids).
        self.work.to_subgraph(self.members, f"{self.raw.type}#{self.raw.id}", self.config.name)
