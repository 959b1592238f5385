"""Per-job overhead in ms: a job's wall time minus the time ComfyUI spent executing it.

    python bench/overhead.py [--jobs 30] [--comfyui-url http://127.0.0.1:8188]
    python bench/overhead.py --comfyui-url http://127.0.0.1:8190 \
        --worker-comfyui /tmp/worker-comfyui-5.8.5 [--comfyui-dirs DIR] [--runs 9] \
        [--checkpoint random-sd15.safetensors]

With --worker-comfyui (the real-ComfyUI mode, issue 14): this worker and worker-comfyui 5.8.5
(loaded from that folder, see bench/baseline_worker_comfyui.py) take turns job by job on the
ComfyUI at --comfyui-url; printed per workload: each one's median wall, execution and overhead
(each job's own execution: ours from its timings_ms, theirs from its prompt id's history
entry) and the ratio of the overheads. --checkpoint adds SD1.5 txt2img 64x64, 2 steps.

Runs each workload N times through `handler.handler` in-process, as the SDK would, against
the ComfyUI at --comfyui-url / COMFYUI_URL, or else against the ComfyUI double started as a
separate process (so its CPU time is not ours). Prints, per workload, the median wall time,
the median ComfyUI execution time (from the history's timestamps) and their difference.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _overhead_common import comfyui, run_real, workloads  # noqa: E402


async def measure(job_input: dict[str, Any], jobs: int) -> tuple[list[float], list[float]]:
    """Jobs one after another on one event loop, as the SDK's job loop runs them."""
    import handler

    walls: list[float] = []
    executions: list[float] = []
    for index in range(jobs + 2):
        started = time.perf_counter()
        result = await handler.handler({"id": f"bench-{index}", "input": job_input})
        wall = (time.perf_counter() - started) * 1000
        if "error" in result:
            raise SystemExit(f"job failed: {result['error']}")
        if index >= 2:  # the first runs warm caches on both sides
            walls.append(wall)
            executions.append(float(result["timings_ms"]["execution"]))
    return walls, executions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--comfyui-url", default=os.environ.get("COMFYUI_URL"))
    parser.add_argument(
        "--http-files", action="store_true",
        help="move files through ComfyUI's HTTP API, as when attached to a remote ComfyUI "
        "(default with the double: its folders are known, as when the worker launched it)",
    )
    parser.add_argument("--worker-comfyui", type=Path, default=None,
                        help="real mode: an extracted worker-comfyui release to alternate with")
    parser.add_argument("--comfyui-dirs", type=Path, default=None,
                        help="real mode: a folder with ComfyUI's input/, output/ and temp/")
    parser.add_argument("--runs", type=int, default=9, help="real mode: jobs per worker")
    parser.add_argument("--checkpoint", default=None, help="real mode: adds SD1.5 txt2img")
    parser.add_argument("--gap", type=float, default=0.5, help="real mode: idle s before a job")
    args = parser.parse_args()
    if args.worker_comfyui:
        if not args.comfyui_url:
            raise SystemExit("--worker-comfyui needs --comfyui-url (a real ComfyUI)")
        run_real(args.worker_comfyui, args.comfyui_url, args.runs,
                 checkpoint=args.checkpoint, comfyui_dirs=args.comfyui_dirs, gap_s=args.gap)
        return
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    with comfyui(args.comfyui_url, tell_worker=not args.http_files) as url:
        os.environ["COMFYUI_URL"] = url
        files = "HTTP" if args.http_files or args.comfyui_url else "ComfyUI's folders"
        print(f"ComfyUI: {url}{'' if args.comfyui_url else ' (the double, own process)'}; "
              f"files via {files}; {args.jobs} jobs per workload, medians\n")
        print(f"{'workload':40} {'wall ms':>9} {'comfy ms':>9} {'overhead ms':>12}")
        for name, job_input in workloads().items():
            walls, executions = asyncio.run(measure(job_input, args.jobs))
            overheads = [w - e for w, e in zip(walls, executions)]
            print(f"{name:40} {statistics.median(walls):9.1f} {statistics.median(executions):9.1f} "
                  f"{statistics.median(overheads):12.1f}")


if __name__ == "__main__":
    main()
