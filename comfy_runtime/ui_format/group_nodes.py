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

Reproduced for inner nodes from ComfyUI's definitions; primitives, reroutes and upload
widgets inside a group, and groups inside subgraphs, are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .definitions import NodeDef, NodeDefinitions, build_node_def
from .errors import UnsupportedStructure, problem
from .graph import RawNode, _node

PREFIX = "workflow>"
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


def _refuse(name: str, text: str) -> UnsupportedStructure:
    return UnsupportedStructure(text, [problem(None, PREFIX + name, text)])


def _is_widget(raw: Any) -> bool:
    kind = raw[0] if isinstance(raw, (list, tuple)) and raw else raw
    return isinstance(kind, list) or kind in _WIDGET_TYPES


class _Builder:
    """Builds the group's definition in the order the frontend adds inputs and outputs."""

    def __init__(self, name: str, data: dict[str, Any], defs: NodeDefinitions) -> None:
        self.name, self.data, self.defs = name, data, defs
        self.config = GroupConfig(name, [_node({**n, "id": i}) for i, n in
                                         enumerate(data.get("nodes") or [])],
                                  NodeDef(name, (), (), (), ()))
        self.required: dict[str, Any] = {}
        self.outputs: list[Any] = []
        self.seen_inputs: dict[str, int] = {}
        self.seen_outputs: set[str] = set()
        self.input_count = 0
        self.links_from: dict[int, dict[int, bool]] = {}
        self.external: dict[int, set[int]] = {}
        self._read_links()

    def _read_links(self) -> None:
        for link in self.data.get("links") or []:
            if not isinstance(link, list) or len(link) < 4 or link[0] is None:
                continue
            src, src_slot, dst, dst_slot = (int(x) for x in link[:4])
            self.config.links_to.setdefault(dst, {})[dst_slot] = (src, src_slot)
            self.links_from.setdefault(src, {})[src_slot] = True
        for ext in self.data.get("external") or []:
            self.external.setdefault(int(ext[0]), set()).add(int(ext[1]))

    def _input_name(self, node: RawNode, input_name: str) -> tuple[str, str]:
        custom = ((self.data.get("config") or {}).get(str(node.id)) or {}).get("input") or {}
        label = next((s.get("label") for s in node.data.get("inputs") or []
                      if s.get("name") == input_name), None)
        name = (custom.get(input_name) or {}).get("name") or label or input_name
        key, prefix = name, ""
        if name in self.seen_inputs:
            prefix = f"{node.data.get('title') or node.type} "
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
        return name

    def node(self, node: RawNode, deferred: list[Any]) -> None:
        if node.type not in self.defs:
            raise _refuse(self.name, f"group node holds '{node.type}', which is not supported "
                                     "inside a group node")
        info = self.defs.object_info[node.type]
        node_def = self.defs.get(node.type)
        if any(w.kind not in _PLAIN_KINDS for w in node_def.widgets) or node_def.unsupported:
            raise _refuse(self.name, f"group node holds '{node.type}', whose widgets are not "
                                     "reproduced inside a group node")
        section = info.get("input") or {}
        inputs = {**(section.get("required") or {}), **(section.get("optional") or {})}
        index = int(node.id)
        saved = node.data.get("inputs") or []
        converted: dict[int, str] = {}
        slots: list[str] = []
        for input_name, raw in inputs.items():
            if not _is_widget(raw):
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
                continue
            self._add_input(node, input_name, inputs[input_name])
            input_map[i] = self.input_count
            self.input_count += 1
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
                continue
            name = self._add_input(node, input_name, inputs[input_name])
            self.config.widget_to_inner[name] = (index, input_name)
            self.config.input_map.setdefault(index, {})[n_slots + i] = self.input_count
            self.input_count += 1

    def _outputs(self, node: RawNode, info: dict[str, Any]) -> None:
        index = int(node.id)
        custom = ((self.data.get("config") or {}).get(str(index)) or {}).get("output") or {}
        for slot, out_type in enumerate(info.get("output") or []):
            hidden = slot in self.links_from.get(index, {}) and \
                slot not in self.external.get(index, set())
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
        self.config.node_def = build_node_def(PREFIX + self.name, info)
        return self.config


def group_configs(workflow: dict[str, Any], defs: NodeDefinitions) -> dict[str, GroupConfig]:
    """The group node types a workflow defines, keyed by their node type."""
    groups = (workflow.get("extra") or {}).get("groupNodes") or {}
    if not isinstance(groups, dict):
        raise UnsupportedStructure("extra.groupNodes is not an object")
    configs = {}
    for name, data in groups.items():
        try:
            configs[PREFIX + name] = _Builder(name, data, defs).build()
        except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
            # The group's data is hand-edited or damaged in a way the editor would trip on.
            raise _refuse(name, f"group node data is malformed ({type(exc).__name__})") from exc
    return configs


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
                    and node_type not in ("PrimitiveNode", "Reroute"):
                missing.setdefault(node_type, []).append((None, f" inside group node '{name}'"))
    return missing
