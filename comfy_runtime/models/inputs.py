"""Which models a job asks for by URL, and the graph rewritten to the cached files' names.

Two ways to ask, both turned into `ModelRequest`s for `model_cache`:

* the explicit `"models": [{"url", "folder", "name"?, "sha256"?}]` list (`ModelRequest` is that
  list's item model); the graph refers to the file by `name`, which defaults to the URL's file
  name;
* a URL written straight into a core loader's model input (`"lora_name": "https://..."`):
  `LOADER_INPUTS` says which input of which node names a file in which model folder. It is
  data (`data/comfyui_model_inputs.json`, checked against ComfyUI's recorded /object_info by
  the tests), so a new loader is a data change. Such a file gets a name of its own,
  `<stem>-<hash of the URL><ext>`: two URLs with the same file name never share a file, and a
  name cannot shadow a model baked into the image (ComfyUI searches the image's folders first).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from ..errors import InvalidInput
from .paths import FOLDERS, SUPPORTED_PT_EXTENSIONS

_DATA_FILE = Path(__file__).resolve().parent / "data" / "comfyui_model_inputs.json"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ ()+-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_MAX_URL = 4096
_URL_HASH_CHARS = 10  # 40 bits: a collision needs about a million URLs with one file name


def _extensions(kind: str) -> frozenset[str]:
    if kind == "weights":
        return SUPPORTED_PT_EXTENSIONS
    return frozenset({".yaml"}) if kind == "yaml" else frozenset()


FILE_EXTENSIONS: dict[str, frozenset[str]] = {
    name: _extensions(folder.kind) for name, folder in FOLDERS.items() if _extensions(folder.kind)
}
"""The model folders a single downloaded file can live in, and the file name endings ComfyUI
lists there (folders of diffusers directories or extension-less files are left out)."""


def _load_table() -> dict[str, dict[str, str]]:
    raw = json.loads(_DATA_FILE.read_text(encoding="utf-8"))["inputs"]
    for class_type, inputs in raw.items():
        for input_name, folder in inputs.items():
            if folder not in FILE_EXTENSIONS:
                raise ValueError(f"{_DATA_FILE.name}: {class_type}.{input_name}: bad {folder!r}")
    return {class_type: dict(inputs) for class_type, inputs in raw.items()}


LOADER_INPUTS: dict[str, dict[str, str]] = _load_table()
"""class_type -> {input name -> model folder}, for ComfyUI's core loaders."""


class ModelRequest(BaseModel):
    """One model file a job needs: the explicit list's item, and what `model_cache` fetches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(min_length=1, max_length=_MAX_URL, description="http(s) URL of the file.")
    folder: str = Field(description="ComfyUI model folder, e.g. 'loras' or 'checkpoints'.")
    name: str | None = Field(
        None,
        validate_default=True,
        description="File name the graph uses (default: the URL's file name).",
    )
    sha256: str | None = Field(None, description="Expected SHA-256 of the file, 64 hex digits.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL with a host")
        try:
            httpx.URL(url).host  # noqa: B018 (decoding the name is the check)
        except (httpx.InvalidURL, ValueError) as exc:  # idna's errors are ValueErrors
            raise ValueError(f"not a usable URL ({exc})") from None
        return url

    @field_validator("folder")
    @classmethod
    def _known_folder(cls, folder: str) -> str:
        if folder not in FILE_EXTENSIONS:
            raise ValueError(f"unknown model folder; one of: {', '.join(sorted(FILE_EXTENSIONS))}")
        return folder

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str | None, info: ValidationInfo) -> str | None:
        url, folder = info.data.get("url"), info.data.get("folder")
        if url is None or folder is None:
            return name  # already reported on its own field
        if name is None:
            derived = url_file_name(url)
            if derived is None:
                raise ValueError("required: the URL does not end in a file name")
            try:
                return check_file_name(derived, folder)
            except ValueError as exc:
                raise ValueError(f"required: the URL's file name does not do ({exc})") from None
        return check_file_name(name, folder)

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, digest: str | None) -> str | None:
        if digest is not None and not _SHA256.match(digest):
            raise ValueError("expected 64 hexadecimal digits")
        return digest.lower() if digest is not None else None

    @property
    def file_name(self) -> str:
        """The validated name (never None once the model is built)."""
        assert self.name is not None
        return self.name


class ModelUsed(BaseModel):
    """A model file the job named by URL, and whether this job downloaded it."""

    folder: str
    name: str
    source: str  # the URL without query string or credentials
    downloaded: bool
    size_bytes: int
    seconds: float


def check_file_name(name: str, folder: str) -> str:
    """`name` if it is a plain, safe file name ComfyUI lists in `folder`; else ValueError."""
    if not _SAFE_NAME.match(name) or ".." in name:
        raise ValueError(
            "expected a plain file name (letters, digits, '._ ()+-', at most 128 characters, "
            "no folders)"
        )
    suffix = posixpath.splitext(name)[1].lower()
    allowed = FILE_EXTENSIONS[folder]
    if suffix not in allowed:
        raise ValueError(f"ComfyUI lists only {', '.join(sorted(allowed))} files in {folder}")
    return name


def url_file_name(url: str) -> str | None:
    """The last path segment of `url`, percent-decoded; None if there is none."""
    segment = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    return segment or None


def parse_model_list(raw: Any, field: str = "models") -> list[ModelRequest]:
    """Validate the explicit list on its own; InvalidInput names each field (models[0].folder).

    (Inside the job input model, `list[ModelRequest]` gives the same paths through
    contract.parse_job_input.)"""
    if not isinstance(raw, list):
        raise InvalidInput(f"{field}: expected a list", [{"field": field, "problem": "not a list"}])
    problems: list[dict[str, str]] = []
    requests: list[ModelRequest] = []
    for index, item in enumerate(raw):
        try:
            requests.append(ModelRequest.model_validate(item))
        except ValidationError as exc:
            for err in exc.errors():
                where = "".join(f".{part}" for part in err["loc"])
                problem = err["msg"].removeprefix("Value error, ")
                problems.append({"field": f"{field}[{index}]{where}", "problem": problem})
    if problems:
        shown = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:5])
        raise InvalidInput(shown, problems)
    return requests


# --- URLs written into loader inputs ----------------------------------------------------------


@dataclass(frozen=True)
class GraphModelUse:
    """Input `input_name` of node `node_id` names the model of `requests[index]`."""

    node_id: str
    input_name: str
    index: int


@dataclass(frozen=True)
class GraphModels:
    requests: list[ModelRequest]  # one per distinct (URL, folder), in graph order
    uses: list[GraphModelUse]
    fields: list[str]  # where each request was first named: workflow.12.inputs.lora_name


def find_graph_models(graph: dict[str, Any]) -> GraphModels:
    """The model URLs written into core loader inputs of an API graph.

    Raises InvalidInput naming the input (`workflow.12.inputs.lora_name`) when a URL is not
    usable as a model source."""
    requests: list[ModelRequest] = []
    fields: list[str] = []
    seen: dict[tuple[str, str], int] = {}
    uses: list[GraphModelUse] = []
    for node_id, node in graph.items():
        if not isinstance(node, dict):
            continue
        folders = LOADER_INPUTS.get(str(node.get("class_type")), {})
        inputs = node.get("inputs")
        for input_name, folder in folders.items():
            value = inputs.get(input_name) if isinstance(inputs, dict) else None
            if not isinstance(value, str) or not _is_url(value):
                continue
            key = (value, folder)
            if key not in seen:
                field = f"workflow.{node_id}.inputs.{input_name}"
                seen[key] = len(requests)
                requests.append(_graph_request(value, folder, field))
                fields.append(field)
            uses.append(GraphModelUse(str(node_id), input_name, seen[key]))
    return GraphModels(requests, uses, fields)


def rewrite_graph(
    graph: dict[str, Any], found: GraphModels, names: list[str]
) -> dict[str, Any]:
    """A copy of `graph` whose URL inputs name the cached files: `names[i]` is the file name
    ComfyUI knows for `found.requests[i]` (`CachedModel.name` from the cache). Nodes without
    URL inputs are shared with `graph`, not copied."""
    if len(names) != len(found.requests):
        raise ValueError("one cached name per request expected")
    result = dict(graph)
    for use in found.uses:
        node = dict(result[use.node_id])
        node["inputs"] = {**node["inputs"], use.input_name: names[use.index]}
        result[use.node_id] = node
    return result


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and value[:8].lower().startswith(("http://", "https://"))


def _graph_request(url: str, folder: str, field: str) -> ModelRequest:
    base = url_file_name(url) or ""
    stem, suffix = posixpath.splitext(base)
    if suffix.lower() not in FILE_EXTENSIONS[folder]:
        raise InvalidInput(
            f"{field}: the URL does not end in a {folder} file name "
            f"({', '.join(sorted(FILE_EXTENSIONS[folder]))}); give it in the models list "
            "with a name instead",
            [{"field": field, "problem": "no model file name in the URL"}],
        )
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:_URL_HASH_CHARS]
    stem = re.sub(r"[^A-Za-z0-9._()+-]", "_", stem).lstrip("._-")[:80] or "model"
    try:
        return ModelRequest(url=url, folder=folder, name=f"{stem}-{digest}{suffix.lower()}")
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise InvalidInput(f"{field}: {problem}", [{"field": field, "problem": problem}]) from None
