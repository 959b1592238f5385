"""No figure of its own: what bench/overhead.py and bench/baseline_worker_comfyui.py share.

The workloads both measure (`workloads`, each job varied by `vary_job`), the ComfyUI they run
against (`comfyui`: the one given, or the ComfyUI double in its own process), worker-comfyui's
handler loaded in this process (`load_worker`), and the real-ComfyUI mode in which this worker
and worker-comfyui take turns job by job on one ComfyUI (`run_real`, `side_by_side`). Neither
script imports the other; both import this module.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from _double import double, noise_png  # puts the repository on sys.path (handler)


def sd15_txt2img(checkpoint: str, size: int = 64, steps: int = 2) -> dict[str, Any]:
    """txt2img as an API graph: `checkpoint` (e.g. bench/make_random_sd15.py's), size x size,
    `steps` euler steps; `vary_job` gives each job its own seed so the sampler runs."""
    return {"workflow": {
        "3": {"class_type": "KSampler", "inputs": {"seed": 0, "steps": steps, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse at dusk", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "bench", "images": ["8", 0]}}}}


def vary_job(job_input: dict[str, Any], index: int) -> dict[str, Any]:
    """The job with its own filename_prefix and seed, as distinct real jobs are, so ComfyUI's
    cache does not skip its nodes (both workers get the same treatment)."""
    nodes = {}
    for node_id, node in job_input["workflow"].items():
        inputs = dict(node.get("inputs", {}))
        if isinstance(inputs.get("filename_prefix"), str):
            inputs["filename_prefix"] = f"{inputs['filename_prefix']}-{uuid.uuid4().hex[:8]}"
        if isinstance(inputs.get("seed"), int):
            inputs["seed"] = index
        nodes[node_id] = {**node, "inputs": inputs}
    return {**job_input, "workflow": nodes}


def workloads(checkpoint: str | None = None) -> dict[str, dict[str, Any]]:
    """The measured jobs; with a `checkpoint` in ComfyUI's checkpoints, SD1.5 txt2img too."""
    photo = base64.b64encode(noise_png(1024)).decode()
    extra = {"sd1.5 txt2img 64x64 2 steps": sd15_txt2img(checkpoint)} if checkpoint else {}
    return {
        "empty 512 -> save": {"workflow": {
            "1": {"class_type": "EmptyImage", "inputs": {"width": 512, "height": 512, "batch_size": 1, "color": 0x808080}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bench"}}}},
        "empty 4x1024 -> save": {"workflow": {
            "1": {"class_type": "EmptyImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 4, "color": 0x808080}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bench"}}}},
        f"{len(photo) * 3 // 4 / 1e6:.1f} MB png input -> invert -> save": {
            "images": [{"name": "photo.png", "image": photo}],
            "workflow": {
                "1": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
                "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
                "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "bench"}}}},
        **extra,
    }


@contextmanager
def comfyui(
    url: str | None, python: str = sys.executable, *, tell_worker: bool = False
) -> Iterator[str]:
    """The ComfyUI to measure against: the given one, or the double in its own process (run
    by `python`; with `tell_worker`, the worker is given its folders, as when it launched it)."""
    if url:
        yield url
        return
    with double(tell_worker=tell_worker, python=python) as running:
        try:
            yield running.url
        finally:
            if "handler" in sys.modules and sys.modules["handler"]._worker is not None:
                sys.modules["handler"]._worker.close()  # its cleanups finish before ComfyUI goes
                sys.modules["handler"]._worker = None


def load_worker(worker_dir: Path, host: str, pid_file: Path) -> ModuleType:
    """worker-comfyui's handler.py as module `wc_handler` (not `handler`: ours is on sys.path)."""
    sys.path.insert(0, str(worker_dir / "src"))  # network_volume.py; the image copies it to /
    spec = importlib.util.spec_from_file_location("wc_handler", worker_dir / "handler.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"no handler.py in {worker_dir}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["wc_handler"] = module
    spec.loader.exec_module(module)
    module.COMFY_HOST = host
    module.COMFY_PID_FILE = str(pid_file)
    return module


def execution_ms(base_url: str, prompt_id: str) -> float:
    with urllib.request.urlopen(f"{base_url}/history/{prompt_id}", timeout=10) as response:
        entry = json.load(response)[prompt_id]
    messages = {name: data for name, data in entry["status"]["messages"]}
    return float(messages["execution_success"]["timestamp"]
                 - messages["execution_start"]["timestamp"])


@contextlib.contextmanager
def recording_prompt_ids(worker: ModuleType, prompt_ids: list[str]) -> Iterator[None]:
    """While inside, every prompt worker-comfyui queues has its id appended to `prompt_ids`:
    each job's own history entry is then read, never "the latest" one."""
    queue_workflow = worker.queue_workflow

    def recording_queue_workflow(*args: Any, **kwargs: Any) -> dict[str, Any]:
        queued = queue_workflow(*args, **kwargs)
        prompt_ids.append(queued["prompt_id"])
        return queued

    worker.queue_workflow = recording_queue_workflow
    try:
        yield
    finally:
        worker.queue_workflow = queue_workflow


def _theirs_once(worker: ModuleType, base_url: str, job_input: dict[str, Any],
                 tag: str) -> tuple[float, float]:
    """One worker-comfyui job: its wall time and ComfyUI's execution time from its own prompt
    id's history entry (worker-comfyui never deletes history, so it is still there)."""
    prompt_ids: list[str] = []
    with recording_prompt_ids(worker, prompt_ids), open(os.devnull, "w") as devnull, \
            contextlib.redirect_stdout(devnull):
        started = time.perf_counter()
        result = worker.handler({"id": tag, "input": job_input})
        wall = (time.perf_counter() - started) * 1000
    if "error" in result or not result.get("images"):
        raise SystemExit(f"worker-comfyui job failed: {json.dumps(result)[:2000]}")
    return wall, execution_ms(base_url, prompt_ids[-1])


def _ours_once(runner: asyncio.Runner, job_input: dict[str, Any], tag: str) -> tuple[float, float]:
    """One job through this worker's handler: its wall time and the `timings_ms.execution` it
    reports (its own prompt's history entry, read before its cleanup deletes it)."""
    import handler

    started = time.perf_counter()
    result = runner.run(handler.handler({"id": tag, "input": job_input}))
    wall = (time.perf_counter() - started) * 1000
    if "error" in result:
        raise SystemExit(f"job failed: {json.dumps(result)[:2000]}")
    handler._get_worker().drain_cleanups()  # untimed: its cleanup does not overlap theirs
    return wall, float(result["timings_ms"]["execution"])


def alternate(worker: ModuleType, base_url: str, job_input: dict[str, Any], runs: int,
              warm: int = 2, gap_s: float = 0.5) -> dict[str, list[tuple[float, float]]]:
    """`runs` timed jobs per worker (after `warm` untimed ones each) on the same ComfyUI, the
    two workers taking turns job by job (which goes first alternates); every job gets its own
    seed and filename_prefix (`vary_job`). (wall ms, execution ms) per job.

    `gap_s` of idle before each job, so each starts on an idle ComfyUI: after a job ComfyUI's
    prompt loop may run gc.collect() and empty caches (at most every 10 s) before it takes the
    next prompt. Outliers of 0.3-0.4 s outside the recorded execution remain for both workers
    even so (cause not pinned down); the per-job lists show them, the medians leave them out."""
    figures: dict[str, list[tuple[float, float]]] = {"ours": [], "theirs": []}
    with asyncio.Runner() as runner:
        for index in range(warm + runs):
            order = ("ours", "theirs") if index % 2 == 0 else ("theirs", "ours")
            for who in order:
                time.sleep(gap_s)
                this_input = vary_job(job_input, 1000 + 2 * index + (who == "theirs"))
                tag = f"{who}-{index}-{uuid.uuid4().hex[:6]}"
                pair = (_ours_once(runner, this_input, tag) if who == "ours"
                        else _theirs_once(worker, base_url, this_input, tag))
                if index >= warm:
                    figures[who].append(pair)
    return figures


def real_comfyui(worker: ModuleType, url: str, runs: int, checkpoint: str | None,
                 gap_s: float = 0.5) -> None:
    """The side-by-side table: per workload, each worker's median wall, execution and
    overhead (wall - execution, per job), and ours / theirs of the overhead medians."""
    print(f"{'workload':34} {'ours wall':>9} {'exec':>7} {'overhead':>9} | "
          f"{'wc wall':>9} {'exec':>7} {'overhead':>9} | {'ratio':>5}")
    for name, job_input in workloads(checkpoint).items():
        figures = alternate(worker, url, job_input, runs, gap_s=gap_s)
        medians = {}
        for who, pairs in figures.items():
            medians[who] = (statistics.median(w for w, _ in pairs),
                            statistics.median(e for _, e in pairs),
                            statistics.median(w - e for w, e in pairs))
        ours, theirs = medians["ours"], medians["theirs"]
        print(f"{name:34} {ours[0]:9.1f} {ours[1]:7.1f} {ours[2]:9.1f} | "
              f"{theirs[0]:9.1f} {theirs[1]:7.1f} {theirs[2]:9.1f} | {ours[2] / theirs[2]:5.2f}",
              flush=True)
        for who, pairs in figures.items():
            print(f"{'':4}{who} overheads ms: {' '.join(f'{w - e:.0f}' for w, e in pairs)}")


def side_by_side(worker: ModuleType, url: str, runs: int, *, checkpoint: str | None,
                 comfyui_dirs: Path | None, gap_s: float) -> None:
    """The real-ComfyUI mode (also `bench/overhead.py --worker-comfyui`): this worker attached
    to `url` (with ComfyUI's folders when `comfyui_dirs` holds them), then the table."""
    os.environ["COMFYUI_URL"] = url
    if comfyui_dirs:
        for folder in ("input", "output", "temp"):
            os.environ[f"COMFYUI_{folder.upper()}_DIR"] = str(comfyui_dirs / folder)
    print(f"ComfyUI: {url}; this worker's files via "
          f"{'ComfyUI folders' if comfyui_dirs else 'HTTP'}; {runs} jobs per worker per "
          f"workload, alternating, {gap_s:g} s idle before each; medians; overhead = wall - "
          f"ComfyUI's execution of that job\n")
    real_comfyui(worker, url, runs, checkpoint, gap_s)


def run_real(worker_dir: Path, url: str, runs: int, *, checkpoint: str | None,
             comfyui_dirs: Path | None, gap_s: float) -> None:
    """Load worker-comfyui from `worker_dir` against `url`, then `side_by_side`."""
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; worker-comfyui: {worker_dir.resolve()}")
    with tempfile.TemporaryDirectory(prefix="wc-bench-") as scratch:
        urllib.request.urlopen(f"{url}/system_stats", timeout=10).close()
        pid_file = Path(scratch) / "comfyui.pid"
        pid_file.write_text(str(os.getpid()))
        worker = load_worker(worker_dir.resolve(), url.split("://", 1)[-1].rstrip("/"), pid_file)
        side_by_side(worker, url, runs, checkpoint=checkpoint, comfyui_dirs=comfyui_dirs,
                     gap_s=gap_s)
