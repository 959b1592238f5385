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
ComfyUI's CPU seconds per job (steadier than wall time on a shared machine), and the ratios
auto / none. Needs a checkpoint (a random-weight SD1.5 is enough:
bench/make_random_sd15.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
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


def cpu_s(worker: Worker) -> float:
    """CPU seconds ComfyUI's process has used so far (user + system, /proc/PID/stat): less
    swayed than wall time by other work on a shared machine."""
    pid = worker.process.pid if worker.process is not None else None
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_job(worker: Worker, index: int, args: argparse.Namespace
            ) -> tuple[float, float, int, float]:
    """(KSampler ms, execution ms, previews received, ComfyUI's CPU s) of one txt2img job
    with previews."""
    reports: list[dict[str, Any]] = []
    cpu_before = cpu_s(worker)
    params = {"prompt": f"a lighthouse at dusk, painting number {index}", "steps": args.steps,
              "width": args.size, "height": args.size, "seed": index}
    job = {"workflow": "txt2img", "params": params,
           "previews": {"max_size": args.max_size, "interval_s": 0.25}}
    result = respond(asyncio.run(worker.handle({"id": f"bench-{index}", "input": job},
                                               progress=reports.append)))
    if "error" in result:
        raise SystemExit(f"job failed: {result['error']}")
    cpu = cpu_s(worker) - cpu_before
    worker.drain_cleanups()
    timings = result["timings_ms"]
    previews = sum(1 for report in reports if "preview" in report)
    return timings["nodes"][KSAMPLER], timings["execution"], previews, cpu


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
    figures: dict[str, list[tuple[float, float, int, float]]] = {m: [] for m in METHODS}
    try:
        for method, worker in workers.items():
            one_job(worker, -1, args)  # loads the model
        for index in range(args.jobs):
            for method in METHODS if index % 2 == 0 else tuple(reversed(METHODS)):
                figures[method].append(one_job(workers[method], index, args))
                sampler, execution, previews, cpu = figures[method][-1]
                print(f"  job {index + 1} {method:5} KSampler {sampler:8.0f} ms, execution "
                      f"{execution:8.0f} ms, {previews} previews, ComfyUI CPU {cpu:6.1f} s",
                      flush=True)
    finally:
        for worker in workers.values():
            worker.close()
    medians: dict[str, list[float]] = {
        m: [float(statistics.median(f[i] for f in figures[m])) for i in range(4)]
        for m in METHODS}
    print(f"\n{'method':6} {'KSampler ms':>12} {'execution ms':>13} {'previews':>9} "
          f"{'ComfyUI CPU s':>14}")
    for method in METHODS:
        m_sampler, m_execution, m_previews, m_cpu = medians[method]
        print(f"{method:6} {m_sampler:12.0f} {m_execution:13.0f} {m_previews:9.0f} "
              f"{m_cpu:14.1f}")
    auto, none = medians["auto"], medians["none"]
    print(f"auto / none: KSampler {auto[0] / none[0]:.3f}x, execution {auto[1] / none[1]:.3f}x, "
          f"ComfyUI CPU {auto[3] / none[3]:.3f}x")


if __name__ == "__main__":
    main()
