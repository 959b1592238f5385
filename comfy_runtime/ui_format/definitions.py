"""What the frontend builds for a node class from ComfyUI's `/object_info`.

For each class the frontend creates, in a fixed order, input sockets and widgets; the saved
`widgets_values` are matched to those widgets by position, so the order here decides which
value lands in which input. Rules reproduced (ComfyUI frontend 1.27, ComfyUI 0.3.64):
- inputs follow the definition's `input_order` (required, then optional), then any input the
  order does not name (the upload inputs the frontend adds itself land there);
- an input becomes a widget when its type has a widget (INT, FLOAT, BOOLEAN, STRING, COMBO,
  upload buttons, ...) and it does not say `forceInput`; otherwise it is a socket;
- INT inputs with `control_after_generate` (or, for old nodes, named `seed`/`noise_seed`) get
  a second widget after them, COMBO inputs with it get two; neither reaches the API graph;
- media combos (`image_upload` ...) and audio inputs get an upload button after the required
  inputs; it holds a saved value but none in the API graph;
- the audio player of the audio nodes holds no saved value but writes `audioUI: ""`.
Definitions are computed once per class and cached on the `NodeDefinitions` object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from .frontends import LEGACY, SAVED_VALUE_WIDGETS, is_legacy, widget_types

# 3D viewers the frontend adds to these nodes as an `image` input; they have no value source,
# so they hold a saved value slot but always write "".
_VIEWER_NODES = {
    "SaveGLB": "PREVIEW_3D", "Preview3D": "PREVIEW_3D",
    "Preview3DAnimation": "PREVIEW_3D_ANIMATION",
}
# Nodes the frontend's audio extension gives a player widget (by class name, not by input).
_AUDIO_PLAYER_NODES = frozenset({
    "LoadAudio", "SaveAudio", "PreviewAudio", "SaveAudioMP3", "SaveAudioOpus",
})
_LEGACY_SEED_NAMES = ("seed", "noise_seed")
# ComfyUI's V3 node schema marks inputs the frontend builds itself (dynamic combos with nested
# inputs, growing input lists, type-matched and multi-typed sockets) with types of this form.
_V3_KIND = re.compile(r"^COMFY_[A-Z0-9_]+_V3$")
# Options that make newer frontends build something other than the plain widget or socket.
_LAYOUT_OPTIONS = ("component", "template")
# Classes whose widgets newer frontends' extensions build from the saved values (`configure`).
_EXTENSION_NODES = frozenset({"CustomCombo"})
_MEDIA_UPLOAD_FLAGS = ("image_upload", "video_upload", "animated_image_upload")


@dataclass(frozen=True)
class WidgetSpec:
    """One widget as the frontend creates it."""

    name: str
    kind: str  # INT FLOAT BOOLEAN STRING COMBO control filter button player
    has_slot: bool  # takes a place in `widgets_values`
    in_prompt: bool  # written to the API graph
    default: Any = None
    dynamic_prompts: bool = False
    fixed: bool = False  # the widget ignores assigned values and always reads `default`
    # A dynamic combo (V3): per option key, the widgets its inputs add right after it.
    choices: tuple[tuple[str, tuple[WidgetSpec, ...]], ...] | None = None


@dataclass(frozen=True)
class InputDef:
    """One input slot of the node in the frontend's order: sockets first, then widget inputs."""

    name: str
    type: str
    widget: str | None = None


@dataclass(frozen=True)
class NodeDef:
    """Everything the converter needs about one class."""

    class_type: str
    widgets: tuple[WidgetSpec, ...]
    inputs: tuple[InputDef, ...]
    outputs: tuple[str, ...]
    # (name, forceInput, widgets it accounts for) in definition order, for old-value migration
    migration: tuple[tuple[str, bool, int], ...]
    unsupported: str | None = None
    custom: bool = False  # from a custom node package (its own editor code may differ)
    v3: bool = False  # has V3 inputs: sockets and widgets beyond the definition's own
    extension: str | None = None  # newer frontends: an editor extension builds its widgets


@dataclass
class _Spec:
    name: str
    type: str
    options: dict[str, Any]
    optional: bool


def _type_name(raw: Any) -> str:
    return "COMBO" if isinstance(raw, list) else str(raw)


def _spec(name: str, raw: Any, optional: bool) -> _Spec:
    raw = raw if isinstance(raw, (list, tuple)) else [raw]
    options = raw[1] if len(raw) > 1 and isinstance(raw[1], dict) else {}
    if isinstance(raw[0], list):
        options = {**options, "options": raw[0]}
    return _Spec(name, _type_name(raw[0]), dict(options), optional)


def _declared_specs(class_type: str, info: dict[str, Any]) -> list[_Spec]:
    """Inputs in the definition's own order, with the inputs the frontend's extensions add."""
    section = info.get("input") or {}
    required = dict(section.get("required") or {})
    optional = dict(section.get("optional") or {})
    # The upload extensions append to `required`, so these land after the required inputs.
    for raw in required.values():
        raw_list = raw if isinstance(raw, (list, tuple)) else [raw]
        opts = raw_list[1] if len(raw_list) > 1 and isinstance(raw_list[1], dict) else {}
        if any(opts.get(flag) is True for flag in _MEDIA_UPLOAD_FLAGS) and (
            isinstance(raw_list[0], list) or raw_list[0] == "COMBO"
        ):
            required["upload"] = ["IMAGEUPLOAD", {}]
            break
    if class_type in _VIEWER_NODES:
        required["image"] = [_VIEWER_NODES[class_type]]
    if class_type in _AUDIO_PLAYER_NODES:
        required["audioUI"] = ["AUDIO_UI", {}]
    audio = required.get("audio")
    if isinstance(audio, (list, tuple)) and len(audio) > 1 and isinstance(audio[1], dict):
        if audio[1].get("audio_upload") is True:
            required["upload"] = ["AUDIOUPLOAD", {}]
    specs = {name: _spec(name, raw, False) for name, raw in required.items()}
    for name, raw in optional.items():
        specs[name] = _spec(name, raw, True)
    return list(specs.values())


def _ordered(specs: list[_Spec], order: dict[str, Any] | None) -> list[_Spec]:
    """The frontend's creation order: `input_order` required, optional, then the rest."""
    if not order:
        return specs
    by_name = {s.name: s for s in specs}
    result: list[_Spec] = []
    for section, want_optional in (("required", False), ("optional", True)):
        for name in order.get(section) or []:
            spec = by_name.get(name)
            if spec is not None and spec.optional == want_optional and spec not in result:
                result.append(spec)
    result.extend(s for s in specs if s not in result)
    return result


def unknown_kind(spec: _Spec, frontend: str = LEGACY) -> str | None:
    """Why the converter cannot know what the frontend builds for this input, or None.

    A V3 kind, a widget type the converter does not know, or an option that changes the
    layout: the widgets (and so which saved value lands where) or the sockets could differ
    from the frontend's, so a node using one is refused rather than converted differently."""
    widget_type = spec.options.get("widgetType")
    if _V3_KIND.match(spec.type):
        kind = spec.type
    elif widget_type is not None and widget_type not in widget_types(frontend)[0]:
        kind = f"{spec.type} shown as a {widget_type} widget"
    elif any(key in spec.options for key in _LAYOUT_OPTIONS):
        used = [key for key in _LAYOUT_OPTIONS if key in spec.options]
        kind = f"{spec.type} with the '{used[0]}' option"
    else:
        return None
    return f"input '{spec.name}' is of kind {kind}, which the converter does not reproduce"


def _is_widget(spec: _Spec, frontend: str = LEGACY) -> bool:
    kind = spec.options.get("widgetType") or spec.type
    return kind in widget_types(frontend)[0] and not spec.options.get("forceInput")


def _has_control(spec: _Spec) -> bool:
    flag = spec.options.get("control_after_generate")
    if flag is None:
        return spec.name in _LEGACY_SEED_NAMES
    return bool(flag)


def _combo_default(spec: _Spec) -> Any:
    default = spec.options.get("default")
    if default:  # the frontend tests truthiness, so "" and 0 fall through
        return default
    values = spec.options.get("options") or []
    if values:
        return values[0]
    return "Loading..." if spec.options.get("remote") else None


def _control() -> WidgetSpec:
    # Saved with the workflow, never queued: it acts after the prompt is sent.
    return WidgetSpec("control_after_generate", "control", True, False, "randomize")


def _widgets_for(spec: _Spec) -> list[WidgetSpec]:
    kind = spec.options.get("widgetType") or spec.type
    opts = spec.options
    if kind == "INT" or kind == "FLOAT":
        widgets = [WidgetSpec(spec.name, kind, True, True, opts.get("default", 0) or 0)]
        if kind == "INT" and _has_control(spec):
            widgets.append(_control())
        return widgets
    if kind == "BOOLEAN":
        return [WidgetSpec(spec.name, kind, True, True, opts.get("default", False) or False)]
    if kind == "STRING":
        default = opts.get("default")
        dynamic = opts.get("dynamicPrompts") is True
        default = "" if default is None else default
        return [WidgetSpec(spec.name, kind, True, True, default, dynamic)]
    if kind == "COMBO":
        widgets = [WidgetSpec(spec.name, kind, True, True, _combo_default(spec))]
        remote = opts.get("remote")
        if isinstance(remote, dict):
            # Remote combos always get an auto-refresh toggle (not queued), and a refresh
            # button (queued with its value) when asked for.
            widgets.append(WidgetSpec("Auto-refresh after generation", "toggle", True, False,
                                      False))
            if remote.get("refresh_button"):
                widgets.append(WidgetSpec("refresh", "button", True, True, "refresh"))
        if opts.get("control_after_generate"):
            widgets.append(_control())
            widgets.append(WidgetSpec("control_filter_list", "filter", True, False, ""))
        return widgets
    if kind in ("IMAGEUPLOAD", "AUDIOUPLOAD"):
        default = "image" if kind == "IMAGEUPLOAD" else None
        return [WidgetSpec(spec.name, "button", True, False, default)]
    if kind in ("PREVIEW_3D", "PREVIEW_3D_ANIMATION"):
        return [WidgetSpec(spec.name, "viewer", True, True, "", fixed=True)]
    if kind == "AUDIO_RECORD":
        # A freshly loaded recorder has recorded nothing, so it queues ""; its record
        # button holds a saved value but is not queued.
        return [WidgetSpec(spec.name, "viewer", True, True, "", fixed=True),
                WidgetSpec(spec.name, "button", True, False, "")]
    if kind in SAVED_VALUE_WIDGETS:  # newer frontends' editors (colour, curve, canvas ...)
        default = opts.get("default")
        return [WidgetSpec(spec.name, "editor", True, True, "" if default is None else default)]
    if kind == "IMAGECOMPARE":
        # Newer frontends: not saved, queued as two empty image URLs until the node has run.
        return [WidgetSpec(spec.name, "viewer", False, True, ["", ""], fixed=True)]
    if kind == "AUDIO_UI":
        # A DOM widget with no value source: not saved, and written to the prompt as "".
        return [WidgetSpec(spec.name, "player", False, True, "", fixed=True)]
    raise AssertionError(kind)


def _v3_widgets(spec: _Spec, frontend: str, depth: int = 0) -> list[WidgetSpec] | str:
    """The widgets a V3 input starts with as newer frontends build it, or why not reproduced.

    A dynamic combo is a combo of its option keys; the chosen option's inputs follow it,
    named `<combo>.<input>` (nested combos again). An autogrow list and a type-matched input
    are sockets only: the editor saves each of their slots by name, links included, so the
    saved slots carry them. Anything holding a widget inside an autogrow list is refused."""
    if spec.type == "COMFY_MATCHTYPE_V3":
        return []
    if spec.type == "COMFY_AUTOGROW_V3":
        template = spec.options.get("template")
        inner = template.get("input") if isinstance(template, dict) else None
        raws = [raw for section in (inner or {}).values() if isinstance(section, dict)
                for raw in section.values()]
        specs = [_spec(spec.name, raw, False) for raw in raws]
        if not specs or any(unknown_kind(s, frontend) or _is_widget(s, frontend)
                            for s in specs):
            return f"input '{spec.name}' is of kind {spec.type} holding widgets"
        return []
    options = spec.options.get("options")
    if spec.type != "COMFY_DYNAMICCOMBO_V3" or depth > 8 or not isinstance(options, list):
        return f"input '{spec.name}' is of kind {spec.type}"
    choices: list[tuple[str, tuple[WidgetSpec, ...]]] = []
    for option in options:
        key, inputs = option.get("key"), option.get("inputs") or {}
        if not isinstance(key, str) or not isinstance(inputs, dict):
            return f"input '{spec.name}' is a dynamic combo with a malformed option"
        widgets: list[WidgetSpec] = []
        for section in ("required", "optional"):
            for name, raw in (inputs.get(section) or {}).items():
                sub = _spec(f"{spec.name}.{name}", raw, section == "optional")
                found = _layout(sub, frontend, depth + 1)
                if isinstance(found, str):
                    return found
                widgets.extend(found)
        choices.append((key, tuple(widgets)))
    combo = _Spec(spec.name, "COMBO", {**spec.options, "options": [k for k, _ in choices]},
                  spec.optional)
    first, *rest = _widgets_for(combo)
    return [replace(first, choices=tuple(choices)), *rest]


def _layout(spec: _Spec, frontend: str, depth: int) -> list[WidgetSpec] | str:
    """Widgets of one input inside a V3 input, or why it is refused."""
    if _V3_KIND.match(spec.type):
        return _v3_widgets(spec, frontend, depth)
    unknown = unknown_kind(spec, frontend)
    if unknown is not None:
        return unknown
    if not _is_widget(spec, frontend):
        return []
    kind = spec.options.get("widgetType") or spec.type
    if kind in widget_types(frontend)[1] or spec.options.get("multiselect"):
        return f"input '{spec.name}' uses a {kind} widget, whose value the browser computes"
    return _widgets_for(spec)


@dataclass
class _Layout:
    widgets: list[WidgetSpec] = field(default_factory=list)
    sockets: list[InputDef] = field(default_factory=list)
    widget_inputs: list[InputDef] = field(default_factory=list)
    unsupported: str | None = None
    v3: bool = False

    def refuse(self, text: str) -> None:
        self.unsupported = self.unsupported or text


def _add(layout: _Layout, spec: _Spec, frontend: str) -> None:
    """One declared input's widgets and slot, or why the node is refused."""
    if _V3_KIND.match(spec.type) and not is_legacy(frontend):
        layout.v3 = True
        found = _v3_widgets(spec, frontend)
        if isinstance(found, str):
            layout.refuse(f"{found}, which the converter does not reproduce")
        else:
            layout.widgets.extend(found)
        return
    unknown = unknown_kind(spec, frontend)
    if unknown is not None or not _is_widget(spec, frontend):
        if unknown is not None:
            layout.refuse(unknown)
        layout.sockets.append(InputDef(spec.name, spec.type))
        return
    kind = spec.options.get("widgetType") or spec.type
    if kind in widget_types(frontend)[1]:
        layout.refuse(f"input '{spec.name}' uses a {kind} widget, whose value the browser "
                      "computes")
    elif spec.options.get("multi_select") or spec.options.get("multiselect"):
        layout.refuse(f"input '{spec.name}' is a multi-select widget")
    else:
        layout.widgets.extend(_widgets_for(spec))
        layout.widget_inputs.append(InputDef(spec.name, spec.type, spec.name))


def build_node_def(class_type: str, info: dict[str, Any], frontend: str = LEGACY) -> NodeDef:
    """Compute the frontend's widgets, input slots and outputs for one class."""
    declared = _declared_specs(class_type, info)
    layout = _Layout()
    for spec in _ordered(declared, info.get("input_order")):
        _add(layout, spec, frontend)
    widgets = layout.widgets
    if not is_legacy(frontend):  # newer frontends no longer queue the audio player
        widgets = [replace(w, in_prompt=False) if w.kind == "player" else w for w in widgets]
    if class_type == "PreviewAny" and is_legacy(frontend):
        # Its extension appends a read-only text box after the widgets (1.27 queues it as "").
        widgets.append(WidgetSpec("preview", "viewer", False, True, "", fixed=True))
    names = {w.name for w in widgets}
    migration = tuple(
        (s.name, bool(s.options.get("forceInput")),
         2 if (s.options.get("control_after_generate") or s.name in _LEGACY_SEED_NAMES) else 1)
        for s in declared
        if s.name in names or s.options.get("forceInput")
    )
    outputs = tuple(_type_name(t) for t in info.get("output") or [])
    custom = str(info.get("python_module") or "").startswith("custom_nodes")
    extension = class_type if class_type in _EXTENSION_NODES and not is_legacy(frontend) \
        else None
    return NodeDef(class_type, tuple(widgets), tuple(layout.sockets + layout.widget_inputs),
                   outputs, migration, layout.unsupported, custom, layout.v3, extension)


@dataclass
class NodeDefinitions:
    """ComfyUI's `/object_info`, with each class's frontend layout computed once."""

    object_info: dict[str, Any]
    frontend: str = LEGACY  # the recorded frontend version followed (`frontends.RECORDED`)
    _cache: dict[str, NodeDef] = field(default_factory=dict)

    def __contains__(self, class_type: object) -> bool:
        return isinstance(class_type, str) and class_type in self.object_info

    def get(self, class_type: str) -> NodeDef:
        found = self._cache.get(class_type)
        if found is None:
            found = build_node_def(class_type, self.object_info[class_type], self.frontend)
            self._cache[class_type] = found
        return found
