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

from .configure import Node, Widget
from .definitions import NodeDefinitions
from .errors import ConversionError, UnsupportedStructure, problem
from .load import load
from .replace import SAVE_NODE_TYPES, NodeIndex, apply_replacements
from .resolve import BYPASS, NEVER, Dto, Resolver, flatten
from .values import UNDEFINED, RandomChoice, api_value, dynamic_prompt

log = logging.getLogger(__name__)

DEFAULT_MAX_NODES = 100_000
"""Nodes a workflow may flatten to unless the caller says otherwise (the worker passes
MAX_GRAPH_NODES): far past any real workflow, short of what would take the converter long."""


def _widget_value(dto: Dto, widget: Widget, lookup: NodeIndex) -> Any:
    value = widget.value
    if dto.node.type in SAVE_NODE_TYPES and widget.name == "filename_prefix":
        if not isinstance(value, str):
            text = f"filename_prefix is not text ({value!r}); the editor fails to queue it"
            raise UnsupportedStructure(text, [problem(dto.id, dto.node.type, text)])
        value = apply_replacements(value, lookup, dto.node)
    if widget.spec.dynamic_prompts and isinstance(value, str):
        try:
            value = dynamic_prompt(value)
        except RandomChoice as exc:
            text = f"widget '{widget.name}': {exc}; the queued text would be random"
            raise UnsupportedStructure(text, [problem(dto.id, dto.node.type, text)]) from exc
    return api_value(value)


def _node_inputs(dto: Dto, resolver: Resolver, lookup: NodeIndex) -> dict[str, Any]:
    if dto.node.unsupported:
        text = f"{dto.node.unsupported}; it cannot be converted outside the browser"
        raise UnsupportedStructure(text, [problem(dto.id, dto.node.type, text)])
    inputs: dict[str, Any] = {}
    for widget in dto.node.widgets:
        if widget.name and widget.spec.in_prompt:
            inputs[widget.name] = _widget_value(dto, widget, lookup)
            if inputs[widget.name] is UNDEFINED:
                del inputs[widget.name]  # JSON has no undefined: the key disappears
    for index, slot in enumerate(dto.node.inputs):
        origin = resolver.resolve_input(dto, index, set())
        if origin is None:
            continue
        if origin.is_widget:
            inputs[slot.name] = api_value(origin.widget_value)
            if inputs[slot.name] is UNDEFINED:
                del inputs[slot.name]
        else:
            inputs[slot.name] = [origin.node_id, origin.slot]
    return inputs


_DEFAULT_TITLES = {"PrimitiveNode": "Primitive", "MarkdownNote": "Markdown Note"}


def _title(node: Node, definitions: NodeDefinitions) -> str:
    # The saved title, else the class's display name (what the editor shows and `_meta` holds).
    raw = node.raw.data if node.raw else {}
    title = raw.get("title")
    if isinstance(title, str) and title:
        return title
    if node.subgraph is not None:
        return node.subgraph.name
    info = definitions.object_info.get(node.type) or {}
    return str(info.get("display_name") or _DEFAULT_TITLES.get(node.type, node.type))


def _drop_dangling(output: dict[str, dict[str, Any]]) -> None:
    for entry in output.values():
        inputs = entry["inputs"]
        for name in [n for n, v in inputs.items()
                     if isinstance(v, list) and len(v) == 2 and v[0] not in output]:
            del inputs[name]


def to_api_with_definitions(workflow: Any, definitions: NodeDefinitions,
                            max_nodes: int = DEFAULT_MAX_NODES) -> dict[str, Any]:
    """Like `to_api`, reusing definitions whose per-class layouts are already computed."""
    try:
        return _convert(workflow, definitions, max_nodes)
    except ConversionError:
        raise
    except RecursionError as exc:
        raise UnsupportedStructure("the workflow nests links or subgraphs too deeply") from exc
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, ArithmeticError) as exc:
        # A shape no check above anticipated: refuse it rather than guess.
        log.debug("malformed editor workflow", exc_info=True)
        raise UnsupportedStructure(
            f"the workflow has a structure the converter does not understand "
            f"({type(exc).__name__}: {str(exc)[:80]})") from exc


def _convert(workflow: Any, definitions: NodeDefinitions, max_nodes: int) -> dict[str, Any]:
    root, _ = load(workflow, definitions, max_nodes)
    nodes = flatten(root)
    resolver = Resolver(nodes)
    lookup = NodeIndex(root, lambda node: _title(node, definitions))
    output: dict[str, dict[str, Any]] = {}
    for dto in nodes.values():
        if dto.node.is_virtual or dto.node.mode in (NEVER, BYPASS):
            continue
        output[dto.id] = {"inputs": _node_inputs(dto, resolver, lookup),
                          "class_type": dto.node.type,
                          "_meta": {"title": _title(dto.node, definitions)}}
    _drop_dangling(output)
    log.debug("converted editor workflow: %d nodes in, %d in the API graph",
              len(nodes), len(output))
    return output


def to_api(workflow: dict[str, Any], object_info: dict[str, Any],
           max_nodes: int = DEFAULT_MAX_NODES) -> dict[str, Any]:
    """Convert an editor-format workflow to the API graph ComfyUI's frontend would queue.

    `object_info` is ComfyUI's `/object_info`. Raises a `ConversionError` subclass, with
    `details`, whenever the result could differ from the frontend's; `_meta` is not written.
    A workflow that flattens to more than `max_nodes` nodes is refused (`TooManyNodes`)
    before anything is built.
    """
    return to_api_with_definitions(workflow, NodeDefinitions(object_info), max_nodes)
