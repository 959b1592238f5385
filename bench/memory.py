"""Peak memory of a job with a 4 x 2048x2048 PNG batch out, inline and via S3 (issue 3, item 5).

    python bench/memory.py [--repeats 3]

The job: txt2img on the ComfyUI double (EmptyLatentImage 2048x2048 batch 4 -> KSampler, 1 step
-> VAEDecode -> SaveImage). The double's VAEDecode of a sampled latent is random noise, so each
PNG is incompressible: about 12.6 MB, about 50 MB for the batch, 67 MB as base64. (EmptyImage
outputs compress to almost nothing and would hide every copy.)

It runs through `handler.handler` in-process against the double in its own process, with the
double's folders given to the worker (outputs are read from disk), in two delivery modes:
`base64` (inline; MAX_RESPONSE_BYTES raised to 1 GB so the limit does not refuse it) and `s3`
(moto's S3 server, run in a separate process so the stored objects do not count as ours).

Measured per mode, after a warm-up job, as the median of --repeats jobs, each started from a
trimmed heap (gc.collect + glibc malloc_trim) with the kernel's peak-RSS mark reset
(/proc/self/clear_refs 5, then VmHWM):
- handler: peak RSS over the RSS before the job, and tracemalloc's peak over its level before
  (Python allocations: bytes and str objects, not Pillow's or the kernel's buffers);
- + json: the same for `json.dumps(result).encode()` afterwards, with the result still held:
  what the SDK does before it posts the result (aiohttp serializes the dict the same way);
- held: what the result itself keeps (tracemalloc, after the handler returned).
"copies" is the handler's tracemalloc peak divided by the outputs' total size.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _double import REPO, double, machine, rss_bytes

SIDE = 2048
BATCH = 4


def workflow() -> dict[str, Any]:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "random-sd15.safetensors"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "noise", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": SIDE, "height": SIDE,
                                                           "batch_size": BATCH}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": 11, "steps": 1, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
            "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
            "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "mem"}},
    }


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


_libc = ctypes.CDLL("libc.so.6")


def _settle() -> tuple[int, int]:
    """Free what can be freed, reset the peak marks; (RSS, traced) to measure from."""
    gc.collect()
    _libc.malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    tracemalloc.reset_peak()
    return rss_bytes(), tracemalloc.get_traced_memory()[0]


def _since(base: tuple[int, int]) -> tuple[int, int]:
    rss, traced = base
    return _peak_rss() - rss, tracemalloc.get_traced_memory()[1] - traced


@contextmanager
def moto_process() -> Iterator[str]:
    """moto's S3 server in its own process; yields its endpoint."""
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]);"
            "from tests.s3_server import start_moto_server;"
            "endpoint, stop = start_moto_server(); print(endpoint, flush=True); time.sleep(1e9)")
    process = subprocess.Popen([sys.executable, "-c", code, str(REPO)], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait(timeout=10)


async def measure(delivery: str, repeats: int) -> list[dict[str, float]]:
    import handler

    job = {"workflow": workflow(), "output": {"delivery": delivery}}
    await handler.handler({"id": f"warm-{delivery}", "input": job})
    rows: list[dict[str, float]] = []
    for index in range(repeats):
        handler._get_worker().drain_cleanups()
        # Until this task yields, the loop's running handle still holds the future that
        # carried the last result (the to_thread of job.py's _collect): let it go first.
        await asyncio.sleep(0)
        base = _settle()
        started = time.perf_counter()
        result = await handler.handler({"id": f"mem-{delivery}-{index}", "input": job})
        seconds = time.perf_counter() - started
        if "error" in result:
            raise SystemExit(f"{delivery} job failed: {result['error']}")
        rss_peak, traced_peak = _since(base)
        held = tracemalloc.get_traced_memory()[0] - base[1]
        files = len(result["images"])
        base_json = _settle()
        body = json.dumps(result).encode()
        json_rss, json_traced = _since(base_json)
        rows.append({"rss": rss_peak, "traced": traced_peak, "held": held, "json_rss": json_rss,
                     "json_traced": json_traced, "body": len(body), "files": files,
                     "seconds": seconds})
        del result, body
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    os.environ["MAX_RESPONSE_BYTES"] = str(1_000_000_000)
    print(f"machine: {machine()}")
    tracemalloc.start()
    with moto_process() as endpoint, double():
        from tests.s3_server import TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY, s3_client

        bucket = "bench-memory"
        s3_client(endpoint).create_bucket(Bucket=bucket)
        os.environ.update({
            "BUCKET_ENDPOINT_URL": endpoint, "BUCKET_NAME": bucket, "BUCKET_REGION": "us-east-1",
            "BUCKET_ACCESS_KEY_ID": TEST_ACCESS_KEY_ID,
            "BUCKET_SECRET_ACCESS_KEY": TEST_SECRET_ACCESS_KEY,
        })

        import handler

        results: dict[str, list[dict[str, float]]] = {}
        for delivery in ("base64", "s3"):
            results[delivery] = asyncio.run(measure(delivery, args.repeats))
        handler._get_worker().close()
        outputs = _output_sizes(endpoint, bucket, f"mem-s3-{args.repeats - 1}")

    total = sum(outputs)
    print(f"outputs: {len(outputs)} PNGs of {SIDE}x{SIDE} noise, "
          f"{', '.join(f'{s / 1e6:.2f}' for s in outputs)} MB; total {total / 1e6:.1f} MB "
          f"({4 * ((total + 2) // 3) / 1e6:.1f} MB as base64)")
    print(f"{args.repeats} jobs per mode after a warm-up, medians (MB)\n")
    print(f"{'delivery':8} {'handler RSS+':>12} {'handler traced':>15} {'copies':>7} "
          f"{'result held':>12} {'json RSS+':>10} {'json traced':>12} {'JSON body':>10} {'job s':>6}")
    for delivery, rows in results.items():
        def med(key: str, rows: list[dict[str, float]] = rows) -> float:
            return statistics.median(row[key] for row in rows)

        print(f"{delivery:8} {med('rss') / 1e6:12.1f} {med('traced') / 1e6:15.1f} "
              f"{med('traced') / total:7.2f} {med('held') / 1e6:12.1f} {med('json_rss') / 1e6:10.1f} "
              f"{med('json_traced') / 1e6:12.1f} {med('body') / 1e6:10.1f} {med('seconds'):6.2f}")
    print(f"\nprocess peak RSS (VmHWM since the last reset) {_peak_rss() / 1e6:.0f} MB; "
          f"RSS now {rss_bytes() / 1e6:.0f} MB")


def _output_sizes(endpoint: str, bucket: str, job_id: str) -> list[int]:
    """The sizes of one s3 job's stored objects: the outputs as the worker read them."""
    from tests.s3_server import s3_client

    listing = s3_client(endpoint).list_objects_v2(Bucket=bucket, Prefix=f"{job_id}/")
    return sorted(obj["Size"] for obj in listing.get("Contents", []))


if __name__ == "__main__":
    main()
