"""POST /prompt validation with ComfyUI's error shapes.

ComfyUI validates from each output node upstream; a node's own problems are reported on that
node, and an output whose inputs are broken upstream fails with no reasons of its own (which is
why the top-level `details` is often ""). Errors are dicts exactly as ComfyUI sends them.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any

from .catalogue import IMAGE_LOADERS, Catalogue
from .files import Dirs, resolve_annotated

Error = dict[str, Any]


@dataclass
class Verdict:
    ok: bool
    error: Error | None = None
    outputs: list[str] = field(default_factory=list)
    """The output nodes to execute, in the order the runner adds them."""
    node_errors: dict[str, Any] = field(default_factory=dict)


def _error(kind: str, message: str, details: str = "", **extra: Any) -> Error:
    return {"type": kind, "message": message, "details": details, "extra_info": dict(extra)}


def _type_name(exc: BaseException) -> str:
    module = type(exc).__module__
    name = type(exc).__qualname__
    return name if module == "builtins" else f"{module}.{name}"


def _types_match(received: str, expected: Any) -> bool:
    """ComfyUI's link check: "*" takes anything, "A,B" unions match any member."""
    if not isinstance(expected, str):
        return False
    if received == expected or "*" in (received, expected):
        return True
    wanted = {t.strip() for t in expected.split(",")}
    offered = {t.strip() for t in received.split(",")}
    return bool(wanted & offered)


class _Validator:
    def __init__(self, prompt: dict[str, Any], catalogue: Catalogue, dirs: Dirs) -> None:
        self.prompt = prompt
        self.catalogue = catalogue
        self.dirs = dirs
        # node id -> (valid, reasons), filled as nodes are visited, like ComfyUI's `validated`
        self.validated: dict[str, tuple[bool, list[Error]]] = {}
        self._visiting: set[str] = set()

    def node(self, node_id: str) -> tuple[bool, list[Error]]:
        if node_id in self.validated:
            return self.validated[node_id]
        if node_id in self._visiting:
            # A cycle: ComfyUI reports it when it runs the graph, not here.
            return True, []
        self._visiting.add(node_id)
        try:
            verdict = self._check(node_id)
        finally:
            self._visiting.discard(node_id)
        self.validated[node_id] = verdict
        return verdict

    def _check(self, node_id: str) -> tuple[bool, list[Error]]:
        entry = self.prompt[node_id]
        inputs: dict[str, Any] = entry.get("inputs", {})
        class_type: str = entry["class_type"]
        spec = self.catalogue.spec(class_type)
        sections = spec.get("input", {})
        required = sections.get("required", {})
        optional = sections.get("optional", {})
        custom = {"image"} if class_type in IMAGE_LOADERS else set()
        errors: list[Error] = []
        upstream_ok = True

        for name in list(required) + [n for n in optional if n not in required]:
            config = required.get(name, optional.get(name))
            input_type = config[0] if isinstance(config, list) and config else config
            extra = config[1] if isinstance(config, list) and len(config) > 1 else {}
            info = [input_type, extra]
            if name not in inputs:
                if name in required:
                    errors.append(_error("required_input_missing", "Required input is missing",
                                         name, input_name=name))
                continue
            value = inputs[name]
            if isinstance(value, list):
                ok, link_errors = self._check_link(name, value, input_type, info)
                errors += link_errors
                upstream_ok = upstream_ok and ok
                continue
            if isinstance(value, dict) and "__value__" in value:
                value = value["__value__"]
            try:
                value = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}.get(
                    input_type if isinstance(input_type, str) else "", lambda v: v)(value)
            except (TypeError, ValueError) as exc:
                errors.append(_error(
                    "invalid_input_type",
                    f"Failed to convert an input value to a {input_type} value",
                    f"{name}, {value}, {exc}", input_name=name, input_config=info,
                    received_value=value, exception_message=str(exc)))
                continue
            if name in custom:
                continue
            problem = self._check_value(name, value, input_type, extra, info)
            if problem is not None:
                errors.append(problem)

        for name in sorted(custom):
            problem = self._custom(class_type, name, inputs.get(name))
            if problem is not None:
                errors.append(_error("custom_validation_failed",
                                     "Custom validation failed for node",
                                     f"{name} - {problem}", input_name=name))
        return (not errors and upstream_ok), errors

    def _check_link(self, name: str, value: list[Any], input_type: Any,
                    info: list[Any]) -> tuple[bool, list[Error]]:
        if len(value) != 2:
            return False, [_error(
                "bad_linked_input",
                "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                name, input_name=name, input_config=info, received_value=value)]
        source_id, socket = value
        # A missing or malformed source raises here, as in ComfyUI (KeyError, IndexError...);
        # the caller turns it into exception_during_(inner_)validation.
        source_class = self.prompt[source_id]["class_type"]
        received = self.catalogue.output_types(source_class)[socket]
        if not _types_match(received, input_type):
            return False, [_error(
                "return_type_mismatch", "Return type mismatch between linked nodes",
                f"{name}, received_type({received}) mismatch input_type({input_type})",
                input_name=name, input_config=info, received_type=received, linked_node=value)]
        try:
            ok, _ = self.node(source_id)
        except Exception as exc:  # noqa: BLE001 - reported to the client like ComfyUI does
            self.validated[source_id] = (False, [_error(
                "exception_during_inner_validation", "Exception when validating inner node",
                str(exc), input_name=name, input_config=info, exception_message=str(exc),
                exception_type=_type_name(exc), traceback=traceback.format_tb(exc.__traceback__),
                linked_node=value)])
            return False, []
        return ok, []

    @staticmethod
    def _check_value(name: str, value: Any, input_type: Any, extra: dict[str, Any],
                     info: list[Any]) -> Error | None:
        if "min" in extra and value < extra["min"]:
            return _error("value_smaller_than_min",
                          f"Value {value} smaller than min of {extra['min']}", name,
                          input_name=name, input_config=info, received_value=value)
        if "max" in extra and value > extra["max"]:
            return _error("value_bigger_than_max",
                          f"Value {value} bigger than max of {extra['max']}", name,
                          input_name=name, input_config=info, received_value=value)
        options = input_type if isinstance(input_type, list) else (
            extra.get("options") if input_type == "COMBO" else None)
        if options is not None and value not in options:
            config: list[Any] | None = info
            listed = str(options)
            if len(options) > 20:
                # ComfyUI does not echo long lists (scanned model folders) back.
                listed, config = f"(list of length {len(options)})", None
            return _error("value_not_in_list", "Value not in list",
                          f"{name}: '{value}' not in {listed}", input_name=name,
                          input_config=config, received_value=value)
        return None

    def _custom(self, class_type: str, name: str, value: Any) -> str | None:
        """LoadImage's own check replaces the combo check: the file must exist."""
        if not isinstance(value, str) or not resolve_annotated(self.dirs, value).exists():
            return f"Invalid image file: {value}"
        return None


def _missing_node(node_id: str, entry: Any, class_type: Any, newer: bool) -> Error:
    """An unknown or absent class_type: 0.3.64's words, or 0.33's missing_node_type."""
    where = f"Node ID '#{node_id}'"
    if not newer:
        if class_type is None:
            return _error("invalid_prompt",
                          "Cannot execute because a node is missing the class_type property.",
                          where)
        return _error("invalid_prompt",
                      f"Cannot execute because node {class_type} does not exist.", where)
    meta = entry.get("_meta") if isinstance(entry, dict) else None
    title = meta.get("title") if isinstance(meta, dict) else None
    if class_type is None:
        message = (f"Node 'ID #{node_id}' has no class_type. The workflow may be corrupted or a "
                   "custom node is missing.")
    else:
        message = f"Node '{title or class_type}' not found. The custom node may not be installed."
    return _error("missing_node_type", message, where, node_id=node_id, class_type=class_type,
                  node_title=title or class_type)


def validate_prompt(prompt: Any, catalogue: Catalogue, dirs: Dirs,
                    partial_targets: list[str] | None = None, *,
                    newer_errors: bool = False) -> Verdict:
    if not isinstance(prompt, dict):
        return Verdict(False, _error("invalid_prompt", "Prompt must be an object of nodes",
                                     str(type(prompt).__name__)))
    outputs: list[str] = []
    for node_id, entry in prompt.items():
        if not isinstance(entry, dict) or "class_type" not in entry:
            return Verdict(False, _missing_node(node_id, entry, None, newer_errors))
        class_type = entry["class_type"]
        if class_type not in catalogue:
            return Verdict(False, _missing_node(node_id, entry, class_type, newer_errors))
        if catalogue.is_output_node(class_type) and (
                partial_targets is None or node_id in partial_targets):
            outputs.append(node_id)
    if not outputs:
        return Verdict(False, _error("prompt_no_outputs", "Prompt has no outputs"))

    # ComfyUI keeps its outputs in a set; the reverse of prompt order reproduces the order the
    # recordings show (runtime_partial_success.json, prompt_preview.json).
    outputs.reverse()
    validator = _Validator(prompt, catalogue, dirs)
    good: list[str] = []
    failures: list[tuple[str, list[Error]]] = []
    node_errors: dict[str, Any] = {}
    for output_id in outputs:
        try:
            ok, reasons = validator.node(output_id)
        except Exception as exc:  # noqa: BLE001 - reported to the client like ComfyUI does
            ok, reasons = False, [_error(
                "exception_during_validation", "Exception when validating node", str(exc),
                exception_type=_type_name(exc), traceback=traceback.format_tb(exc.__traceback__))]
            validator.validated[output_id] = (False, reasons)
        if ok:
            good.append(output_id)
            continue
        if reasons:
            failures.append((output_id, reasons))
        for node_id, (valid, node_reasons) in validator.validated.items():
            if valid or not node_reasons:
                continue
            entry = node_errors.setdefault(node_id, {
                "errors": node_reasons, "dependent_outputs": [],
                "class_type": prompt[node_id]["class_type"]})
            entry["dependent_outputs"].append(output_id)

    if not good:
        details = "\n".join(f"{e['message']}: {e['details']}" for _, errs in failures for e in errs)
        return Verdict(False, _error("prompt_outputs_failed_validation",
                                     "Prompt outputs failed validation", details),
                       node_errors=node_errors)
    return Verdict(True, outputs=good, node_errors=node_errors)
