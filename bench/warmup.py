"""Launch-to-ready seconds against ComfyUI alone, and the first job as a multiple of a warm one.

    COMFYUI_DIR=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/its/python \
        [COMFYUI_ARGS="--extra-model-paths-config models.yaml"] \
        python bench/warmup.py [--jobs 4] [--steps 4] [--size 128] [--boots 3] [--launches 3] [--modes auto,none]

Needs a real ComfyUI with at least one checkpoint (a random-weight SD1.5 one is enough on a
CPU: bench/make_random_sd15.py). COMFYUI_ARGS comes from the environment as in production;
on a machine without a GPU the worker adds --cpu itself (launch.device_args).

Boot: --boots times each, alternating, ComfyUI alone (its main.py with the same flags,
polled every 50 ms until /system_stats answers) and the worker's launch (`launch_comfyui` +
`Worker.wait_ready`); medians, and the worker's as a multiple of ComfyUI's.
First job: for each mode (WARMUP_WORKFLOW=auto, then none), --launches times, it launches a
fresh ComfyUI the way `handler.py` does, runs the warmup, then times the first txt2img job
and the warm ones; printed per launch: the first job's time as a multiple of the warm median,
the same for ComfyUI's execution alone (the job's timings_ms), and how long the first job and
the warm ones waited between queueing and their start; then the median over the launches.
One launch is one sample: a single job on a real ComfyUI can take 0.3 s longer for reasons of
its own (its periodic garbage collection), so the verdict is the median.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from comfy_runtime.comfyui.supervision import launch_comfyui, launch_command
from comfy_runtime.settings import Settings
from comfy_runtime.worker import Worker

sys.path.insert(0, str(REPO / "bench"))
from _real_comfyui import free_port, txt2img_jobs  # noqa: E402


def _alone_boot_s(settings: Settings) -> float:
    """Seconds from starting ComfyUI's main.py (the worker's flags) until it answers."""
    command = launch_command(settings)
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=settings.comfyui_dir, stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit(f"ComfyUI exited with {process.returncode}: {command}")
            try:
                with urllib.request.urlopen(f"{settings.comfyui_base_url}/system_stats",
                                            timeout=2):
                    return time.perf_counter() - started
            except OSError:
                time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def _worker_boot_s(settings: Settings) -> float:
    """Seconds from `launch_comfyui` until `Worker.wait_ready` returns."""
    started = time.perf_counter()
    worker = Worker(settings, launch_comfyui(settings))
    try:
        worker.wait_ready()
        return time.perf_counter() - started
    finally:
        worker.close()


def boots(count: int) -> tuple[float, float]:
    alone: list[float] = []
    ours: list[float] = []
    for index in range(count):
        for who in ("alone", "worker") if index % 2 == 0 else ("worker", "alone"):
            settings = Settings(comfyui_port=free_port(), warmup_workflow="none")
            if who == "alone":
                alone.append(_alone_boot_s(settings))
            else:
                ours.append(_worker_boot_s(settings))
    return statistics.median(alone), statistics.median(ours)


def run_mode(warmup: str, jobs: int, steps: int, size: int
             ) -> tuple[list[tuple[float, float, float]], float | None]:
    """Each job's (wall s, execution s, queued s) after a fresh launch and its warmup; the
    warmup's ms."""
    settings = Settings(comfyui_port=free_port(), warmup_workflow=warmup)
    process = launch_comfyui(settings)
    worker = Worker(settings, process)
    try:
        worker.wait_ready()
        asyncio.run(worker.warmup())
        times = asyncio.run(txt2img_jobs(worker, jobs, steps, size))
    finally:
        worker.close()
    return times, worker.warmup_ms


def first_jobs(mode: str, launches: int, jobs: int, steps: int, size: int) -> None:
    """Print each launch's first job against its warm ones, then the median ratio."""
    ratios: list[float] = []
    for _ in range(launches):
        times, warmup_ms = run_mode(mode, jobs, steps, size)
        (first, first_exec, first_queued), warm = times[0], times[1:]
        warm_wall = statistics.median(t[0] for t in warm)
        warm_exec = statistics.median(t[1] for t in warm)
        warm_queued = statistics.median(t[2] for t in warm)
        ratios.append(first / warm_wall)
        warmup_s = f"{warmup_ms / 1000:.1f}" if warmup_ms else "-"
        print(f"{mode:16} {warmup_s:>9} {first:8.2f} {warm_wall:7.2f} {ratios[-1]:10.2f}x "
              f"{first_exec / warm_exec:10.2f}x {first_queued * 1000:9.0f} "
              f"{warm_queued * 1000:8.0f}", flush=True)
    print(f"{mode:16} median first/warm over {launches} launches: "
          f"{statistics.median(ratios):.2f}x\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4, help="jobs per launch (first + warm ones)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--boots", type=int, default=3, help="boots of each, 0 to skip")
    parser.add_argument("--launches", type=int, default=3, help="launches per warmup mode")
    parser.add_argument("--modes", default="auto,none", help="WARMUP_WORKFLOW values to compare")
    args = parser.parse_args()
    if "COMFYUI_DIR" not in os.environ:
        raise SystemExit("set COMFYUI_DIR (and COMFYUI_PYTHON) to a ComfyUI with a checkpoint")
    print(f"machine: {platform.machine()} {os.cpu_count()} cores; txt2img {args.size}x{args.size}, "
          f"{args.steps} steps, {args.jobs} jobs per launch\n")
    if args.boots:
        alone, ours = boots(args.boots)
        print(f"boot, launch to ready (median of {args.boots}): ComfyUI alone {alone:.2f} s, "
              f"worker {ours:.2f} s ({ours / alone:.2f}x, {ours - alone:+.2f} s)\n")
    print(f"{'WARMUP_WORKFLOW':16} {'warmup s':>9} {'first s':>8} {'warm s':>7} {'first/warm':>11} "
          f"{'exec ratio':>11} {'queued ms':>9} {'warm ms':>8}")
    for mode in args.modes.split(","):
        first_jobs(mode, args.launches, args.jobs, args.steps, args.size)


if __name__ == "__main__":
    main()
