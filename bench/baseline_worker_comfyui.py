"""Baseline for bench/overhead.py: the same workloads through runpod-workers/worker-comfyui.

    git --git-dir=<mirror of runpod-workers/worker-comfyui> archive 5.8.5 \\
        | tar -x -C /tmp/worker-comfyui-5.8.5
    python3 -m venv /tmp/wc-venv
    /tmp/wc-venv/bin/pip install "runpod~=1.7.12" requests websocket-client pillow
    /tmp/wc-venv/bin/python bench/baseline_worker_comfyui.py \\
        --worker-dir /tmp/worker-comfyui-5.8.5 [--jobs 30] [--fresh-outputs]

Real-ComfyUI mode (issue 14; also `bench/overhead.py --worker-comfyui DIR`):

    python bench/baseline_worker_comfyui.py --worker-dir DIR --comfyui-url http://127.0.0.1:8190 \
        --alternate [--runs 9] [--comfyui-dirs /path/with/input,output,temp] \
        [--checkpoint random-sd15.safetensors]

Both workers run in this process against the same real ComfyUI and take turns job by job
(which of the two goes first alternates), 2 untimed jobs each first, --gap s of idle before
each job. Every job gets its own seed and filename_prefix (`overhead.vary_job`), for both.
Overhead per job = its wall time minus ComfyUI's execution of that very job: for
worker-comfyui from its prompt id's /history entry (it never deletes it); for this worker the
`timings_ms.execution` it reports, which it takes from the same entry before its cleanup
deletes it. Never "the latest history entry". This worker's cleanup is drained (untimed)
after each of its jobs, so it does not overlap worker-comfyui's next job.

worker-comfyui is not vendored here: its handler.py is loaded from --worker-dir, in a
separate virtual environment that has its requirements (runpod, requests, websocket-client),
plus pillow for `overhead.workloads()`. The ComfyUI double is started by overhead.comfyui(),
in its own process, with --double-python (our venv's interpreter, which has aiohttp).

Each workload runs --jobs + 2 times (the first 2 dropped) through its synchronous
`handler(job)` in this process, as its SDK job loop would call it. Wall time is taken around
that call; ComfyUI's execution time comes from the double's /history/{prompt_id}
(execution_start -> execution_success timestamps), read after the timed call. Its handler's
own per-job work is all inside the timed call: the "is ComfyUI up" GET /, the image upload,
the websocket connect, queueing, history, /view downloads and base64 encoding.

What is adapted, and why:
- COMFY_HOST is a module constant ("127.0.0.1:8188") in 5.8.5, not read from the
  environment; it is set on the loaded module to the double's host:port.
- COMFY_PID_FILE (/tmp/comfyui.pid, written by its start.sh) is pointed at a temporary file
  holding a live pid, so its per-job liveness check takes the production path (read the
  file, os.kill(pid, 0)) without touching /tmp/comfyui.pid.
- queue_workflow is wrapped to record the prompt_id (the handler does not return it); the
  wrapper only passes the call through.
- Its print() logging goes to /dev/null during jobs (formatted and written, not rendered).

Caching: worker-comfyui sends the workflow as given, so repeating one identical job lets
ComfyUI (and the double) answer from its cache: nothing executes, execution time is ~0 and
the history points at the first job's files. Our worker gives every job its own
filename_prefix, so its save nodes run each time. --fresh-outputs gives each baseline job a
unique filename_prefix in its input (as distinct real jobs, e.g. other seeds, would be), so
the double executes the save nodes for it too; the default sends the identical input.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
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
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import overhead  # bench/overhead.py: workloads() and comfyui()


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


def with_fresh_outputs(job_input: dict[str, Any]) -> dict[str, Any]:
    """The same job with a unique filename_prefix on its save nodes, so none is cached."""
    fresh = copy.deepcopy(job_input)
    tag = uuid.uuid4().hex[:8]
    for node in fresh["workflow"].values():
        prefix = node.get("inputs", {}).get("filename_prefix")
        if isinstance(prefix, str):
            node["inputs"]["filename_prefix"] = f"{prefix}-{tag}"
    return fresh


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


def measure(worker: ModuleType, base_url: str, job_input: dict[str, Any],
            jobs: int, fresh_outputs: bool = False) -> tuple[list[float], list[float]]:
    """Jobs one after another, each a direct call of its synchronous handler."""
    prompt_ids: list[str] = []
    walls: list[float] = []
    executions: list[float] = []
    with recording_prompt_ids(worker, prompt_ids):
        with open(os.devnull, "w") as devnull:
            for index in range(jobs + 2):
                this_input = with_fresh_outputs(job_input) if fresh_outputs else job_input
                with contextlib.redirect_stdout(devnull):
                    started = time.perf_counter()
                    result = worker.handler({"id": f"baseline-{index}", "input": this_input})
                    wall = (time.perf_counter() - started) * 1000
                if "error" in result or not result.get("images"):
                    raise SystemExit(f"job failed: {json.dumps(result)[:2000]}")
                if index >= 2:  # the first runs warm caches on both sides
                    walls.append(wall)
                    executions.append(execution_ms(base_url, prompt_ids[-1]))
    return walls, executions


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
    seed and filename_prefix (`overhead.vary_job`). (wall ms, execution ms) per job.

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
                this_input = overhead.vary_job(job_input, 1000 + 2 * index + (who == "theirs"))
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
    for name, job_input in overhead.workloads(checkpoint).items():
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker-dir", type=Path, required=True,
                        help="an extracted worker-comfyui release (its handler.py)")
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--fresh-outputs", action="store_true",
                        help="a unique filename_prefix per job, so ComfyUI's cache is not hit")
    parser.add_argument("--comfyui-url", default=None,
                        help="a running ComfyUI; default: start the double")
    parser.add_argument("--alternate", action="store_true",
                        help="with --comfyui-url: this worker and worker-comfyui take turns, job "
                        "by job, on that ComfyUI; prints both overheads and their ratio")
    parser.add_argument("--runs", type=int, default=9, help="timed jobs per worker (--alternate)")
    parser.add_argument("--gap", type=float, default=0.5,
                        help="--alternate: idle seconds before each job (untimed), so ComfyUI's "
                        "after-job garbage collection does not land in the next job")
    parser.add_argument("--checkpoint", default=None,
                        help="adds SD1.5 txt2img 64x64 2 steps with this checkpoint "
                        "(bench/make_random_sd15.py writes one)")
    parser.add_argument("--comfyui-dirs", type=Path, default=None,
                        help="with --alternate: a folder holding ComfyUI's input/, output/ and "
                        "temp/, told to this worker (as when it launched ComfyUI); default: "
                        "files move over HTTP")
    parser.add_argument("--double-python", default=str(REPO / ".venv/bin/python"),
                        help="interpreter for the ComfyUI double (needs aiohttp, pillow)")
    args = parser.parse_args()
    worker_dir: Path = args.worker_dir.resolve()
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    with overhead.comfyui(args.comfyui_url, python=args.double_python) as url, \
            tempfile.TemporaryDirectory(prefix="wc-bench-") as scratch:
        # With a live pid file its check_server polls until ComfyUI answers, without limit.
        urllib.request.urlopen(f"{url}/system_stats", timeout=10).close()
        pid_file = Path(scratch) / "comfyui.pid"
        pid_file.write_text(str(os.getpid()))
        worker = load_worker(worker_dir, url.split("://", 1)[-1].rstrip("/"), pid_file)
        if args.alternate:
            if not args.comfyui_url:
                raise SystemExit("--alternate needs --comfyui-url (a real ComfyUI)")
            side_by_side(worker, url, args.runs, checkpoint=args.checkpoint,
                         comfyui_dirs=args.comfyui_dirs, gap_s=args.gap)
            return
        print(f"worker-comfyui: {worker_dir}; ComfyUI: {url}"
              f"{'' if args.comfyui_url else ' (the double, own process)'}; "
              f"{args.jobs} jobs per workload, medians; "
              f"{'a unique filename_prefix per job' if args.fresh_outputs else 'identical input per job'}\n")
        print(f"{'workload':40} {'wall ms':>9} {'comfy ms':>9} {'overhead ms':>12}")
        for name, job_input in overhead.workloads().items():
            walls, executions = measure(worker, url, job_input, args.jobs, args.fresh_outputs)
            overheads = [w - e for w, e in zip(walls, executions)]
            print(f"{name:40} {statistics.median(walls):9.1f} "
                  f"{statistics.median(executions):9.1f} {statistics.median(overheads):12.1f}",
                  flush=True)


if __name__ == "__main__":
    main()
