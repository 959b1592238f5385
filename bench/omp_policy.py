"""Median txt2img execution on the CPU per OpenMP wait policy, ComfyUI launched by the worker.

    COMFYUI_DIR=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/its/python \\
        [COMFYUI_ARGS="--extra-model-paths-config models.yaml"] \\
        python bench/omp_policy.py [--policies PASSIVE,unset] [--rounds 2] [--jobs 4] \\
                                   [--size 64] [--steps 2]

On a machine without a GPU the worker launches ComfyUI with `--cpu` and, with more than one
job in flight (MAX_CONCURRENCY) and unless the environment sets one, OMP_WAIT_POLICY=PASSIVE
(launch.launch_env): torch's idle OpenMP threads sleep instead of spinning. That helps
jobs in flight share the cores (bench/concurrency.py); this measures what it costs the
heaviest thing ComfyUI does on a CPU, the sampling. Each round launches a fresh ComfyUI per policy, in alternating order ("unset"
removes the variable, so ComfyUI gets libgomp's default), runs one job to load the model,
then --jobs txt2img jobs, and keeps ComfyUI's execution of each (the job's timings_ms).
Printed: each policy's median over every job of every round, and the ratio to the first
policy. Needs a checkpoint (a random-weight SD1.5 is enough: bench/make_random_sd15.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _double import machine  # noqa: E402
from _real_comfyui import free_port, txt2img_jobs  # noqa: E402

from comfy_runtime.comfyui.supervision import launch_comfyui  # noqa: E402
from comfy_runtime.settings import Settings  # noqa: E402
from comfy_runtime.worker import Worker  # noqa: E402


def executions_ms(policy: str, jobs: int, steps: int, size: int) -> list[float]:
    """ComfyUI's execution of each warm job, in ms, with ComfyUI launched under `policy`."""
    if policy == "unset":
        os.environ.pop("OMP_WAIT_POLICY", None)
    else:
        os.environ["OMP_WAIT_POLICY"] = policy
    settings = Settings(comfyui_port=free_port(), warmup_workflow="none")
    worker = Worker(settings, launch_comfyui(settings))
    try:
        worker.wait_ready()
        times = asyncio.run(txt2img_jobs(worker, jobs + 1, steps, size))
    finally:
        worker.close()
    return [execution * 1000 for _, execution, _ in times[1:]]  # the first loads the model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policies", default="PASSIVE,unset",
                        help="OMP_WAIT_POLICY values to compare ('unset': none)")
    parser.add_argument("--rounds", type=int, default=2, help="launches per policy")
    parser.add_argument("--jobs", type=int, default=4, help="timed jobs per launch")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    policies = args.policies.split(",")
    print(f"machine: {machine()}\ntxt2img {args.size}x{args.size}, {args.steps} steps; "
          f"{args.rounds} launches per policy, {args.jobs} timed jobs each")
    figures: dict[str, list[float]] = {policy: [] for policy in policies}
    for index in range(args.rounds):
        for policy in policies if index % 2 == 0 else list(reversed(policies)):
            figures[policy] += executions_ms(policy, args.jobs, args.steps, args.size)
            print(f"  round {index + 1} {policy:8} "
                  f"{' '.join(f'{ms:.0f}' for ms in figures[policy][-args.jobs:])} ms",
                  flush=True)
    first = statistics.median(figures[policies[0]])
    print(f"\n{'policy':8} {'median exec ms':>15} {'ratio':>7}")
    for policy in policies:
        median = statistics.median(figures[policy])
        print(f"{policy:8} {median:15.0f} {median / first:6.2f}x")


if __name__ == "__main__":
    main()
