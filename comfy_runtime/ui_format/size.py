"""How many nodes a workflow becomes, counted from its definitions before anything is built.

A subgraph instance becomes itself plus everything its definition holds, instances inside it
included; a legacy group node becomes itself plus one node per member. A few KB of nested
definitions can so stand for millions of nodes, and the converter's work (and memory) follows
the expanded count, not the file's. The count is made in one pass over the definitions, each
counted once however often it is used, and saturates at `COUNT_CAP` so that it stays a small
number whatever the nesting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import TooManyNodes, UnsupportedStructure, problem
from .graph import RawGraph, read_workflow
from .group_nodes import PREFIX

COUNT_CAP = 10**12
"""Counts stop here: past it the exact number says nothing more, and would grow without end."""


def expanded_count(root: RawGraph, subgraphs: Mapping[str, RawGraph],
                   group_members: Mapping[str, int]) -> int:
    """Nodes `root` flattens to (every node once per place it appears), at most `COUNT_CAP`.

    Node types must already be as the loader sees them (group nodes `workflow>Name`).
    """
    sizes: dict[str, int] = {}
    for sub_id in subgraphs:
        _size_of(sub_id, subgraphs, group_members, sizes)
    return _graph_size(root, sizes, group_members)


def _graph_size(graph: RawGraph, sizes: Mapping[str, int],
                group_members: Mapping[str, int]) -> int:
    total = 0
    for node in graph.nodes:
        total += 1 + sizes.get(node.type, 0) + group_members.get(node.type, 0)
        if total >= COUNT_CAP:
            return COUNT_CAP
    return total


def _size_of(start: str, subgraphs: Mapping[str, RawGraph], group_members: Mapping[str, int],
             sizes: dict[str, int]) -> None:
    """Fill `sizes[start]` and every definition it uses: depth first, without recursion, each
    definition's nodes walked once."""
    if start in sizes:
        return
    stack = [(start, iter(subgraphs[start].nodes))]
    open_ = {start}
    while stack:
        sub_id, rest = stack[-1]
        for node in rest:
            if node.type in subgraphs and node.type not in sizes:
                if node.type in open_:
                    text = f"subgraph '{subgraphs[node.type].name}' contains itself"
                    raise UnsupportedStructure(text, [problem(None, node.type, text)])
                stack.append((node.type, iter(subgraphs[node.type].nodes)))
                open_.add(node.type)
                break
        else:
            sizes[sub_id] = _graph_size(subgraphs[sub_id], sizes, group_members)
            stack.pop()
            open_.discard(sub_id)


def group_member_counts(workflow: dict[str, Any]) -> dict[str, int]:
    """Members per legacy group node type (`workflow>Name`), from `extra.groupNodes`."""
    extra = workflow.get("extra")
    groups = extra.get("groupNodes") if isinstance(extra, dict) else None
    if not isinstance(groups, dict):
        return {}
    return {PREFIX + str(name): len(data["nodes"]) for name, data in groups.items()
            if isinstance(data, dict) and isinstance(data.get("nodes"), list)}


def count_nodes(workflow: Any) -> int:
    """Nodes the workflow flattens to (subgraph instances times their contents, group node
    instances times their members); `ConversionError` if it is not an editor workflow."""
    root, subgraphs = read_workflow(workflow)
    for node in root.nodes:
        if node.type.startswith("workflow/"):  # the older spelling of a group node type
            node.type = PREFIX + node.type[len("workflow/"):]
    return expanded_count(root, subgraphs, group_member_counts(workflow))


def check_count(count: int, limit: int) -> None:
    """Refuse a workflow that flattens to more than `limit` nodes."""
    if count > limit:
        raise TooManyNodes(count, limit, capped=count >= COUNT_CAP)
