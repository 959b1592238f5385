"""Median txt2img sampling time (the KSampler node) and execution with PREVIEW_METHOD=auto
against none, and their ratio, on two real ComfyUIs the worker launches (CPU).

    COMFYUI_DIR=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/its/python \\
        [COMFYUI_ARGS="--extra-model-paths-config models.yaml"] \\
        python bench/preview_cost.py [--ports 8188,8189] [--jobs 6] [--size 64] [--steps 8] \\
                                     [--max-size 256] [--dirs /tmp/bench-comfy]

A job that asks for `previews` costs ComfyUI a preview per sampler step (drawn with its
--preview-method, encoded as JPEG at --preview-size, sent over the websocket) and costs the
worker a decode, shrink and JPEG encode per preview it sends. Both ComfyUIs are launched by
the worker at once, one with PREVIEW_METHOD=auto and one with none (PREVIEW_MAX_SIZE the
same), each loads the model with one job, then the timed jobs go to one and the other in
turn, never two at a time: a busy machine slows both alike. Every job asks for previews
({"max_size": --max-size, "interval_s": 0.25}); with none, ComfyUI draws none and the worker
sends none. Printed: each job's KSampler time, then per method the median KSampler time
(`timings_ms.nodes`), the median execution (`timings_ms.execution`), the previews received,
and the ratio auto / none. Needs a checkpoint (a random-weight SD1.5 is enough:
bench/make_random_sd15.py).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _double import machine  # noqa: E402

from comfy_runtime.comfyui.supervision import launch_comfyui  # noqa: E402
from comfy_runtime.settings import Settings  # noqa: E402
from comfy_runtime.worker import Worker  # noqa: E402
from handler import respond  # noqa: E402

METHODS = ("auto", "none")
KSAMPLER = "3"  # the bundled txt2img's sampler node


def launch(method: str, port: int, dirs: Path, max_size: int) -> Worker:
    """A worker that launched its own ComfyUI with `method`, its folders under `dirs`."""
    own = {kind: dirs / method / kind for kind in ("input", "output", "temp", "user")}
    for folder in own.values():
        folder.mkdir(parents=True, exist_ok=True)
    folder_flags = " ".join(f"--{kind}-directory {path}" for kind, path in own.items())
    base = Settings()
    settings = Settings(comfyui_port=port, warmup_workflow="none", preview_method=method,
                        preview_max_size=max_size,
                        comfyui_args=f"{base.comfyui_args} {folder_flags}".strip(),
                        comfyui_input_dir=own["input"], comfyui_output_dir=own["output"],
                        comfyui_temp_dir=own["temp"])  # its own folders, user/ included
    worker = Worker(settings, launch_comfyui(settings))
    worker.wait_ready()
    return worker


def one_job(worker: Worker, index: int, args: argparse.Namespace) -> tuple[float, float, int]:
    """(KSampler ms, execution ms, previews received) of one txt2img job with previews."""
    reports: list[dict[str, Any]] = []
    params = {"prompt": f"a lighthouse at dusk, painting number {index}", "steps": args.steps,
              "width": args.size, "height": args.size, "seed": index}
    job = {"workflow": "txt2img", "params": params,
           "previews": {"max_size": args.max_size, "interval_s": 0.25}}
    result = respond(asyncio.run(worker.handle({"id": f"bench-{index}", "input": job},
                                               progress=reports.append)))
    if "error" in result:
        raise SystemExit(f"job failed: {result['error']}")
    worker.drain_cleanups()
    timings = result["timings_ms"]
    previews = sum(1 for report in reports if "preview" in report)
    return timings["nodes"][KSAMPLER], timings["execution"], previews


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ports", default="8188,8189", help="ComfyUI ports for auto, none")
    parser.add_argument("--jobs", type=int, default=6, help="timed jobs per method")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--max-size", type=int, default=256,
                        help="PREVIEW_MAX_SIZE and each job's previews.max_size")
    parser.add_argument("--dirs", type=Path, default=Path("/tmp/comfy-worker-preview-cost"))
    args = parser.parse_args()
    ports = [int(p) for p in args.ports.split(",")]
    print(f"machine: {machine()}\ntxt2img {args.size}x{args.size}, {args.steps} steps, "
          f"previews at most {args.max_size} px; {args.jobs} timed jobs per method, in turn")
    workers = {method: launch(method, port, args.dirs, args.max_size)
               for method, port in zip(METHODS, ports)}
    figures: dict[str, list[tuple[float, float, int]]] = {method: [] for method in METHODS}
    try:
        for method, worker in workers.items():
            one_job(worker, -1, args)  # loads the model
        for index in range(args.jobs):
            for method in METHODS if index % 2 == 0 else tuple(reversed(METHODS)):
                figures[method].append(one_job(workers[method], index, args))
                sampler, execution, previews = figures[method][-1]
                print(f"  job {index + 1} {method:5} KSampler {sampler:8.0f} ms, execution "
                      f"{execution:8.0f} ms, {previews} previews", flush=True)
    finally:
        for worker in workers.values():
            worker.close()
    medians = {m: (statistics.median(f[0] for f in figures[m]),
                   statistics.median(f[1] for f in figures[m]),
                   statistics.median(f[2] for f in figures[m])) for m in METHODS}
    print(f"\n{'method':6} {'KSampler ms':>12} {'execution ms':>13} {'previews':>9}")
    for method in METHODS:
        sampler, execution, previews = medians[method]
        print(f"{method:6} {sampler:12.0f} {execution:13.0f} {previews:9.0f}")
    print(f"auto / none: KSampler {medians['auto'][0] / medians['none'][0]:.3f}x, "
          f"execution {medians['auto'][1] / medians['none'][1]:.3f}x")


if __name__ == "__main__":
    main()
