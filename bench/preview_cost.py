"""Median per-pair ratio auto / none, with a seeded bootstrap 95% interval, of txt2img sampling
time (the KSampler node), execution, ComfyUI's CPU seconds and the worker's CPU seconds, on two
real ComfyUIs the worker launches with PREVIEW_METHOD=auto and none (CPU); and the worker's
own time to re-encode one recorded preview.

    COMFYUI_DIR=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/its/python \\
        [COMFYUI_ARGS="--extra-model-paths-config models.yaml"] \\
        python bench/preview_cost.py [--jobs 40] [--size 64] [--steps 8] [--max-size 256] \\
                                     [--interval 0.25] [--seed 0] [--ports 8188,8189] \\
                                     [--dirs /tmp/bench-comfy] [--one-comfyui]

A job that asks for `previews` costs ComfyUI a preview per sampler step (drawn with its
--preview-method, encoded as JPEG at --preview-size, sent over the websocket) and costs the
worker a decode, shrink and JPEG encode per preview it sends. Both ComfyUIs are launched by
the worker at once, one with PREVIEW_METHOD=auto and one with none (PREVIEW_MAX_SIZE the
same); each loads the model with one untimed job. Then come --jobs pairs: one job on each,
never two at a time, which goes first drawn per pair (seeded; as many pairs start with auto
as with none), so drift and a busy neighbour touch both sides of a pair alike. Every job asks
for previews ({"max_size": --max-size, "interval_s": --interval}); with none, ComfyUI draws
none and the worker sends none. With --one-comfyui there is one ComfyUI, launched with
PREVIEW_METHOD=auto, and a pair is a job with previews and one without: a ComfyUI that reads
a prompt's preview method (0.33.0) draws none for the second, since the worker sends it
`preview_method: none`; the two sides then share one process, its memory and its caches.

Printed: the load average before and after (a noisy run shows), each pair's figures, then
per method the medians, and per figure two ratios: of the medians, and the median of the
per-pair ratios with its 95% interval (percentile bootstrap of the median over pairs, 2000
resamples, stdlib `random` seeded by --seed). A difference under 3% is resolved when the
interval lies inside 0.97x..1.03x or wholly beyond 1.03x. The two sides are apart: ComfyUI's
CPU seconds (drawing and sending previews at every step) and the worker's CPU seconds (its
whole process, threads included: decoding, shrinking and encoding the previews it sends),
plus the median time of `comfy_runtime.progress.encode_preview` on the frames a real
ComfyUI sent (tests/protocol/previews/), times the previews a job received. Last, what a
preview costs ComfyUI at each step apart from sampling, timed with ComfyUI's own previewer
by its own python (bench/_comfyui_preview_step.py), as a share of a sampling step: a figure
the machine's noise does not blur. Needs a
checkpoint (a random-weight SD1.5 is enough: bench/make_random_sd15.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _double import cpu_seconds, machine  # noqa: E402

from comfy_runtime.comfyui.supervision import launch_comfyui  # noqa: E402
from comfy_runtime.progress import encode_preview  # noqa: E402
from comfy_runtime.settings import Settings  # noqa: E402
from comfy_runtime.worker import Worker  # noqa: E402
from handler import respond  # noqa: E402
from tests.comfy_double.media import recorded_previews  # noqa: E402

METHODS = ("auto", "none")
KSAMPLER = "3"  # the bundled txt2img's sampler node
RESAMPLES = 2000
FIGURES = ("KSampler ms", "execution ms", "ComfyUI CPU s", "worker CPU s")


class Job(NamedTuple):
    """One timed job's figures; the first four are FIGURES, in order."""

    sampler_ms: float
    execution_ms: float
    comfy_cpu_s: float
    worker_cpu_s: float
    previews: int


def launch(method: str, port: int, dirs: Path, max_size: int) -> Worker:
    """A worker that launched its own ComfyUI with `method`, its folders under `dirs`."""
    own = {kind: dirs / method / kind for kind in ("input", "output", "temp", "user")}
    for folder in own.values():
        folder.mkdir(parents=True, exist_ok=True)
    # --user-directory does not move ComfyUI's database (it stays in the ComfyUI folder's
    # user/): without its own, the second ComfyUI fails to lock it and runs without one.
    folder_flags = " ".join(f"--{kind}-directory {path}" for kind, path in own.items())
    folder_flags += f" --database-url sqlite:///{own['user'] / 'comfyui.db'}"
    base = Settings()
    settings = Settings(comfyui_port=port, warmup_workflow="none", preview_method=method,
                        preview_max_size=max_size,
                        comfyui_args=f"{base.comfyui_args} {folder_flags}".strip(),
                        comfyui_input_dir=own["input"], comfyui_output_dir=own["output"],
                        comfyui_temp_dir=own["temp"])  # its own folders, user/ included
    worker = Worker(settings, launch_comfyui(settings))
    worker.wait_ready()
    return worker


def comfy_cpu_s(worker: Worker) -> float:
    """CPU seconds ComfyUI's process has used so far: less swayed than wall time by other
    work on a shared machine."""
    assert worker.process is not None and worker.process.pid is not None
    return cpu_seconds(worker.process.pid)


def one_job(worker: Worker, index: int, args: argparse.Namespace, method: str = "auto") -> Job:
    """The figures of one txt2img job, on the side of the pair that `method` names: with
    previews, except on the `none` side of --one-comfyui."""
    reports: list[dict[str, Any]] = []
    comfy_before, worker_before = comfy_cpu_s(worker), time.process_time()
    # A seed of its own per job: with --one-comfyui, the pair's second job must not come
    # from ComfyUI's cache.
    seed = 2 * (index + 1) + METHODS.index(method)  # the untimed first job is index -1
    params = {"prompt": f"a lighthouse at dusk, painting number {index}", "steps": args.steps,
              "width": args.size, "height": args.size, "seed": seed}
    job: dict[str, Any] = {"workflow": "txt2img", "params": params}
    if method == "auto" or not args.one_comfyui:
        job["previews"] = {"max_size": args.max_size, "interval_s": args.interval}
    result = respond(asyncio.run(worker.handle({"id": f"bench-{index}", "input": job},
                                               progress=reports.append)))
    if "error" in result:
        raise SystemExit(f"job failed: {result['error']}")
    # process_time: this process, every thread, finer than /proc's clock ticks
    comfy_cpu, worker_cpu = comfy_cpu_s(worker) - comfy_before, time.process_time() - worker_before
    worker.drain_cleanups()
    timings = result["timings_ms"]
    previews = sum(1 for report in reports if "preview" in report)
    return Job(timings["nodes"][KSAMPLER], timings["execution"], comfy_cpu, worker_cpu,
               previews)


def pair_orders(pairs: int, rng: random.Random) -> list[tuple[str, str]]:
    """Which method goes first in each pair: as many auto-first as none-first (one more of
    either when odd), shuffled, so neither always meets the other's leftovers."""
    orders = [METHODS if i % 2 == 0 else METHODS[::-1] for i in range(pairs)]
    rng.shuffle(orders)
    return orders


def median_interval(values: list[float], rng: random.Random) -> tuple[float, float, float]:
    """The median of `values` and a 95% percentile-bootstrap interval for it."""
    medians = sorted(statistics.median(rng.choices(values, k=len(values)))
                     for _ in range(RESAMPLES))
    return (statistics.median(values), medians[int(0.025 * RESAMPLES)],
            medians[int(0.975 * RESAMPLES) - 1])


def encode_ms(max_size: int, rounds: int = 20) -> float:
    """Median milliseconds of one `encode_preview` (the worker's decode, shrink and JPEG
    encode of a frame it sends) on the frames a real ComfyUI sent, at `max_size`."""
    frames = recorded_previews()
    times = []
    for _ in range(rounds):
        for frame in frames:
            start = time.perf_counter()
            if encode_preview(frame, max_size) is None:
                raise SystemExit("a recorded preview did not re-encode")
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def comfyui_step_ms(args: argparse.Namespace) -> dict[str, float]:
    """What a preview costs ComfyUI per step apart from sampling, timed with its own previewer
    by its own python (bench/_comfyui_preview_step.py): {"draw_ms", "encode_ms"}."""
    settings = Settings()
    script = Path(__file__).resolve().parent / "_comfyui_preview_step.py"
    done = subprocess.run(
        [settings.comfyui_python, str(script), "--size", str(args.size),
         "--max-size", str(args.max_size)],
        cwd=settings.comfyui_dir, capture_output=True, text=True, timeout=600, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def load(before: bool) -> str:
    """The load average; before the run, a warning when other work will blur the ratios
    (after it, the bench's own ComfyUI is part of it)."""
    one, five, fifteen = os.getloadavg()
    cpus = os.cpu_count() or 1
    busy = "  BUSY: other work will blur the ratios" if before and one > cpus / 2 else ""
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min) on {cpus} CPUs{busy}"


def run_pairs(workers: dict[str, Worker], args: argparse.Namespace
              ) -> list[dict[str, Job]]:
    """The timed pairs, each {method: Job}, printed as they come."""
    pairs: list[dict[str, Job]] = []
    for index, order in enumerate(pair_orders(args.jobs, random.Random(args.seed))):
        start = time.monotonic()
        pair = {method: one_job(workers[method], index, args, method) for method in order}
        pairs.append(pair)
        auto, none = pair["auto"], pair["none"]
        print(f"  pair {index + 1:3} {order[0]:4} first  KSampler {auto.sampler_ms:7.0f} / "
              f"{none.sampler_ms:7.0f} ms = {auto.sampler_ms / none.sampler_ms:.3f}x  ComfyUI "
              f"CPU {auto.comfy_cpu_s:5.1f} / {none.comfy_cpu_s:5.1f} s  worker CPU "
              f"{1000 * auto.worker_cpu_s:3.0f} / {1000 * none.worker_cpu_s:3.0f} ms  previews "
              f"{auto.previews}/{none.previews}  {time.monotonic() - start:5.1f} s  "
              f"load {os.getloadavg()[0]:.2f}", flush=True)
    return pairs


def report(pairs: list[dict[str, Job]], args: argparse.Namespace) -> None:
    """Medians per method, then per figure the ratio of medians and the median pair ratio
    with its bootstrap interval; then the worker's side per preview."""
    print(f"\n{'method':6} " + " ".join(f"{name:>14}" for name in FIGURES) + f" {'previews':>9}")
    medians = {m: [statistics.median(p[m][i] for p in pairs) for i in range(5)] for m in METHODS}
    for method in METHODS:
        print(f"{method:6} " + " ".join(f"{v:14.3f}" for v in medians[method][:4])
              + f" {medians[method][4]:9.0f}")
    rng = random.Random(args.seed)
    print(f"\nauto / none over {len(pairs)} pairs (median pair, 95% bootstrap interval; "
          "ratio of medians):")
    for i, name in enumerate(FIGURES):
        ratios = [p["auto"][i] / p["none"][i] for p in pairs if p["none"][i] > 0]
        if len(ratios) < 2:
            print(f"  {name:14} too few pairs with a non-zero 'none' figure")
            continue
        mid, low, high = median_interval(ratios, rng)
        of_medians = medians["auto"][i] / medians["none"][i] if medians["none"][i] else 0.0
        print(f"  {name:14} {mid:.3f}x [{low:.3f}, {high:.3f}]  (medians {of_medians:.3f}x)")
    extra = [1000 * (p["auto"].worker_cpu_s - p["none"].worker_cpu_s) for p in pairs]
    if len(extra) > 1:
        mid, low, high = median_interval(extra, rng)
        print(f"  worker CPU, auto - none: {mid:.1f} ms [{low:.1f}, {high:.1f}] per job")
    step = comfyui_step_ms(args)
    step_ms = medians["auto"][0] / args.steps
    print(f"\nComfyUI: per sampler step, drawing the preview {step['draw_ms']:.2f} ms (sampling "
          f"thread), shrinking and encoding it {step['encode_ms']:.2f} ms (server thread); "
          f"{100 * (step['draw_ms'] + step['encode_ms']) / step_ms:.3f}% of a sampling step "
          f"({step_ms:.0f} ms: median KSampler time with auto / {args.steps} steps)")
    per_preview = encode_ms(args.max_size)
    per_job = per_preview * medians["auto"][4]
    print(f"\nworker: encode_preview {per_preview:.2f} ms per preview (median, recorded "
          f"{args.max_size}px frames); x {medians['auto'][4]:.0f} previews per job = "
          f"{per_job:.1f} ms, {100 * per_job / medians['auto'][0]:.2f}% of the median "
          "KSampler time with auto")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ports", default="8188,8189", help="ComfyUI ports for auto, none")
    parser.add_argument("--jobs", type=int, default=40, help="timed pairs (one job each)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--max-size", type=int, default=256,
                        help="PREVIEW_MAX_SIZE and each job's previews.max_size")
    parser.add_argument("--interval", type=float, default=0.25,
                        help="each job's previews.interval_s (at least 0.25)")
    parser.add_argument("--seed", type=int, default=0, help="pair order and bootstrap")
    parser.add_argument("--dirs", type=Path, default=Path("/tmp/comfy-worker-preview-cost"))
    parser.add_argument("--one-comfyui", action="store_true",
                        help="one ComfyUI (PREVIEW_METHOD=auto): jobs with previews against "
                        "jobs without, which a ComfyUI that reads a prompt's preview method "
                        "(0.33.0) draws none for")
    args = parser.parse_args()
    ports = [int(p) for p in args.ports.split(",")]
    print(f"machine: {machine()}\nload average before: {load(True)}\ntxt2img {args.size}x"
          f"{args.size}, {args.steps} steps, previews at most {args.max_size} px every "
          f"{args.interval} s; {args.jobs} pairs, order drawn per pair (seed {args.seed})"
          + ("; one ComfyUI: jobs with previews against jobs without" if args.one_comfyui
             else ""))
    workers: dict[str, Worker] = {}
    try:
        for method, port in zip(METHODS[:1] if args.one_comfyui else METHODS, ports):
            workers[method] = launch(method, port, args.dirs, args.max_size)
        if args.one_comfyui:
            workers["none"] = workers["auto"]
        for worker in set(workers.values()):
            one_job(worker, -1, args)  # loads the model
        pairs = run_pairs(workers, args)
    finally:
        for worker in set(workers.values()):
            worker.close()
    print(f"load average after: {load(False)}")
    report(pairs, args)


if __name__ == "__main__":
    main()
