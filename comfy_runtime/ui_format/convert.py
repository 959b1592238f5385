"""`to_api`: the API graph the frontend's `graphToPrompt()` would queue for a workflow.

Per node of the flattened graph, skipping editor-only, muted and bypassed nodes: first every
widget that reaches the prompt, then every input, whose link (followed through bypasses,
reroutes and subgraphs) either names a node output `[id, slot]`, gives a promoted widget
value, or leads nowhere and leaves the widget value in place. Last, inputs that name a node
which did not make it into the graph (muted, say) are dropped, as the frontend drops them.
"""

from __future__ import annotations

import logging
from typing import Any

from .configure import Widget
from .definitions import NodeDefinitions
from .errors import UnsupportedStructure, problem
from .load import load
from .resolve import BYPASS, NEVER, Dto, Resolver, flatten
from .values import RandomChoice, api_value, dynamic_prompt

log = logging.getLogger(__name__)


def _widget_value(dto: Dto, widget: Widget) -> Any:
    value = widget.value
    if widget.spec.dynamic_prompts and isinstance(value, str):
        try:
            value = dynamic_prompt(value)
        except RandomChoice as exc:
            text = f"widget '{widget.name}': {exc}; the queued text would be random"
            raise UnsupportedStructure(text, [problem(dto.id, dto.node.type, text)]) from exc
    return api_value(value)


def _node_inputs(dto: Dto, resolver: Resolver) -> dict[str, Any]:
    if dto.node.unsupported:
        text = f"{dto.node.unsupported}; it cannot be converted outside the browser"
        raise UnsupportedStructure(text, [problem(dto.id, dto.node.type, text)])
    inputs: dict[str, Any] = {}
    for widget in dto.node.widgets:
        if widget.name and widget.spec.in_prompt:
            inputs[widget.name] = _widget_value(dto, widget)
    for index, slot in enumerate(dto.node.inputs):
        origin = resolver.resolve_input(dto, index, set())
        if origin is None:
            continue
        if origin.is_widget:
            inputs[slot.name] = api_value(origin.widget_value)
        else:
            inputs[slot.name] = [origin.node_id, origin.slot]
    return inputs


def _title(dto: Dto, definitions: NodeDefinitions) -> str:
    # Informational only (ComfyUI ignores `_meta`): the saved title, else the display name.
    raw = dto.node.raw.data if dto.node.raw else {}
    title = raw.get("title")
    if isinstance(title, str) and title:
        return title
    info = definitions.object_info.get(dto.node.type) or {}
    return str(info.get("display_name") or dto.node.type)


def _drop_dangling(output: dict[str, dict[str, Any]]) -> None:
    for entry in output.values():
        inputs = entry["inputs"]
        for name in [n for n, v in inputs.items()
                     if isinstance(v, list) and len(v) == 2 and v[0] not in output]:
            del inputs[name]


def to_api_with_definitions(workflow: Any, definitions: NodeDefinitions) -> dict[str, Any]:
    """Like `to_api`, reusing definitions whose per-class layouts are already computed."""
    root, _ = load(workflow, definitions)
    nodes = flatten(root)
    resolver = Resolver(nodes)
    output: dict[str, dict[str, Any]] = {}
    for dto in nodes.values():
        if dto.node.is_virtual or dto.node.mode in (NEVER, BYPASS):
            continue
        output[dto.id] = {"inputs": _node_inputs(dto, resolver), "class_type": dto.node.type,
                          "_meta": {"title": _title(dto, definitions)}}
    _drop_dangling(output)
    log.debug("converted editor workflow: %d nodes in, %d in the API graph",
              len(nodes), len(output))
    return output


def to_api(workflow: dict[str, Any], object_info: dict[str, Any]) -> dict[str, Any]:
    """Convert an editor-format workflow to the API graph ComfyUI's frontend would queue.

    `object_info` is ComfyUI's `/object_info`. Raises a `ConversionError` subclass, with
    `details`, whenever the result could differ from the frontend's; `_meta` is not written.
    """
    return to_api_with_definitions(workflow, NodeDefinitions(object_info))
