"""Which node runs next, and which nodes a cache may answer for.

The order follows ComfyUI's scheduler, because clients see it in `executing` messages:
outputs are added depth-first (a stack, inputs in prompt order), and among the nodes whose
inputs are ready an output node goes first, then a direct input of an output node, then an
input of such an input, else the earliest-added ready node.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any


def is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


class DependencyCycle(Exception):
    pass


class ExecutionOrder:
    def __init__(self, prompt: dict[str, Any], is_output: Callable[[str], bool],
                 is_cached: Callable[[str], bool]) -> None:
        self._prompt = prompt
        self._is_output = is_output
        self._is_cached = is_cached
        self._pending: dict[str, None] = {}  # insertion-ordered set
        self._waiting_on: dict[str, int] = {}
        self._blocks: dict[str, dict[str, None]] = {}

    def add_output(self, node_id: str) -> None:
        links: list[tuple[str, str]] = []
        stack = [node_id]
        while stack:
            current = stack.pop()
            if current in self._pending:
                continue
            self._pending[current] = None
            self._waiting_on.setdefault(current, 0)
            self._blocks.setdefault(current, {})
            for value in self._prompt[current].get("inputs", {}).values():
                if not is_link(value):
                    continue
                source = value[0]
                if not self._is_cached(source):
                    stack.append(source)
                    links.append((source, current))
        for source, target in links:
            if target not in self._blocks[source]:
                self._blocks[source][target] = None
                self._waiting_on[target] += 1

    def is_empty(self) -> bool:
        return not self._pending

    def next_node(self) -> str:
        ready = [n for n in self._pending if self._waiting_on[n] == 0]
        if not ready:
            raise DependencyCycle("Dependency cycle detected")
        for candidate in ready:
            if self._is_output_id(candidate):
                return candidate
        for candidate in ready:
            if any(self._is_output_id(t) for t in self._blocks[candidate]):
                return candidate
        for candidate in ready:
            for target in self._blocks[candidate]:
                if any(self._is_output_id(t) for t in self._blocks.get(target, {})):
                    return candidate
        return ready[0]

    def complete(self, node_id: str) -> None:
        self._pending.pop(node_id, None)
        for target in self._blocks.get(node_id, {}):
            self._waiting_on[target] -= 1

    def _is_output_id(self, node_id: str) -> bool:
        return self._is_output(self._prompt[node_id]["class_type"])


def signatures(prompt: dict[str, Any], extra: Callable[[str], Any]) -> dict[str, str]:
    """A cache key per node: its class, its constant inputs, `extra(node_id)` (ComfyUI's
    IS_CHANGED, e.g. a file hash) and, through links, the keys of everything upstream. Node ids
    are not part of it, so two identical subgraphs share cache entries as in ComfyUI."""
    done: dict[str, str] = {}

    def key(node_id: str, trail: frozenset[str]) -> str:
        if node_id in done:
            return done[node_id]
        entry = prompt[node_id]
        parts: list[Any] = [entry["class_type"], repr(extra(node_id))]
        for name in sorted(entry.get("inputs", {})):
            value = entry["inputs"][name]
            if is_link(value) and value[0] in prompt and value[0] not in trail:
                parts.append([name, "link", key(value[0], trail | {node_id}), value[1]])
            else:
                parts.append([name, "value", value])
        digest = hashlib.sha256(json.dumps(parts, default=repr).encode()).hexdigest()
        done[node_id] = digest
        return digest

    for node_id in prompt:
        key(node_id, frozenset())
    return done
