"""A job's models on demand: the explicit `models` list and the URLs written into core loader
inputs, made present in the model cache before the graph is queued.

The graph's URL inputs are rewritten to the cached files' names (ComfyUI's loaders take file
names); files of the explicit list keep the `name` the graph already uses. While a file
downloads, progress reports say which file and how far, so a client sees why the first job
with a new model is slow; the result lists each file and whether this job downloaded it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidInput, JobError, MissingModel
from .cache import ModelLease, ModelProgress
from .inputs import ModelRequest, ModelUsed, find_graph_models, rewrite_graph
from .paths import render_cache_section

ProgressSink = Callable[[dict[str, Any]], None]


@dataclass
class JobModels:
    """What the job's model step did: each file, and the milliseconds it took."""

    used: list[ModelUsed] = field(default_factory=list)
    ms: float = 0.0


def url_inputs_as_names(graph: dict[str, Any]) -> dict[str, Any]:
    """`graph` with each model URL replaced by the name it would be cached under: what the
    path checks judge when nothing is downloaded (`convert_only`)."""
    found = find_graph_models(graph)
    if not found.requests:
        return graph
    return rewrite_graph(graph, found, [request.file_name for request in found.requests])


def count_models(graph: dict[str, Any], requests: list[ModelRequest], limit: int) -> None:
    """Refuse more than `limit` model files by URL (MAX_MODELS_PER_JOB) before any is fetched:
    the models list and the distinct URLs in loader inputs together."""
    count = len(requests) + len(find_graph_models(graph).requests)
    if count > limit:
        raise InvalidInput(
            f"models: the job names {count} model files by URL, more than the {limit} allowed "
            "(MAX_MODELS_PER_JOB)",
            [{"field": "models", "problem": "too many models", "count": count, "limit": limit}],
        )


def ensure_models(
    graph: dict[str, Any],
    requests: list[ModelRequest],
    lease: ModelLease,
    *,
    deadline: float,
    cancel: threading.Event,
    progress: ProgressSink | None,
) -> tuple[dict[str, Any], JobModels]:
    """The graph to queue, every model it needs present and leased. One fetch for the list
    and the graph's URLs together, so the first failure stops all the others."""
    found = find_graph_models(graph)
    if not requests and not found.requests:
        return graph, JobModels()
    started = time.perf_counter()
    on_progress = _reporter(progress) if progress is not None else None
    fields = [f"models[{i}]" for i in range(len(requests))] + found.fields
    fetched = lease.ensure([*requests, *found.requests], deadline=deadline,
                           on_progress=on_progress, cancel=cancel, fields=fields)
    if found.requests:
        graph = rewrite_graph(graph, found, [m.name for m in fetched[len(requests):]])
    used = [ModelUsed(folder=m.folder, name=m.name, source=m.source, downloaded=m.downloaded,
                      size_bytes=m.size_bytes, seconds=m.seconds) for m in fetched]
    return graph, JobModels(used, round((time.perf_counter() - started) * 1000, 1))


def explain_missing(error: MissingModel, used: list[ModelUsed], cache_root: Path) -> JobError:
    """`error` (ComfyUI says a model is not available), told plainly when that model is one
    this job put in the cache: the attached ComfyUI does not look in MODEL_CACHE_DIR."""
    cached = {m.name for m in used}
    names = [d.get("received_value") for d in error.details]
    missing = [name for name in names if isinstance(name, str) and name in cached]
    if not missing:
        return error
    section = render_cache_section(cache_root)
    return MissingModel(
        f"{missing[0]} was downloaded into the model cache ({cache_root}), but this ComfyUI "
        "does not look there: it was started without MODEL_CACHE_DIR's folders in its "
        "--extra-model-paths-config; add the section in details[0].extra_model_paths to that "
        "file (or let the worker launch ComfyUI, which adds it)",
        [{"problem": "model cache not in ComfyUI's model paths", "files": missing,
          "model_cache_dir": str(cache_root), "extra_model_paths": section},
         *error.details],
    )


def _reporter(progress: ProgressSink) -> Callable[[ModelProgress], None]:
    def report(update: ModelProgress) -> None:
        progress({"status": "downloading model", "folder": update.folder,
                  "file": update.name, "bytes": update.bytes, "total": update.total,
                  "percent": update.percent})

    return report
