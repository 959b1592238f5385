"""Bundled workflows: a graph by name, with typed parameters.

A bundled workflow is two files in `workflows/` (or `WORKFLOWS_DIR`):
- `<name>.json`: the API-format graph, as ComfyUI exports it (Workflow > Export (API)), or the
  workflow as ComfyUI's editor saves it (converted per job, as ComfyUI's frontend would; the
  editor's node ids are the API graph's, so targets name them the same way);
- `<name>.params.json` (optional): its parameters, each with a JSON type, a description,
  a default and bounds, and the graph inputs it sets:

      {"description": "Text to image with an SD1.5/SDXL checkpoint",
       "params": {"steps": {"type": "integer", "default": 20, "minimum": 1, "maximum": 150,
                            "description": "Sampling steps", "targets": ["3.steps"]}}}

  `type` is one of string, integer, number, boolean, or `model` (a file name in the model
  folder named by `folder`, checked against what ComfyUI has) or `input` (the `name` of one
  of the job's `images`). `"randomize": true` on an integer makes -1 mean "pick one".

A pydantic model is built from each parameter file, so errors name the parameter and its
JSON Schema can be published. Adding a workflow needs no code change.
"""

from __future__ import annotations

import copy
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from .contract import GraphNode
from .errors import InvalidInput, MissingModel, WorkflowInvalid

log = logging.getLogger(__name__)

# folder name -> model files ComfyUI has there (ComfyUI's GET /models/{folder}).
ModelLookup = Callable[[str], list[str]]
# editor-format workflow -> the API graph ComfyUI's frontend would queue for it.
EditorConverter = Callable[[dict[str, Any]], dict[str, Any]]

_PY_TYPES: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool,
                               "model": str, "input": str}


class ParamSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["string", "integer", "number", "boolean", "model", "input"]
    description: str = ""
    default: Any = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    enum: list[Any] | None = None
    folder: str | None = None  # for type "model": ComfyUI's model folder, e.g. "checkpoints"
    randomize: bool = False
    targets: list[str] = Field(min_length=1)

    def target_pairs(self) -> list[tuple[str, str]]:
        pairs = []
        for target in self.targets:
            node_id, _, input_name = target.rpartition(".")
            pairs.append((node_id, input_name))
        return pairs


class WorkflowSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    params: dict[str, ParamSpec] = Field(default_factory=dict)


@dataclass
class BundledWorkflow:
    name: str
    graph: dict[str, Any]
    spec: WorkflowSpec
    model: type[BaseModel] = field(init=False)

    @property
    def is_editor_format(self) -> bool:
        return isinstance(self.graph.get("nodes"), list)

    def _node_ids(self) -> set[str]:
        if self.is_editor_format:
            return {str(node.get("id")) for node in self.graph["nodes"] if isinstance(node, dict)}
        return set(self.graph)

    def __post_init__(self) -> None:
        node_ids = self._node_ids()
        for param_name, param in self.spec.params.items():
            for node_id, input_name in param.target_pairs():
                if node_id not in node_ids:
                    raise ValueError(
                        f"workflow {self.name!r}: parameter {param_name!r} targets node "
                        f"{node_id!r}, which is not in the graph"
                    )
        self.model = _params_model(self.name, self.spec)

    def json_schema(self) -> dict[str, Any]:
        schema = self.model.model_json_schema()
        schema["description"] = self.spec.description
        return schema

    def build(
        self,
        params: dict[str, Any] | None,
        *,
        input_names: list[str] | None = None,
        models: ModelLookup | None = None,
        convert: EditorConverter | None = None,
    ) -> dict[str, Any]:
        """The graph with `params` applied; raises `InvalidInput` naming bad parameters and
        `MissingModel` for a model ComfyUI does not have, before anything is queued."""
        try:
            values = self.model.model_validate(params or {}).model_dump()
        except ValidationError as exc:
            problems = [
                (".".join(["params", *map(str, err["loc"])]),
                 "unknown parameter" if err["type"] == "extra_forbidden" else err["msg"])
                for err in exc.errors()
            ]
            known = ", ".join(self.spec.params) or "none"
            raise InvalidInput(
                "; ".join(f"{f}: {m}" for f, m in problems) + f" (workflow {self.name!r} "
                f"takes: {known})",
                [{"field": f, "problem": m} for f, m in problems],
            ) from None
        graph = self._api_graph(convert)
        for name, value in values.items():
            spec = self.spec.params[name]
            if spec.type == "model" and models is not None:
                value = _check_model(name, spec, value, models)
            if spec.type == "input" and value is not None:
                _check_input(name, value, input_names or [])
            if value is None:
                continue
            if spec.randomize and value == -1:
                value = random.randint(0, 2**32 - 1)
            for node_id, input_name in spec.target_pairs():
                if node_id not in graph:  # an editor node the conversion left out
                    raise WorkflowInvalid(
                        f"workflow {self.name!r}: parameter {name!r} targets node {node_id}, "
                        "which its converted graph does not have (muted, bypassed or virtual)",
                        [{"field": f"params.{name}", "node_id": node_id}],
                    )
                graph[node_id].setdefault("inputs", {})[input_name] = value
        return graph


    def _api_graph(self, convert: EditorConverter | None) -> dict[str, Any]:
        if not self.is_editor_format:
            return copy.deepcopy(self.graph)
        if convert is None:
            raise ValueError(f"workflow {self.name!r} is in editor format: it needs a converter")
        return convert(copy.deepcopy(self.graph))


def _check_model(name: str, spec: ParamSpec, value: str | None, models: ModelLookup) -> str | None:
    folder = spec.folder or "checkpoints"
    available = models(folder)
    if value is None:
        # No choice made and no default: the first model ComfyUI has is the warm one.
        if not available:
            raise MissingModel(
                f"params.{name}: ComfyUI has no models in {folder!r}; add one (image build "
                "arg MODEL_SET, or a network volume's models/" + folder + ")",
                [{"field": f"params.{name}", "folder": folder, "available": []}],
            )
        return available[0]
    if value not in available:
        shown = ", ".join(available[:20]) or "none"
        raise MissingModel(
            f"params.{name}: {value!r} is not in ComfyUI's {folder!r} folder; available: {shown}",
            [{"field": f"params.{name}", "folder": folder, "received_value": value,
              "available": available}],
        )
    return value


def _check_input(name: str, value: str, input_names: list[str]) -> None:
    if value not in input_names:
        raise InvalidInput(
            f"params.{name}: {value!r} is not the name of any of the job's images "
            f"({', '.join(input_names) or 'none sent'})",
            [{"field": f"params.{name}", "problem": "no such input", "inputs": input_names}],
        )


def _params_model(name: str, spec: WorkflowSpec) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for param_name, param in spec.params.items():
        py_type: Any = _PY_TYPES[param.type]
        constraints: dict[str, Any] = {"description": param.description}
        if param.minimum is not None:
            constraints["ge"] = param.minimum
        if param.maximum is not None:
            constraints["le"] = param.maximum
        if param.enum:
            py_type = Literal[tuple(param.enum)]  # type: ignore[valid-type]
        if param.type == "model" and param.folder:
            constraints["json_schema_extra"] = {"model_folder": param.folder}
        if param.required:
            fields[param_name] = (py_type, Field(..., **constraints))
        elif param.default is None:
            fields[param_name] = (py_type | None, Field(None, **constraints))
        else:
            fields[param_name] = (py_type, Field(param.default, **constraints))
    return create_model(  # type: ignore[call-overload]
        f"{name.title().replace('_', '')}Params",
        __config__=ConfigDict(extra="forbid", strict=False),
        **fields,
    )


class WorkflowRegistry:
    """The bundled workflows found in a directory, loaded once."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._workflows: dict[str, BundledWorkflow] | None = None

    @property
    def workflows(self) -> dict[str, BundledWorkflow]:
        if self._workflows is None:
            self._workflows = _load_all(self.directory)
        return self._workflows

    def names(self) -> list[str]:
        return sorted(self.workflows)

    def get(self, name: str) -> BundledWorkflow:
        workflow = self.workflows.get(name)
        if workflow is None:
            raise InvalidInput(
                f"workflow: no bundled workflow named {name!r}; known: "
                f"{', '.join(self.names()) or 'none'}",
                [{"field": "workflow", "problem": "unknown workflow", "known": self.names()}],
            )
        return workflow

    def resolve(
        self,
        workflow: dict[str, GraphNode] | str | None,
        params: dict[str, Any] | None,
        *,
        input_names: list[str] | None = None,
        models: ModelLookup | None = None,
        convert: EditorConverter | None = None,
    ) -> dict[str, Any]:
        """The API graph a job will run."""
        if workflow is None:
            raise InvalidInput(
                "workflow: missing; send an API-format or editor workflow, a file ComfyUI "
                "wrote, or the name of a bundled workflow",
                [{"field": "workflow", "problem": "missing"}],
            )
        if isinstance(workflow, str):
            return self.get(workflow).build(
                params, input_names=input_names, models=models, convert=convert
            )
        if params:
            raise InvalidInput(
                "params: only used with a bundled workflow name; edit the graph's inputs instead",
                [{"field": "params", "problem": "params with a graph"}],
            )
        return {node_id: node.model_dump(mode="json") for node_id, node in workflow.items()}


def _load_all(directory: Path) -> dict[str, BundledWorkflow]:
    found: dict[str, BundledWorkflow] = {}
    if not directory.is_dir():
        log.warning("workflows directory %s does not exist", directory)
        return found
    for graph_path in sorted(directory.glob("*.json")):
        if graph_path.name.endswith(".params.json"):
            continue
        name = graph_path.stem
        params_path = graph_path.with_name(f"{name}.params.json")
        try:
            graph = json.loads(graph_path.read_text())
            spec = (
                WorkflowSpec.model_validate_json(params_path.read_text())
                if params_path.exists()
                else WorkflowSpec()
            )
            found[name] = BundledWorkflow(name=name, graph=graph, spec=spec)
        except (OSError, ValueError) as exc:
            # One broken file must not take the others down; it is named in the log.
            log.error("skipping bundled workflow %s: %s", graph_path, exc)
    return found
