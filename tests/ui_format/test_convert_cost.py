"""What converting costs is counted before it is paid (issue 22): the shapes the issue
reproduced (tests/ui_format/hostile_shapes.py) are refused from their definitions alone, or
converted in time linear in their size.

The timeouts are not speed claims (bench/hostile_cost.py measures those): each is tens of times
what the fixed converter needs, and a fraction of what the quadratic code took.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from comfy_runtime.ui_format import ConversionError, TooManyNodes, count_nodes, to_api
from comfy_runtime.ui_format.convert import DEFAULT_MAX_NODES
from tests.ui_format import hostile_shapes as shapes

OBJECT_INFO: dict[str, Any] = json.loads(
    (Path(__file__).parent / "object_info.json").read_text(encoding="utf-8"))


@pytest.mark.timeout(20)
def test_nested_subgraphs_are_counted_before_anything_is_built() -> None:
    # Defect 1: a few KB whose definitions hold 62 nodes flatten to fanout**levels leaves.
    workflow = shapes.nested_subgraphs(5)
    assert count_nodes(workflow) == shapes.expanded_size(5) == 211111
    with pytest.raises(TooManyNodes) as info:
        to_api(workflow, OBJECT_INFO)
    assert info.value.count == 211111 and info.value.limit == DEFAULT_MAX_NODES
    assert "211111 nodes" in str(info.value) and str(DEFAULT_MAX_NODES) in str(info.value)


@pytest.mark.timeout(20)
def test_a_million_nodes_of_subgraphs_cost_nothing_to_refuse() -> None:
    with pytest.raises(TooManyNodes, match="2111111 nodes"):
        to_api(shapes.nested_subgraphs(6), OBJECT_INFO, max_nodes=2000)


@pytest.mark.timeout(20)
def test_nesting_past_any_sane_count_is_refused_without_computing_it_exactly() -> None:
    with pytest.raises(TooManyNodes, match="more than"):
        to_api(shapes.nested_subgraphs(2000, fanout=2), OBJECT_INFO)


def test_the_count_is_what_the_conversion_builds() -> None:
    workflow = shapes.nested_subgraphs(2, fanout=3)
    out = to_api(workflow, OBJECT_INFO)
    assert len(out) == 9  # the leaves; the 4 instances are not nodes of the API graph
    assert count_nodes(workflow) == 1 + 3 + 9 + 9  # instances at each level, then leaves
    with pytest.raises(TooManyNodes):
        to_api(workflow, OBJECT_INFO, max_nodes=21)
    assert len(to_api(workflow, OBJECT_INFO, max_nodes=22)) == 9


@pytest.mark.timeout(20)
def test_save_nodes_in_subgraphs_convert_in_linear_time() -> None:
    # Defect 2: `%...%` replacement listed every node per save node, `%` or not.
    workflow = shapes.nested_subgraphs(4, leaf="SaveImage")
    out = to_api(workflow, OBJECT_INFO)
    assert len(out) == 10000
    assert {node["inputs"]["filename_prefix"] for node in out.values()} == {"out"}


@pytest.mark.timeout(20)
def test_a_replacement_finds_its_node_among_many() -> None:
    workflow = shapes.save_nodes(10000)
    workflow["nodes"][0].update(title="first", widgets_values=["first-prefix"])
    workflow["nodes"][-1]["widgets_values"] = ["%first.filename_prefix%-x"]
    assert to_api(workflow, OBJECT_INFO)["10000"]["inputs"]["filename_prefix"] == "first-prefix-x"
    # Save nodes have no "Node name for S&R": the title finds the first one not retitled.
    workflow["nodes"][-1]["widgets_values"] = ["%Save Image.filename_prefix%-x"]
    assert to_api(workflow, OBJECT_INFO)["10000"]["inputs"]["filename_prefix"] == "out-x"


@pytest.mark.timeout(20)
def test_group_node_members_are_counted_per_use() -> None:
    # Defect 3: one group of 4000 nodes used by 10 root nodes was counted as 10 nodes.
    workflow = shapes.group_node(4000, 10)
    assert count_nodes(workflow) == 10 * 4001
    with pytest.raises(TooManyNodes, match="40010 nodes"):
        to_api(workflow, OBJECT_INFO, max_nodes=2000)


@pytest.mark.timeout(30)
def test_a_large_group_node_converts_in_linear_time() -> None:
    # Defect 3: each member's widget was looked up along every widget of the group.
    out = to_api(shapes.group_node(10000, 1), OBJECT_INFO)
    assert len(out) == 10000
    assert out["1:9999"]["inputs"] == {"width": 64, "height": 64, "batch_size": 1}


@pytest.mark.timeout(20)
def test_a_primitive_with_many_links_converts_in_linear_time() -> None:
    # Defect 6: each of its links was searched for in the list of those already found.
    out = to_api(shapes.primitive_links(40000), OBJECT_INFO)
    assert out["2"]["class_type"] == "EmptyLatentImage"


@pytest.mark.parametrize("slot", [float("inf"), float("-inf"), float("nan"), 1e300])
def test_a_link_slot_that_is_no_number_is_refused(slot: float) -> None:
    # Defect 11: `1e309` is read as infinity, and int(infinity) is an OverflowError.
    workflow = shapes.primitive_links(2)
    workflow["links"][0][4] = slot
    with pytest.raises(ConversionError, match="slot"):
        to_api(workflow, OBJECT_INFO)


@pytest.mark.parametrize("definitions", [
    {"subgraphs": 5}, {"subgraphs": [{"id": "s", "nodes": 7}]}, {"subgraphs": [5]},
    {"subgraphs": [{"id": "s", "nodes": [5]}]}, 5, {"subgraphs": [{"id": 5, "nodes": []}]},
])
def test_malformed_definitions_are_refused_by_the_count_too(definitions: Any) -> None:
    workflow = {"nodes": [], "links": [], "definitions": definitions}
    with pytest.raises(ConversionError):
        count_nodes(workflow)
    with pytest.raises(ConversionError):
        to_api(workflow, OBJECT_INFO)
