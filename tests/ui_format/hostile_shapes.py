"""Editor workflows and workflow files built to cost the worker as much as possible (issue 22).

Each builder makes one shape the issue reproduced, at a size its caller picks; the tests use
them small enough to run, `bench/_hostile_workflows.py` at the largest size the default limits
allow. Node types are ComfyUI's own (EmptyLatentImage, SaveImage, EmptyImage), so the shapes
convert against the recorded `/object_info` and the double's.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any


def _leaf(node_id: int, leaf: str) -> dict[str, Any]:
    if leaf == "SaveImage":
        return {"id": node_id, "type": "SaveImage", "mode": 0, "widgets_values": ["out"],
                "inputs": [{"name": "images", "type": "IMAGE", "link": None}], "outputs": []}
    return {"id": node_id, "type": leaf, "mode": 0, "widgets_values": [64, 64, 1],
            "inputs": [], "outputs": [{"name": "LATENT", "type": "LATENT", "links": []}]}


def _instance(node_id: int, sub_id: str) -> dict[str, Any]:
    return {"id": node_id, "type": sub_id, "mode": 0, "inputs": [], "outputs": []}


def nested_subgraphs(levels: int, fanout: int = 10, leaf: str = "EmptyLatentImage",
                     ) -> dict[str, Any]:
    """`s0` holds one `leaf`, each `s(i)` holds `fanout` instances of `s(i-1)`, the root one
    instance of `s(levels)`: a few KB that expand to `fanout ** levels` leaves."""
    subgraphs = [{"id": "s0", "name": "s0", "inputs": [], "outputs": [], "links": [],
                  "nodes": [_leaf(1, leaf)]}]
    for level in range(1, levels + 1):
        subgraphs.append({"id": f"s{level}", "name": f"s{level}", "inputs": [], "outputs": [],
                          "links": [], "nodes": [_instance(i + 1, f"s{level - 1}")
                                                 for i in range(fanout)]})
    return {"version": 0.4, "nodes": [_instance(1, f"s{levels}")], "links": [],
            "definitions": {"subgraphs": subgraphs}}


def expanded_size(levels: int, fanout: int = 10) -> int:
    """Nodes `nested_subgraphs` flattens to: every instance and every leaf."""
    return sum(fanout ** level for level in range(levels + 1)) + fanout ** levels


def save_nodes(count: int) -> dict[str, Any]:
    """`count` SaveImage nodes at the top level, none of their prefixes holding a `%`."""
    return {"version": 0.4, "nodes": [_leaf(i + 1, "SaveImage") for i in range(count)],
            "links": []}


def group_node(members: int, uses: int) -> dict[str, Any]:
    """One legacy group node of `members` EmptyLatentImage nodes, used by `uses` root nodes."""
    inner = [{**_leaf(-1, "EmptyLatentImage"), "index": i} for i in range(members)]
    values = [v for _ in range(members) for v in (64, 64, 1)]
    nodes = [{"id": i + 1, "type": "workflow>Many", "mode": 0, "widgets_values": values,
              "inputs": [], "outputs": [{"name": "LATENT", "type": "LATENT", "links": []}]}
             for i in range(uses)]
    return {"version": 0.4, "nodes": nodes, "links": [],
            "extra": {"groupNodes": {"Many": {"nodes": inner, "links": [], "external": []}}}}


def primitive_links(count: int) -> dict[str, Any]:
    """One PrimitiveNode whose output lists `count` links, all into one node's extra inputs."""
    target = {"id": 2, "type": "EmptyLatentImage", "mode": 0, "widgets_values": [64, 64, 1],
              "inputs": [{"name": f"extra{i}", "type": "INT", "link": i + 1}
                         for i in range(count)],
              "outputs": [{"name": "LATENT", "type": "LATENT", "links": []}]}
    primitive = {"id": 1, "type": "PrimitiveNode", "mode": 0, "widgets_values": [64],
                 "inputs": [], "outputs": [{"name": "INT", "type": "INT",
                                            "links": list(range(1, count + 1))}]}
    links = [[i + 1, 1, 0, 2, i, "INT"] for i in range(count)]
    return {"version": 0.4, "nodes": [primitive, target], "links": links}


def empty_lists_json(size: int) -> bytes:
    """A JSON workflow file of `size` bytes or up to 2 more, nearly all of it empty lists."""
    count = max(0, -(-(size - 28) // 3))
    return b'{"nodes": [], "links": [' + b"[]," * count + b'[]]}'


def deep_json(depth: int) -> bytes:
    """A JSON workflow file whose `extra` nests `depth` lists deep."""
    return b'{"nodes": [], "links": [], "extra": ' + b"[" * depth + b"]" * depth + b"}"


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return struct.pack(">I", len(data)) + kind + data + crc


def png(width: int, height: int, text: dict[str, str] | None = None,
        pixels: bytes | None = None) -> bytes:
    """A PNG of `width` x `height` RGB pixels, all zero unless `pixels` (the IDAT's compressed
    data, valid or not) is given, with `text` as tEXt chunks before the pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    if pixels is None:
        pack = zlib.compressobj(9)
        row = b"\x00" * (1 + 3 * width)
        pixels = b"".join(pack.compress(row) for _ in range(height)) + pack.flush()
    chunks = [_chunk(b"IHDR", header)]
    chunks += [_chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1"))
               for key, value in (text or {}).items()]
    chunks += [_chunk(b"IDAT", pixels), _chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def as_text(workflow: dict[str, Any]) -> str:
    return json.dumps(workflow, separators=(",", ":"))
