"""Each node as the frontend holds it once a workflow is loaded.

Loading changes what was saved, and the queued graph follows the loaded state:
- a node from ComfyUI's definitions gets its input slots in the definition's order (saved
  slots are matched by name, so a saved link keeps its input), then any extra saved inputs;
  output types come from the definition;
- saved widget values fill the widgets that hold a value, in order; a short list leaves
  defaults; old lists that still hold a value for a `forceInput` input lose it first;
- a few historic node and value renames are applied;
- a subgraph instance takes its definition's inputs, and each input that feeds a widget
  inside gets a "promoted" copy of that widget on the instance.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .definitions import NodeDef, NodeDefinitions, WidgetSpec
from .errors import UnsupportedStructure, WidgetMismatch, problem
from .graph import InSlot, IOSlot, Link, OutSlot, RawNode, saved_inputs, saved_outputs

# Nodes that exist only in the editor; they never reach the API graph.
VIRTUAL_TYPES = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})
# Historic names the frontend rewrites when it loads a workflow.
RENAMED_TYPES = {
    "T2IAdapterLoader": "ControlNetLoader",
    "ConditioningAverage ": "ConditioningAverage",
    "SDV_img2vid_Conditioning": "SVD_img2vid_Conditioning",
}
_CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize", "increment-wrap"})
# The PrimitiveNode property that runs %date%-style text replacement on its value.
_REPLACE_PROPERTY = "Run widget replace on values"


@dataclass
class Widget:
    spec: WidgetSpec
    value: Any

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class Node:
    id: str
    type: str
    kind: str  # comfy primitive reroute note subgraph group
    mode: int
    inputs: list[InSlot]
    outputs: list[OutSlot]
    widgets: list[Widget] = field(default_factory=list)
    subgraph: Graph | None = None
    raw: RawNode | None = None
    unsupported: str | None = None  # why this node cannot be written to the API graph
    group: Any = None  # a legacy group node's GroupConfig
    group_inner: list[Node] = field(default_factory=list)  # its inner nodes, per instance
    v3: bool = False  # V3 inputs whose slots are not all saved: no bypass rule known
    _index: dict[str, Widget] = field(default_factory=dict, repr=False, compare=False)
    _indexed: list[Widget] | None = field(default=None, repr=False, compare=False)
    _indexed_count: int = field(default=-1, repr=False, compare=False)

    @property
    def class_type(self) -> str | None:
        return self.type if self.kind == "comfy" else None

    @property
    def is_virtual(self) -> bool:
        return self.kind != "comfy"

    def widget(self, name: str | None) -> Widget | None:
        """The first widget of that name (a group node has thousands: looked up by name)."""
        if name is None:
            return None
        if self._indexed is not self.widgets or self._indexed_count != len(self.widgets):
            # Made on first use, again after widgets were added or the list replaced.
            self._index = {}
            for widget in self.widgets:
                self._index.setdefault(widget.name, widget)
            self._indexed, self._indexed_count = self.widgets, len(self.widgets)
        return self._index.get(name)


@dataclass
class Graph:
    nodes: dict[str, Node]
    links: dict[Any, Link]
    subgraph_id: str | None = None
    name: str = ""
    inputs: list[IOSlot] = field(default_factory=list)
    outputs: list[IOSlot] = field(default_factory=list)


def _mismatch(node: RawNode, text: str) -> WidgetMismatch:
    return WidgetMismatch(text, [problem(node.id, node.type, text)])


def _fits(spec: WidgetSpec, value: Any) -> bool:
    """Whether a saved value can belong to this widget; a misfit means a shifted list."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if spec.kind in ("INT", "FLOAT"):
        return number
    if spec.kind in ("BOOLEAN", "toggle"):
        return isinstance(value, bool)
    if spec.kind in ("STRING", "filter"):
        return isinstance(value, str)
    if spec.kind == "COMBO":
        return value is None or number or isinstance(value, str)
    if spec.kind == "control":
        return isinstance(value, bool) or (isinstance(value, str) and value in _CONTROL_VALUES)
    return True


def _migrate(node_def: NodeDef, values: list[Any]) -> list[Any]:
    """Drop values old editors saved for `forceInput` inputs, when the count says they did."""
    if sum(count for _, _, count in node_def.migration) != len(values):
        return values
    force = [forced for _, forced, _ in node_def.migration]
    return [v for i, v in enumerate(values) if i >= len(force) or not force[i]]


def _assign(node: RawNode, widgets: list[Widget], values: Any, migrate: NodeDef | None) -> None:
    if values is None:
        return
    if isinstance(values, dict):
        if migrate is None or not migrate.custom:
            # The core editor ignores values saved as an object and keeps the defaults, which
            # is surely not what the file means: refuse rather than queue defaults.
            raise _mismatch(node, "widgets_values is an object; the editor would ignore it "
                                  "and use the defaults")
        # Custom node packages that save values keyed by widget name (VideoHelperSuite and
        # the like) restore them by name in their own editor code.
        for widget in widgets:
            if widget.spec.has_slot and not widget.spec.fixed and widget.name in values:
                widget.value = values[widget.name]
                _check(node, widget)
        return
    if not isinstance(values, list):
        raise _mismatch(node, f"widgets_values is a {type(values).__name__}, not a list")
    if migrate is not None:
        values = _migrate(migrate, values)
    holders = [w for w in widgets if w.spec.has_slot]
    for widget, value in zip(holders, values):
        if not widget.spec.fixed:
            widget.value = value
            _check(node, widget)


def _assign_dynamic(node: RawNode, specs: tuple[WidgetSpec, ...], values: Any) -> list[Widget]:
    """Widgets of a node with V3 inputs, values assigned in order: each dynamic combo, once
    it holds its value, adds the chosen option's widgets right after itself, and the next
    saved values go to those (a short list leaves defaults, the default option included)."""
    if values is None:
        values = []
    if not isinstance(values, list):
        raise _mismatch(node, f"widgets_values is a {type(values).__name__}, not a list")
    result: list[Widget] = []
    pending = list(reversed(specs))
    position = 0
    while pending:
        spec = pending.pop()
        widget = Widget(spec, spec.default)
        if spec.has_slot:
            if position < len(values) and not spec.fixed:
                widget.value = values[position]
                _check(node, widget)
            position += 1
        result.append(widget)
        if spec.choices is not None:
            chosen = dict(spec.choices).get(widget.value)
            if chosen is None:
                raise _mismatch(node, f"saved value {widget.value!r} is not an option of the "
                                      f"dynamic combo '{widget.name}'")
            pending.extend(reversed(chosen))
    return result


def _custom_combo(node: RawNode, values: Any) -> list[Widget]:
    """CustomCombo in newer frontends: its choice, the choice's index and one text box per
    option (the last one empty, for the next option), all saved and queued in that order."""
    if not isinstance(values, list) or len(values) < 3 or not isinstance(values[1], int) \
            or isinstance(values[1], bool) or not all(isinstance(v, str) for v in values[2:]) \
            or not 0 <= values[1] < len(values) - 2 or values[2 + values[1]] != values[0]:
        raise _mismatch(node, "CustomCombo's saved values are not its choice, the choice's "
                              "index and its options, as its editor extension reads them")
    names = ["choice", "index", *(f"option{i}" for i in range(1, len(values) - 1))]
    kinds = ["COMBO", "INT", *(["STRING"] * (len(values) - 2))]
    return [Widget(WidgetSpec(name, kind, True, True, value), value)
            for name, kind, value in zip(names, kinds, values)]


def _check(node: RawNode, widget: Widget) -> None:
    if not _fits(widget.spec, widget.value):
        raise _mismatch(node, f"saved value {widget.value!r} does not fit the "
                              f"{widget.spec.kind} widget '{widget.name}'")


def _comfy_inputs(node_def: NodeDef, saved: list[InSlot]) -> list[InSlot]:
    by_name = {slot.name: slot for slot in saved}
    defined = {d.name for d in node_def.inputs}
    slots = [InSlot(d.name, d.type, by_name[d.name].link if d.name in by_name else None, d.widget)
             for d in node_def.inputs]
    return slots + [slot for slot in saved if slot.name not in defined]


def _comfy_outputs(node_def: NodeDef, saved: list[OutSlot]) -> list[OutSlot]:
    result = []
    for i in range(max(len(node_def.outputs), len(saved))):
        links = saved[i].links if i < len(saved) else []
        if i < len(node_def.outputs):
            name = saved[i].name if i < len(saved) else ""
            result.append(OutSlot(name, node_def.outputs[i], links))
        else:
            result.append(saved[i])
    return result


# Marks a legacy group's member pasted by a newer frontend (`group_subgraphs`).
GROUP_MEMBER = "__legacy_group_member__"


def configure_comfy(raw: RawNode, defs: NodeDefinitions, root: bool,
                    node_def: NodeDef | None = None) -> Node:
    """A node the frontend builds from a definition (ComfyUI's, or a group node's)."""
    node_def = node_def or defs.get(raw.type)
    widgets = [Widget(spec, spec.default) for spec in node_def.widgets]
    if node_def.unsupported is None and node_def.extension == "CustomCombo":
        widgets = _custom_combo(raw, raw.data.get("widgets_values"))
    elif node_def.unsupported is None and node_def.v3:
        widgets = _assign_dynamic(raw, node_def.widgets, raw.data.get("widgets_values"))
    elif node_def.unsupported is None:
        # A node with a browser-only widget is refused only if it reaches the API graph
        # (muted and bypassed ones do not), so its values are not read here.
        _assign(raw, widgets, raw.data.get("widgets_values"), node_def)
    if root and raw.type in ("KSampler", "KSamplerAdvanced"):
        # The frontend renames samplers saved under their pre-2023 names on load.
        for widget in widgets:
            if widget.name == "sampler_name" and isinstance(widget.value, str) \
                    and widget.value.startswith("sample_"):
                widget.value = widget.value[7:]
    if raw.data.get(GROUP_MEMBER):
        # Recorded (`handmade_group_load_image`, 1.48.7 and 1.49.6): a member pasted out of
        # a group node queues its image upload button's value ("upload": "image").
        widgets = [Widget(replace(w.spec, in_prompt=True), w.value)
                   if w.spec.kind == "button" and w.name == "upload" else w for w in widgets]
    saved = saved_inputs(raw)
    v3_slots_unknown = False
    if node_def.v3:
        # V3 slots change with links and chosen options; the saved slots are the editor's own
        # when they hold every defined input (else which one a bypass passes is not known).
        names = {slot.name for slot in saved}
        v3_slots_unknown = any(d.name not in names for d in node_def.inputs)
    inputs = saved if node_def.v3 and not v3_slots_unknown else _comfy_inputs(node_def, saved)
    return Node(raw.id, raw.type, "comfy", raw.mode, inputs,
                _comfy_outputs(node_def, saved_outputs(raw)), widgets, raw=raw,
                unsupported=node_def.unsupported, v3=v3_slots_unknown)


def configure_virtual(raw: RawNode) -> Node:
    kind = {"PrimitiveNode": "primitive", "Reroute": "reroute"}.get(raw.type, "note")
    node = Node(raw.id, raw.type, kind, raw.mode, saved_inputs(raw), saved_outputs(raw), raw=raw)
    if kind == "primitive":
        _configure_primitive(raw, node)
    return node


def _configure_primitive(raw: RawNode, node: Node) -> None:
    values = raw.data.get("widgets_values")
    properties = raw.data.get("properties") or {}
    value: Any = values[0] if isinstance(values, list) and values else _FROM_TARGET
    if properties.get(_REPLACE_PROPERTY) and isinstance(value, str) and "%" in value:
        text = "PrimitiveNode runs text replacement (%...%) on its value at queue time"
        raise UnsupportedStructure(text, [problem(raw.id, raw.type, text)])
    # Without a saved value the primitive copies the widget it is first linked to when the
    # graph is configured; `load` fills that in.
    node.widgets = [Widget(WidgetSpec("value", "value", True, True, None), value)]


# Marks a PrimitiveNode value that is taken from the first widget it feeds.
_FROM_TARGET = object()


def takes_target_value(widget: Widget) -> bool:
    return widget.value is _FROM_TARGET


def configure_instance(raw: RawNode, sub: Graph) -> Node:
    """A subgraph instance: the definition's slots, with saved links matched by name."""
    saved = saved_inputs(raw)
    by_name = {slot.name: slot for slot in saved}
    defined = {s.name for s in sub.inputs}
    inputs = [InSlot(s.name, s.type, by_name[s.name].link if s.name in by_name else None)
              for s in sub.inputs]
    inputs += [InSlot(s.name, s.type, s.link) for s in saved if s.name not in defined]
    outs = saved_outputs(raw)
    outputs = [OutSlot(s.name, s.type, outs[i].links if i < len(outs) else [])
               for i, s in enumerate(sub.outputs)] + outs[len(sub.outputs):]
    node = Node(raw.id, raw.type, "subgraph", raw.mode, inputs, outputs, subgraph=sub, raw=raw)
    by_input: dict[str, IOSlot] = {}
    for io_slot in sub.inputs:
        by_input.setdefault(io_slot.name, io_slot)  # the first of a name, as the editor finds
    for slot in inputs:
        _promote(node, slot, by_input.get(slot.name), sub)
    _assign(raw, node.widgets, raw.data.get("widgets_values"), None)
    return node


def _promote(node: Node, slot: InSlot, sub_input: IOSlot | None, sub: Graph) -> None:
    if sub_input is None:
        return
    for link_id in sub_input.link_ids:
        link = sub.links.get(link_id)
        inner = sub.nodes.get(link.target_id) if link else None
        if link is None or inner is None:
            continue
        # The input that holds the link: the saved slot number counts the saved inputs, which
        # newer editors write without the unlinked widget inputs (so it may point elsewhere).
        held = next((s for s in inner.inputs if s.link == link.id), None)
        widget = inner.widget(held.widget) if held is not None else None
        if widget is None:
            continue
        node.widgets.append(Widget(replace(widget.spec, name=sub_input.name), widget.value))
        slot.widget = sub_input.name
        return
