"""No figure of its own: the editor-workflow and workflow-file shapes of issue 22, as jobs.

Each is built at the largest size the default limits allow (MAX_GRAPH_NODES 2000,
MAX_WORKFLOW_FILE_BYTES 8 MiB, RunPod's 10 MB job input) or at the size the issue reproduced,
whichever costs more before the fix. Shapes that pass every check are sent with
`convert_only`: converting is then the whole of the worker's work.
"""

from __future__ import annotations

import base64
import zlib
from typing import Any

from _hostile import Shape, serving

from tests.ui_format import hostile_shapes as shapes

MiB = 1024 * 1024
_URL = {"ALLOW_PRIVATE_URLS": "true"}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _editor(workflow: dict[str, Any], convert_only: bool = False) -> dict[str, Any]:
    return {"workflow": workflow, **({"convert_only": True} if convert_only else {})}


def _numbers_json(size: int) -> bytes:
    count = (size - 40) // 4
    return b'{"nodes": [], "links": [' + b"1e1," * count + b"1e1]}"


def _bomb_png() -> bytes:
    """A PNG whose compressed `workflow` text inflates to 1 GiB (about 1 MB on the wire)."""
    pack = zlib.compressobj(9)
    text = b"".join(pack.compress(b" " * MiB) for _ in range(1024)) + pack.flush()
    base = shapes.png(8, 8)
    at = base.index(b"IDAT") - 4
    body = b"workflow\x00\x00" + text
    chunk = (len(body).to_bytes(4, "big") + b"zTXt" + body
             + zlib.crc32(b"zTXt" + body).to_bytes(4, "big"))
    return base[:at] + chunk + base[at:]


def _slot_1e309() -> dict[str, Any]:
    text = shapes.as_text(shapes.primitive_links(2)).replace(",0,2,0,", ",0,2,1e309,", 1)
    return {"workflow": _b64(text.encode())}


SHAPES: dict[str, Shape] = {
    "subgraphs 10^6": Shape("nested subgraphs, 10 per level, 6 levels (2.1 M nodes), 3 KB",
                            lambda: _editor(shapes.nested_subgraphs(6))),
    "subgraphs 10^199": Shape("nested subgraphs, 10 per level, 199 levels (1991 nodes written, "
                              "the most allowed), 130 KB",
                              lambda: _editor(shapes.nested_subgraphs(199))),
    "save nodes 2000": Shape("2000 SaveImage nodes (the most allowed), `%...%` pass each",
                             lambda: _editor(shapes.save_nodes(2000), convert_only=True)),
    "save nodes in subgraphs 10^4": Shape(
        "SaveImage in nested subgraphs, 4 levels (the issue's 30 s)",
        lambda: _editor(shapes.nested_subgraphs(4, leaf="SaveImage"))),
    "group 4000 x 10": Shape("one group node of 4000 members used 10 times (556 KB)",
                             lambda: _editor(shapes.group_node(4000, 10))),
    "group 1500 x 10": Shape("one group node of 1500 members used 10 times (15,010 nodes)",
                             lambda: _editor(shapes.group_node(1500, 10))),
    "group 1999 x 1": Shape("one group node of 1999 members (the most allowed), converted",
                            lambda: _editor(shapes.group_node(1999, 1), convert_only=True)),
    "primitive 100k links": Shape("one PrimitiveNode listing 100,000 links (7 MB)",
                                  lambda: _editor(shapes.primitive_links(100_000),
                                                  convert_only=True)),
    "JSON file 20 MiB by URL": Shape("20 MiB JSON workflow file of empty lists, by URL",
                                     lambda: {"workflow": "{base}/workflow.json"},
                                     serving(shapes.empty_lists_json(20 * MiB)), _URL),
    "JSON file 8 MiB of lists": Shape("8 MiB JSON file of empty lists (the most allowed)",
                                      lambda: {"workflow": "{base}/workflow.json"},
                                      serving(shapes.empty_lists_json(8 * MiB - 64)), _URL),
    "JSON file 8 MiB of numbers": Shape("8 MiB JSON file of numbers: fewest lists, most values",
                                        lambda: {"workflow": "{base}/workflow.json"},
                                        serving(_numbers_json(8 * MiB - 64)), _URL),
    "JSON file nested 100k": Shape("JSON workflow file nested 100,000 deep, base64",
                                   lambda: {"workflow": _b64(shapes.deep_json(100_000))}),
    "PNG 13000x13000": Shape("13000x13000 PNG without a workflow (657 KB), base64",
                             lambda: {"workflow": _b64(shapes.png(13000, 13000))}),
    "PNG zTXt bomb": Shape("PNG whose zTXt workflow inflates to 1 GiB, by URL",
                           lambda: {"workflow": "{base}/bomb.png"},
                           serving(_bomb_png(), "image/png"), _URL),
    "link slot 1e309": Shape("a link slot of 1e309 in a JSON workflow file", _slot_1e309),
    "subgraphs: 5": Shape('"definitions": {"subgraphs": 5}',
                          lambda: _editor({"nodes": [], "links": [],
                                           "definitions": {"subgraphs": 5}})),
}
