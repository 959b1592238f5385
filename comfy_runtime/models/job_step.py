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
from typing import Any

from .cache import CachedModel, ModelLease, ModelProgress
from .inputs import ModelRequest, ModelUsed, find_graph_models, rewrite_graph

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


def ensure_models(
    graph: dict[str, Any],
    requests: list[ModelRequest],
    lease: ModelLease,
    *,
    deadline: float,
    cancel: threading.Event,
    progress: ProgressSink | None,
) -> tuple[dict[str, Any], JobModels]:
    """The graph to queue, every model it needs present and leased."""
    found = find_graph_models(graph)
    if not requests and not found.requests:
        return graph, JobModels()
    started = time.perf_counter()
    on_progress = _reporter(progress) if progress is not None else None
    fetched: list[CachedModel] = []
    for wanted, where in ((requests, "models"), (found.requests, "workflow")):
        if wanted:
            fetched += lease.ensure(wanted, deadline=deadline, on_progress=on_progress,
                                    cancel=cancel, field=where)
    if found.requests:
        graph = rewrite_graph(graph, found, [m.name for m in fetched[len(requests):]])
    used = [ModelUsed(folder=m.folder, name=m.name, source=m.source, downloaded=m.downloaded,
                      size_bytes=m.size_bytes, seconds=m.seconds) for m in fetched]
    return graph, JobModels(used, round((time.perf_counter() - started) * 1000, 1))


def _reporter(progress: ProgressSink) -> Callable[[ModelProgress], None]:
    def report(update: ModelProgress) -> None:
        progress({"status": "downloading model", "folder": update.folder,
                  "file": update.name, "bytes": update.bytes, "total": update.total,
                  "percent": update.percent})

    return report
