"""Files and history entries left, and memory growth, over 200 sequential jobs (soak).

    python bench/soak.py [--jobs 200] [--no-tracemalloc]

Runs a mix of jobs one after another through `handler.handler` in-process (one event loop,
one Worker, as the SDK's job loop does) against the ComfyUI double in its own process, with
the double's input/output/temp folders given to the worker (COMFYUI_INPUT_DIR etc.), so the
worker writes inputs there and must remove everything each job left.

The mix, in a cycle of 10: 3 x EmptyImage -> SaveImage; 3 x base64 noise PNG input ->
ImageScaleBy 0.5 -> SaveImage + PreviewImage (a temp file); 2 x txt2img (KSampler, 4 steps);
1 x a failing run (ImageBlur raises, via the double's execution_error_class switch, after a
sibling SaveImage branch may already have written its file); 1 x an invalid graph (unknown
node, refused at /prompt). Every 50th job is instead a KSampler of 10000 steps with
timeout_s 1, stopped by the worker (4 jobs, about 1-2 s each). The double's step_delay_s is
0.01 so the long sampler runs long; it also makes every node sleep 10 ms.

Reported: the outcome of each kind (expected error codes), files in input/output/temp before
and after (after the cleanup pool drained), the size of the double's GET /history (the worker
deletes each job's entry), and the worker's memory after jobs 1, 20, 49-51, 100, 150, 200:
VmRSS from /proc/self/status, tracemalloc's current and peak (after gc.collect()), threads
and open file descriptors; then the biggest tracemalloc growths between job 20 and the last.
tracemalloc's own tables live in the same process and grow with the first jobs (about 27 MB
here by job 49), so judge VmRSS from a run with --no-tracemalloc and the Python heap from a
run with it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import gc
import logging
import os
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _double import double, machine, noise_png, rss_bytes

CHECKPOINTS = (1, 20, 49, 50, 51, 100, 150, 200)


def _txt2img(steps: int) -> dict[str, Any]:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "random-sd15.safetensors"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": 1, "steps": steps, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
            "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
            "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "soak/t2i"}},
    }


def job_kinds(photo_b64: str) -> dict[str, tuple[dict[str, Any], str | None]]:
    """name -> (job input, expected error code or None for success)."""
    empty = {"class_type": "EmptyImage", "inputs": {"width": 512, "height": 512, "batch_size": 1,
                                                    "color": 0x336699}}
    return {
        "empty": ({"workflow": {
            "1": empty,
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "soak"}},
        }}, None),
        "scale": ({"images": [{"name": "photo.png", "image": photo_b64}], "workflow": {
            "1": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
            "2": {"class_type": "ImageScaleBy", "inputs": {"image": ["1", 0],
                                                           "upscale_method": "bilinear",
                                                           "scale_by": 0.5}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inv"}},
            "4": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
        }}, None),
        "txt2img": ({"workflow": _txt2img(4)}, None),
        "failing": ({"images": [{"name": "photo.png", "image": photo_b64}], "workflow": {
            "1": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "part"}},
            "3": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 3,
                                                        "sigma": 1.0}},
            "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "blur"}},
        }}, "execution_failed"),
        "invalid": ({"workflow": {
            "1": {"class_type": "NoSuchNode", "inputs": {}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
        }}, "workflow_invalid"),
        "timeout": ({"workflow": _txt2img(10000), "timeout_s": 1}, "timeout"),
    }


CYCLE = ["empty", "scale", "txt2img", "empty", "failing", "scale", "empty", "txt2img",
         "invalid", "scale"]


def kind_of(index: int) -> str:
    """Job `index` (1-based): every 50th times out, the rest follow the cycle."""
    return "timeout" if index % 50 == 0 else CYCLE[(index - 1) % len(CYCLE)]


def _threads() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return -1


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def soak(jobs: int, kinds: dict[str, tuple[dict[str, Any], str | None]], trace: bool
               ) -> tuple[list[dict[str, Any]], dict[str, collections.Counter[str]],
                          tracemalloc.Snapshot | None, tracemalloc.Snapshot | None, float]:
    import handler

    samples: list[dict[str, Any]] = []
    outcomes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    first: tracemalloc.Snapshot | None = None
    last: tracemalloc.Snapshot | None = None
    started = time.perf_counter()
    for index in range(1, jobs + 1):
        kind = kind_of(index)
        job_input, expected = kinds[kind]
        result = await handler.handler({"id": f"soak-{index}", "input": job_input})
        code = result.get("error_code")
        outcomes[kind]["ok" if code == expected else f"UNEXPECTED {code}"] += 1
        if code != expected:
            print(f"job {index} ({kind}): expected {expected}, got {code}: {result.get('error')}")
        if index in CHECKPOINTS or index == jobs:
            del result
            await asyncio.sleep(0)  # the loop's running handle lets go of the last result
            gc.collect()
            current, peak = tracemalloc.get_traced_memory() if trace else (0, 0)
            samples.append({"job": index, "rss": rss_bytes(), "traced": current, "peak": peak,
                            "threads": _threads(), "fds": _fds()})
            if trace and index == 20:
                first = tracemalloc.take_snapshot()
            if trace and index == jobs:
                last = tracemalloc.take_snapshot()
    elapsed = time.perf_counter() - started
    handler._get_worker().drain_cleanups()
    return samples, outcomes, first, last, elapsed


def main() -> None:
    # The failing, invalid and timed-out jobs are expected; their warnings would bury the table.
    logging.getLogger("comfy_runtime").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--no-tracemalloc", action="store_true",
                        help="leave tracemalloc off (faster; no Python-heap figures)")
    args = parser.parse_args()
    trace = not args.no_tracemalloc

    photo = noise_png(256, seed=3)
    kinds = job_kinds(base64.b64encode(photo).decode())
    print(f"machine: {machine()}")
    mix = collections.Counter(kind_of(i) for i in range(1, args.jobs + 1))
    print(f"{args.jobs} sequential jobs: " + ", ".join(f"{n} {k}" for k, n in mix.items()))
    faults = {"execution_error_class": "ImageBlur", "step_delay_s": 0.01}
    with double(faults) as comfy:
        before = comfy.files()
        history_before = comfy.history_size()
        if trace:
            tracemalloc.start()
        samples, outcomes, first, last, elapsed = asyncio.run(soak(args.jobs, kinds, trace))
        after = comfy.files()
        history_after = comfy.history_size()
        import handler

        handler._get_worker().close()

    print(f"took {elapsed:.1f} s{' (with tracemalloc on)' if trace else ''}\n")
    print("outcomes: " + "; ".join(f"{kind} {dict(counts)}" for kind, counts in outcomes.items()))
    for folder in ("input", "output", "temp"):
        left = sorted(set(after[folder]) - set(before[folder]))
        print(f"{folder:6} files before {len(before[folder])}, after {len(after[folder])}; "
              f"new: {left[:10] if left else 'none'}")
    print(f"double's /history entries: before {history_before}, after {history_after}\n")

    print(f"{'after job':>9} {'VmRSS MB':>9} {'traced MB':>10} {'traced peak MB':>15} "
          f"{'threads':>8} {'fds':>5}")
    for s in samples:
        print(f"{s['job']:9d} {s['rss'] / 1e6:9.1f} {s['traced'] / 1e6:10.2f} "
              f"{s['peak'] / 1e6:15.2f} {s['threads']:8d} {s['fds']:5d}")
    if len(samples) >= 3:
        at20 = next(s for s in samples if s["job"] == 20)
        end = samples[-1]
        runs = end["job"] - 20
        print(f"\ngrowth job 20 -> {end['job']}: RSS {(end['rss'] - at20['rss']) / 1e6:+.1f} MB, "
              f"traced {(end['traced'] - at20['traced']) / 1e3:+.1f} kB "
              f"({(end['traced'] - at20['traced']) / max(runs, 1):+.0f} B/job)")
    if first is not None and last is not None:
        print("largest traced growths job 20 -> last (file:line, size diff, count diff):")
        for stat in last.compare_to(first, "lineno")[:6]:
            frame = stat.traceback[0]
            where = f"{Path(frame.filename).name}:{frame.lineno}"
            print(f"  {where:40} {stat.size_diff / 1e3:+9.1f} kB {stat.count_diff:+7d}")


if __name__ == "__main__":
    main()
