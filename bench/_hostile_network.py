"""Prints, run alone, each hostile network and model shape's name, seconds to answer and error code.

What `hostile_cost.py` measures for downloads and the model cache (issue 22): `SHAPES` maps a
name to a callable that sends one hostile job to a real `Worker` (attached to the ComfyUI double
in its own process, default limits, loopback servers playing the hostile hosts) and returns
what the client gets: the job's result or its error dict. Each shape names the defect it
rebuilds. The worker and the double are started once, on first use (`start()` does it ahead of
any timing); `stop()` ends them (also at exit).

A job's own `timeout_s` is part of what a client sends; the shapes that wait on a server send
`timeout_s: 1`, so their time to answer is the deadline the worker keeps, whatever the server
does.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from _double import REPO, double

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from comfy_runtime.settings import Settings  # noqa: E402 (after the path is set)
from comfy_runtime.worker import Worker  # noqa: E402
from handler import respond  # noqa: E402
from tests.slow_server import header_drip_server  # noqa: E402

_state: dict[str, Any] = {}


def start() -> Worker:
    """The worker every shape uses (started with the double on first call)."""
    if "worker" not in _state:
        stack = ExitStack()
        comfy = stack.enter_context(double())
        cache = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hostile-cache-")))
        settings = Settings(comfyui_url=comfy.url, comfyui_input_dir=comfy.input_dir,
                            comfyui_output_dir=comfy.output_dir, comfyui_temp_dir=comfy.temp_dir,
                            allow_private_urls=True, model_cache_dir=cache)
        _state.update(worker=Worker(settings), stack=stack)
        atexit.register(stop)
    worker: Worker = _state["worker"]
    return worker


def stop() -> None:
    if "worker" in _state:
        _state.pop("worker").close()
        _state.pop("stack").close()


def _run(job_input: dict[str, Any]) -> dict[str, Any]:
    worker = start()
    result = respond(asyncio.run(worker.handle({"id": "hostile", "input": job_input})))
    worker.drain_cleanups()
    return result


@contextmanager
def _not_found() -> Iterator[str]:
    """A host that answers 404 to everything; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _txt2img(ckpt: str) -> dict[str, Any]:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {"class_type": "EmptyLatentImage",
              "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": 1, "steps": 1, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
            "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["6", 0],
            "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "h"}},
    }


_INVERT = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "h"}},
}


def slow_headers_input_url() -> dict[str, Any]:
    """Defect 7: an input URL whose server sends a header byte every 0.2 s, forever."""
    with header_drip_server(0.2) as (base, _):
        return _run({"workflow": _INVERT, "timeout_s": 1,
                     "images": [{"name": "in.png", "image": f"{base}/in.png"}]})


def slow_headers_model_url() -> dict[str, Any]:
    """Defect 7: a model URL in a loader input, headers dripping."""
    with header_drip_server(0.2) as (base, _):
        return _run({"workflow": _txt2img(f"{base}/m.safetensors"), "timeout_s": 1})


def slow_headers_workflow_url() -> dict[str, Any]:
    """Defect 7: the workflow itself by URL, headers dripping."""
    with header_drip_server(0.2) as (base, _):
        return _run({"workflow": f"{base}/workflow.json", "timeout_s": 1})


def lying_content_length() -> dict[str, Any]:
    """Defect 12: a model server announcing 30 GiB that closes before a byte."""
    with header_drip_server(content_length=30 * 1024**3) as (base, _):
        return _run({"workflow": _txt2img(f"{base}/liar.safetensors"), "timeout_s": 1})


def models_list_of_300() -> dict[str, Any]:
    """Defect 13: 300 model URLs that all fail."""
    with _not_found() as base:
        models = [{"url": f"{base}/m{i}.safetensors", "folder": "loras"} for i in range(300)]
        return _run({"workflow": _txt2img("x.safetensors"), "models": models})


def models_at_the_limit_failing() -> dict[str, Any]:
    """Defect 13: as many failing model URLs as MAX_MODELS_PER_JOB allows."""
    with _not_found() as base:
        count = start().settings.max_models_per_job
        models = [{"url": f"{base}/m{i}.safetensors", "folder": "loras"} for i in range(count)]
        return _run({"workflow": _txt2img("x.safetensors"), "models": models})


def refused_graph_with_a_model() -> dict[str, Any]:
    """Defect 14: a graph over MAX_GRAPH_NODES that names a model by URL."""
    with _not_found() as base:
        graph = _txt2img(f"{base}/big.safetensors")
        for index in range(start().settings.max_graph_nodes):
            graph[f"p{index}"] = {"class_type": "EmptyImage", "inputs": {
                "width": 8, "height": 8, "batch_size": 1, "color": 0}}
        return _run({"workflow": graph})


def invalid_idna_hosts() -> dict[str, Any]:
    """Defect 11: a host that is not a valid internationalised name, in a model URL."""
    return _run({"workflow": _txt2img("https://xn--zz.example.com/m.safetensors")})


SHAPES: dict[str, Callable[[], dict[str, Any]]] = {
    "slow headers, input URL": slow_headers_input_url,
    "slow headers, model URL": slow_headers_model_url,
    "slow headers, workflow file URL": slow_headers_workflow_url,
    "lying Content-Length (30 GiB, no body)": lying_content_length,
    "300 failing models": models_list_of_300,
    "MAX_MODELS_PER_JOB failing models": models_at_the_limit_failing,
    "refused graph naming a model": refused_graph_with_a_model,
    "invalid IDNA host": invalid_idna_hosts,
}


def main() -> None:
    logging.disable(logging.WARNING)  # each failure is the expected outcome: its code suffices
    start()
    print(f"{'shape':<42} {'seconds':>8}  error_code")
    for name, shape in SHAPES.items():
        began = time.perf_counter()
        result = shape()
        print(f"{name:<42} {time.perf_counter() - began:>8.3f}  "
              f"{result.get('error_code', 'ok')}", flush=True)
    stop()


if __name__ == "__main__":
    main()
