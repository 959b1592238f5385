"""Legacy group nodes (`extra.groupNodes`, node types `workflow>Name`), as the frontend runs them.

A group node is one editor node standing for several real ones. The frontend builds a node
definition for it from the inner nodes (their widgets and unlinked inputs become the group's,
renamed `"<title or type> <input>"` on a clash; their outputs not used inside become the
group's), the instance saves values for that definition, and when queueing each inner node
is recreated from the group's data with id `<group id>:<index>`, its widgets overwritten by
the instance's values. Links are then resolved with the group's own rules, which are simpler
than the general ones: an input taken from outside names the node at the other end of the
link as it is (even a Reroute or a muted node, which then drops out), and an output names the
inner node that produces it even when that node is bypassed.

Members the frontend defines itself follow its own rules. A PrimitiveNode linked inside
the group becomes one widget on the group (`value`, or `<title or type> value`; it takes the
options of the last widget it feeds, plus a control widget); at queue time its value goes to
every widget it feeds. A Reroute linked on both sides inside the group drops out; otherwise it
becomes an input and an output of its link's type. An inner node fed by a Reroute loses that
input, and a group output behind Reroutes names the node before them. Notes are skipped.
`external` entries that name the node by a copy of it, not an index, never match a node,
as in the frontend. An image upload member (LoadImage) is queued as outside a group
(recorded: `handmade_group_load_image`); other upload and browser widgets inside a group,
Reroutes that carry a widget value, and groups inside subgraphs are refused.

Frontends 1.48 and later build the same definition (`newer=True`) with one difference: an
input counts as a widget only when its type is a name in their widget registry, so an
old-style combo (a list of options) is an input slot; `group_subgraphs` then follows them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .definitions import NodeDef, NodeDefinitions, build_node_def
from .errors import UnsupportedStructure, problem
from .frontends import LEGACY, widget_types
from .graph import InSlot, RawNode, _node, saved_outputs

PREFIX = "workflow>"
PRIMITIVE, REROUTE = "PrimitiveNode", "Reroute"
_SKIPPED_TYPES = frozenset({"Note", "MarkdownNote"})
# The editor makes such a Reroute a widget of the group that takes no input slot, so the
# group's later inputs are wired one slot off (recorded: `height` queued from the `width` link).
_REROUTE_WIDGET = ("a Reroute inside the group feeds a widget {}; the editor wires the group's "
                   "inputs one slot off for it, so it would queue what the file does not mean")
_PLAIN_KINDS = frozenset({"INT", "FLOAT", "BOOLEAN", "STRING", "COMBO", "control", "filter"})
_WIDGET_TYPES = frozenset({"INT", "FLOAT", "BOOLEAN", "STRING", "COMBO"})


@dataclass
class GroupConfig:
    """What the frontend derives from one `extra.groupNodes` entry."""

    name: str
    nodes: list[RawNode]
    node_def: NodeDef
    # inner index -> {inner input slot -> group input slot}
    input_map: dict[int, dict[int, int]] = field(default_factory=dict)
    # inner index -> {inner input slot -> (source inner index, source slot)}
    links_to: dict[int, dict[int, tuple[int, int]]] = field(default_factory=dict)
    # group widget name -> (inner index, inner widget name), in definition order
    widget_to_inner: dict[str, tuple[int, str]] = field(default_factory=dict)
    # group output slot -> (inner index, inner output slot)
    output_to_inner: list[tuple[int, int]] = field(default_factory=list)
    # inner PrimitiveNode index -> the (inner index, widget name) pairs it feeds
    primitive_targets: dict[int, list[tuple[int, str]]] = field(default_factory=dict)
    # inner index -> {inner input name -> group input number}, and each number's input name
    input_names: dict[int, dict[str, int]] = field(default_factory=dict)
    counted: list[str] = field(default_factory=list)
    # (member index, the input an inner PrimitiveNode's link names, the widget the editor
    # gives the value to instead): the editor numbers the member's slots without its
    # socket-only inputs, so such a link lands on another widget
    misread: list[tuple[int, str, str]] = field(default_factory=list)


def _refuse(name: str, text: str) -> UnsupportedStructure:
    return UnsupportedStructure(text, [problem(None, PREFIX + name, text)])


def _is_widget(raw: Any) -> bool:
    kind = raw[0] if isinstance(raw, (list, tuple)) and raw else raw
    return isinstance(kind, list) or kind in _WIDGET_TYPES


class _Builder:
    """Builds the group's definition in the order the frontend adds inputs and outputs."""

    def __init__(self, name: str, data: dict[str, Any], defs: NodeDefinitions,
                 newer: bool = False) -> None:
        self.name, self.data, self.defs = name, data, defs
        # Newer frontends count an input as a widget only when its type is a name in their
        # widget registry: an old-style combo (a list of options) becomes an input slot.
        self.newer = newer
        self.widget_kinds = widget_types(defs.frontend)[0]
        self.config = GroupConfig(name, [_node({**n, "id": i}) for i, n in
                                         enumerate(data.get("nodes") or [])],
                                  NodeDef(name, (), (), (), ()))
        self.required: dict[str, Any] = {}
        self.outputs: list[Any] = []
        self.seen_inputs: dict[str, int] = {}
        self.seen_outputs: set[str] = set()
        self.input_count = 0
        # source index -> {slot -> the group's links out of it, in file order}
        self.links_from: dict[int, dict[int, list[list[Any]]]] = {}
        self.external: dict[int, dict[int, Any]] = {}
        # inner PrimitiveNode index -> its group widget's [type, options], changed in place
        self.primitive_specs: dict[int, list[Any]] = {}
        self._read_links()

    def _read_links(self) -> None:
        for link in self.data.get("links") or []:
            if not isinstance(link, list) or len(link) < 4 or link[0] is None:
                continue
            src, src_slot, dst, dst_slot = (int(x) for x in link[:4])
            self.config.links_to.setdefault(dst, {})[dst_slot] = (src, src_slot)
            self.links_from.setdefault(src, {}).setdefault(src_slot, []).append(link)
        for ext in self.data.get("external") or []:
            if isinstance(ext[0], dict):
                # Saved as a copy of the node: the editor keys it as "[object Object]", which
                # matches no node, so the entry counts for nothing.
                continue
            self.external.setdefault(int(ext[0]), {})[int(ext[1])] = ext[2]

    def _input_name(self, node: RawNode, input_name: str) -> tuple[str, str]:
        custom = ((self.data.get("config") or {}).get(str(node.id)) or {}).get("input") or {}
        label = next((s.get("label") for s in node.data.get("inputs") or []
                      if s.get("name") == input_name), None)
        name = (custom.get(input_name) or {}).get("name") or label or input_name
        key, prefix = name, ""
        title = node.data.get("title")
        if (node.type == PRIMITIVE and title) or name in self.seen_inputs:
            prefix = f"{node.type if title is None else title} "
            key = name = f"{prefix}{input_name}"
            if name in self.seen_inputs:
                name = f"{prefix}{self.seen_inputs[name]} {input_name}"
        self.seen_inputs[key] = self.seen_inputs.get(key, 1) + 1
        return name, prefix

    def _add_input(self, node: RawNode, input_name: str, raw: Any) -> str:
        name, prefix = self._input_name(node, input_name)
        raw = list(raw) if isinstance(raw, (list, tuple)) else [raw]
        options = dict(raw[1]) if len(raw) > 1 and isinstance(raw[1], dict) else {}
        if input_name in ("seed", "noise_seed"):
            options["control_after_generate"] = f"{prefix}control_after_generate"
        self.required[name] = [raw[0], options]
        if node.type == PRIMITIVE:
            self.primitive_specs[int(node.id)] = self.required[name]
        return name

    def _info(self, node: RawNode) -> dict[str, Any] | None:
        """The definition the frontend uses for a member, or None when it skips the member."""
        if node.type == PRIMITIVE:
            return self._primitive_info(node)
        if node.type == REROUTE:
            return self._reroute_info(node)
        if node.type in _SKIPPED_TYPES:
            return None
        if node.type not in self.defs:
            raise _refuse(self.name, f"group node holds '{node.type}', which is not supported "
                                     "inside a group node")
        node_def = self.defs.get(node.type)
        if any(w.kind not in _PLAIN_KINDS and not self._image_upload(node, w.name)
               for w in node_def.widgets) or node_def.unsupported:
            raise _refuse(self.name, f"group node holds '{node.type}', whose widgets are not "
                                     "reproduced inside a group node")
        return dict(self.defs.object_info[node.type])

    def _image_upload(self, node: RawNode, widget: str) -> bool:
        """LoadImage's upload button: recorded inside a group (`handmade_group_load_image`)."""
        required = (self.defs.object_info[node.type].get("input") or {}).get("required") or {}
        return widget == "upload" and any(
            isinstance(raw, list) and len(raw) > 1 and isinstance(raw[1], dict)
            and raw[1].get("image_upload") is True for raw in required.values())

    def _primitive_info(self, node: RawNode) -> dict[str, Any] | None:
        """A PrimitiveNode linked inside the group: one input `value` of its first link's type."""
        links = self.links_from.get(int(node.id))
        if not links:
            return None
        first = links[0][0]
        kind = first[5] if len(first) > 5 else None
        if kind == "COMBO":
            widget = (node.data.get("outputs") or [{}])[0].get("widget") or {}
            target = self.config.nodes[int(first[2])]
            section = self.defs.object_info[target.type]["input"]
            kind = ((section.get("required") or {}).get(widget.get("name"))
                    or section["optional"][widget.get("name")])[0]
        if self.newer and isinstance(kind, list):
            raise _refuse(self.name, f"legacy group node '{PREFIX}{self.name}': a COMBO "
                                     f"PrimitiveNode inside it has no widget in "
                                     f"frontend {self.defs.frontend} (the combo's options are "
                                     "an old-style list), so the group's later values land in "
                                     "the wrong widgets")
        if not self._is_widget([kind]):
            raise _refuse(self.name, f"a PrimitiveNode inside the group feeds a {kind!r} input, "
                                     "which has no widget")
        return {"input": {"required": {"value": [kind, {}]}}, "output": [kind]}

    def _reroute_info(self, node: RawNode) -> dict[str, Any] | None:
        """A Reroute: dropped when linked on both sides inside (and not used outside),
        otherwise one input and one output of the type its links carry."""
        index = int(node.id)
        links_from, links_to = self.links_from.get(index), self.config.links_to.get(index)
        if links_to and links_from and not self.external.get(index, {}).get(0):
            return None
        kind: Any = "*"
        if links_from:
            for link in links_from[0]:
                target = self.config.nodes[int(link[2])]
                saved = (target.data.get("inputs") or [])[int(link[3])]
                kind = saved.get("type") if kind == "*" else kind
                if saved.get("widget") and not self.newer:
                    raise _refuse(self.name, _REROUTE_WIDGET.format(f"'{saved.get('name')}' of "
                                                                    f"'{target.type}'"))
        elif links_to:
            src, slot = links_to[0]
            kind = (self.config.nodes[src].data.get("outputs") or [])[slot].get("type")
        else:
            kind = next((lk[5] for lk in self.data.get("links") or []
                         if len(lk) > 5 and lk[2] == index), "*")
            if kind == "*":
                kind = self.external.get(index, {}).get(0) or kind
        if _is_widget([kind]) and not self.newer:
            raise _refuse(self.name, _REROUTE_WIDGET.format(f"of type {kind!r}"))
        return {"input": {"required": {kind: [kind, {"forceInput": True}]}}, "output": [kind]}

    def _primitive_link(self, link: tuple[int, int], target: RawNode, input_name: str,
                        raw: Any, slot: int) -> None:
        """The frontend's check of a link into a member: a PrimitiveNode at the other end
        gives its group widget this widget's options and a control widget."""
        src = link[0]
        if self.config.nodes[src].type != PRIMITIVE:
            return
        saved = target.data.get("inputs") or []
        linked = saved[slot].get("name") if slot < len(saved) else input_name
        if linked != input_name:  # recorded: `handmade_group_primitive_socket`
            self.config.misread.append((int(target.id), str(linked), input_name))
        spec = self.primitive_specs.get(src)
        if spec is None:
            raise _refuse(self.name, "a PrimitiveNode inside the group is defined after the "
                                     "widget it feeds; the editor fails on it")
        raw = list(raw) if isinstance(raw, (list, tuple)) else [raw]
        options = raw[1] if len(raw) > 1 and isinstance(raw[1], dict) else {}
        spec[1] = {**options, "control_after_generate": True}
        self.config.primitive_targets.setdefault(src, []).append((int(target.id), input_name))

    def node(self, node: RawNode, deferred: list[Any]) -> None:
        info = self._info(node)
        if info is None:
            return
        section = info.get("input") or {}
        inputs = {**(section.get("required") or {}), **(section.get("optional") or {})}
        index = int(node.id)
        saved = node.data.get("inputs") or []
        converted: dict[int, str] = {}
        slots: list[str] = []
        for input_name, raw in inputs.items():
            if not self._is_widget(raw):
                slots.append(input_name)
                continue
            at = next((i for i, s in enumerate(saved) if s.get("name") == input_name
                       and (s.get("widget") or {}).get("name") == input_name), -1)
            if at > -1:
                converted[at] = input_name
            else:
                self.config.widget_to_inner[self._add_input(node, input_name, raw)] = (
                    index, input_name)
        links_to = self.config.links_to.get(index, {})
        input_map = self.config.input_map.setdefault(index, {})
        for i, input_name in enumerate(slots):
            if i in links_to:
                self._primitive_link(links_to[i], node, input_name, inputs[input_name], i)
                continue
            name = self._add_input(node, input_name, inputs[input_name])
            input_map[i] = self._count(index, input_name, name)
        deferred.append((node, inputs, len(slots), converted))
        self._outputs(node, info)

    def converted(self, node: RawNode, inputs: dict[str, Any], n_slots: int,
                  converted: dict[int, str]) -> None:
        index = int(node.id)
        links_to = self.config.links_to.get(index, {})
        # The frontend sorts the saved slot indexes as strings ("10" before "2").
        for i, key in enumerate(sorted(converted, key=str)):
            input_name = converted[key]
            if n_slots + i in links_to:
                self._primitive_link(links_to[n_slots + i], node, input_name,
                                     inputs[input_name], n_slots + i)
                continue
            name = self._add_input(node, input_name, inputs[input_name])
            self.config.widget_to_inner[name] = (index, input_name)
            self.config.input_map.setdefault(index, {})[n_slots + i] = self._count(
                index, input_name, name)

    def _is_widget(self, raw: Any) -> bool:
        if not self.newer:
            return _is_widget(raw)
        kind = raw[0] if isinstance(raw, (list, tuple)) and raw else raw
        return isinstance(kind, str) and kind in self.widget_kinds

    def _count(self, index: int, input_name: str, name: str) -> int:
        """Number the group's next input slot (the frontend's `inputCount`)."""
        self.config.input_names.setdefault(index, {})[input_name] = self.input_count
        self.config.counted.append(name)
        self.input_count += 1
        return self.input_count - 1

    def _outputs(self, node: RawNode, info: dict[str, Any]) -> None:
        index = int(node.id)
        custom = ((self.data.get("config") or {}).get(str(index)) or {}).get("output") or {}
        for slot, out_type in enumerate(info.get("output") or []):
            hidden = slot in self.links_from.get(index, {}) and \
                not self.external.get(index, {}).get(slot)
            visible = (custom.get(str(slot)) or {}).get("visible", not hidden)
            if visible:
                self.config.output_to_inner.append((index, slot))
                self.outputs.append(out_type)

    def build(self) -> GroupConfig:
        deferred: list[Any] = []
        for node in self.config.nodes:
            self.node(node, deferred)
        for args in deferred:
            self.converted(*args)
        info = {"input": {"required": self.required}, "output": self.outputs}
        self.config.node_def = build_node_def(PREFIX + self.name, info,
                                              self.defs.frontend if self.newer else LEGACY)
        return self.config


def group_configs(workflow: dict[str, Any], defs: NodeDefinitions,
                  newer: bool = False) -> dict[str, GroupConfig]:
    """The group node types a workflow defines, keyed by their node type (`newer`: as
    frontends 1.48 and later build them)."""
    groups = (workflow.get("extra") or {}).get("groupNodes") or {}
    if not isinstance(groups, dict):
        raise UnsupportedStructure("extra.groupNodes is not an object")
    configs = {}
    for name, data in groups.items():
        try:
            configs[PREFIX + name] = _Builder(name, data, defs, newer).build()
        except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
            # The group's data is hand-edited or damaged in a way the editor would trip on.
            raise _refuse(name, f"group node data is malformed ({type(exc).__name__})") from exc
    return configs


def check_legacy_instance(node_id: str, node_type: str, mode: int, inputs: list[InSlot],
                          config: GroupConfig) -> None:
    """Refuse a group node instance that the frontends which wrote group nodes (1.27) queue
    otherwise than the file shows: they read the instance's inputs by the group's input
    numbers alone and ignore the group node's mute."""
    def refuse(text: str) -> UnsupportedStructure:
        return UnsupportedStructure(text, [problem(node_id, node_type, text)])

    for raw in config.nodes:
        if raw.type == PRIMITIVE and any(out.links for out in saved_outputs(raw)):
            # Recreating it replays its saved links, which name nothing inside the group.
            raise refuse(f"group node '{config.name}' holds a PrimitiveNode that lists output "
                         "links; the editor fails to queue it")
    for index, linked, widget in config.misread:  # recorded: `handmade_group_primitive_socket`
        raise refuse(f"group node {node_id} ('{node_type}'): a PrimitiveNode inside it feeds "
                     f"'{linked}' of member {index} ({config.nodes[index].type}), an input "
                     f"without a widget; the editor queues its value as '{widget}' instead")
    if mode == 2:  # recorded: `handmade_group_node_muted` queues the members, SaveImage too
        raise refuse(f"group node {node_id} ('{node_type}') is muted, but the editor queues "
                     "its members as if it were not")
    numbered = {number: (index, name) for index, names in config.input_names.items()
                for name, number in names.items()}
    for position, slot in enumerate(inputs):
        if slot.link is None:
            continue
        if position not in numbered:  # recorded: `handmade_group_old_style_inputs`
            raise refuse(f"group node {node_id} ('{node_type}'): the editor drops the link into "
                         f"its input '{slot.name}', which the group does not number")
        index, name = numbered[position]
        if slot.name != config.counted[position]:
            # recorded: `handmade_group_primitive_widget_linked`
            raise refuse(f"group node {node_id} ('{node_type}'): the editor queues the link into "
                         f"its input '{slot.name}' as '{name}' of member {index} "
                         f"({config.nodes[index].type}), by the input's position")


def missing_inner_types(workflow: dict[str, Any],
                        defs: NodeDefinitions) -> dict[str, list[tuple[str | None, str]]]:
    """Inner node types of group nodes that ComfyUI does not have, with where they are."""
    missing: dict[str, list[tuple[str | None, str]]] = {}
    extra = workflow.get("extra") or {}
    if not isinstance(extra, dict):
        raise UnsupportedStructure("the workflow's 'extra' is not an object")
    groups = extra.get("groupNodes") or {}
    for name, data in groups.items() if isinstance(groups, dict) else []:
        nodes = data.get("nodes") if isinstance(data, dict) else None
        for node in nodes if isinstance(nodes, list) else []:
            node_type = node.get("type") if isinstance(node, dict) else None
            if isinstance(node_type, str) and node_type not in defs \
                    and node_type not in (PRIMITIVE, REROUTE, *_SKIPPED_TYPES):
                missing.setdefault(node_type, []).append((None, f" inside group node '{name}'"))
    return missing
