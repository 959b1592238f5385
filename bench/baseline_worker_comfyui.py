"""Per-job overhead of worker-comfyui 5.8.5: median wall, execution and overhead ms per workload.

The baseline for bench/overhead.py: the same workloads through runpod-workers/worker-comfyui.

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
each job. Every job gets its own seed and filename_prefix (`_overhead_common.vary_job`), for
both.
Overhead per job = its wall time minus ComfyUI's execution of that very job: for
worker-comfyui from its prompt id's /history entry (it never deletes it); for this worker the
`timings_ms.execution` it reports, which it takes from the same entry before its cleanup
deletes it. Never "the latest history entry". This worker's cleanup is drained (untimed)
after each of its jobs, so it does not overlap worker-comfyui's next job.

worker-comfyui is not vendored here: its handler.py is loaded from --worker-dir, in a
separate virtual environment that has its requirements (runpod, requests, websocket-client),
plus pillow for `_overhead_common.workloads()`. The ComfyUI double is started by
`_overhead_common.comfyui()`, in its own process, with --double-python (our venv's interpreter,
which has aiohttp).

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
import contextlib
import copy
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

from _overhead_common import (  # noqa: E402
    comfyui, execution_ms, load_worker, recording_prompt_ids, side_by_side, workloads,
)


def with_fresh_outputs(job_input: dict[str, Any]) -> dict[str, Any]:
    """The same job with a unique filename_prefix on its save nodes, so none is cached."""
    fresh = copy.deepcopy(job_input)
    tag = uuid.uuid4().hex[:8]
    for node in fresh["workflow"].values():
        prefix = node.get("inputs", {}).get("filename_prefix")
        if isinstance(prefix, str):
            node["inputs"]["filename_prefix"] = f"{prefix}-{tag}"
    return fresh


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
    with comfyui(args.comfyui_url, python=args.double_python) as url, \
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
        for name, job_input in workloads().items():
            walls, executions = measure(worker, url, job_input, args.jobs, args.fresh_outputs)
            overheads = [w - e for w, e in zip(walls, executions)]
            print(f"{name:40} {statistics.median(walls):9.1f} "
                  f"{statistics.median(executions):9.1f} {statistics.median(overheads):12.1f}",
                  flush=True)


if __name__ == "__main__":
    main()
