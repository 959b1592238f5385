"""Editor-format workflows to API graphs, exactly as ComfyUI's own frontend converts them.

    to_api(workflow, object_info)        the API graph `app.graphToPrompt()` would queue
    count_nodes(workflow)                nodes it flattens to, counted before anything is built
    NodeDefinitions(object_info)         per-class layouts, computed once and reusable
    to_api_with_definitions(wf, defs)    the same conversion with cached definitions
    read_image_workflow(data)            (api prompt, editor workflow) from a ComfyUI image
    load_json(text, max_bytes)           workflow JSON parsed within bounds (size, lists, depth)

The behaviour reproduced is ComfyUI 0.3.64 with its pinned frontend (comfyui-frontend-package
1.27.10). Anything that could come out different is refused with a `ConversionError`.
This package depends on nothing else in comfy_runtime (pydantic and Pillow at most).
"""

from .convert import to_api, to_api_with_definitions
from .definitions import NodeDefinitions
from .errors import (
                     BrokenLink,
                     ConversionError,
                     Problem,
                     TooLarge,
                     TooManyNodes,
                     UnknownNodeTypes,
                     UnsupportedStructure,
                     WidgetMismatch,
)
from .image_meta import load_json, read_image_workflow
from .load import count_nodes

__all__ = [
    "BrokenLink", "ConversionError", "NodeDefinitions", "Problem", "TooLarge",
    "TooManyNodes", "UnknownNodeTypes", "UnsupportedStructure", "WidgetMismatch",
    "count_nodes", "load_json", "read_image_workflow", "to_api", "to_api_with_definitions",
]
