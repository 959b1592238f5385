"""Jobs per second with 1 and with 2 jobs in flight, their ratio and its bound (issue 5, item 7).

    python bench/concurrency.py [--jobs 20] [--repeats 3] [--node-delays 0.05,0.15]
                                [--size 1024] [--format webp]
    python bench/concurrency.py --comfyui-url http://127.0.0.1:8190 [--jobs 8] [--repeats 3]
                                [--url-delay 0.3] [--store-delay 0.1] [--comfyui-pid PID]
                                [--only "store on loopback"]

Real mode (--comfyui-url, issue 14): against a real ComfyUI, attached by URL. A helper
process on loopback serves the input PNG after --url-delay seconds (a slow store) and runs an
S3 API (moto) twice: as is, and holding each request --store-delay seconds first (a store
across a network, as a real bucket is). Four workloads: a URL input -> ImageInvert ->
SaveImage; the same PNG inline as base64; EmptyImage 1024 -> SaveImage delivered to each of
the two stores. Printed per workload: jobs/s at 1 and at 2 in flight, their ratio, the job's
split at 1 in flight (ComfyUI's execution from the job's own timings_ms; the worker's own
part, waits included, is the rest) and the bound (exec + own) / max(exec, own): two in
flight can only hide the smaller part behind the larger. Overlap can also slow ComfyUI's
execution down where both share the CPU (printed: its execution at 2 in flight); the last
share ("hidden"), max(exec at 2, own) over the job time at 2 in flight, says how much of its own part the
worker hid given that. With --comfyui-pid (a ComfyUI on
this machine), also the CPU per job of ComfyUI's busiest thread (its prompt worker) at 1 in
flight and the bound that sets: whatever overlaps, that thread does each job's work in turn,
and part of it (queueing, the history, its garbage collection) lies outside the execution
that `exec` counts.

Double mode (the default):

What it measures: N identical jobs go through `handler.handler` in-process on one event loop,
started with `asyncio.gather` behind a semaphore of 1, then of 2 - what the SDK does with
`concurrency_modifier` / MAX_CONCURRENCY - all sharing the one Worker. Each result is also
serialized with `json.dumps`, as the SDK does before it posts it. Printed per node delay:
jobs per second at 1 and at 2 in flight (medians of --repeats runs, alternating which goes
first) and their ratio (the issue's target: >= 1.3); the job's time split at 1 in flight (the
worker's own part = total - run, ComfyUI's part = run) and the two-stage pipeline bound
(own + comfy) / max(own, comfy); the CPU time per job of the worker process and of the double
(from /proc/PID/stat); and the event loop's worst wake-up delay (a long one means something
blocking runs on the loop's thread, which would serialize jobs).

The job: a noise PNG of --size x --size (1024: about 3.1 MB, 4.2 MB as base64) sent inline ->
LoadImage -> ImageScaleBy 1.0 -> SaveImage, returned as WebP (output.format "webp"). Before
ComfyUI runs, the worker decodes the base64, checks the image and writes it into ComfyUI's
input folder; after, it reads the PNG, re-encodes it as WebP and base64-encodes it. That work
can overlap the other job's ComfyUI run; ComfyUI (and the double) runs one prompt at a time.
(ImageScaleBy 1.0 stands in for a cheap per-pixel node such as ImageInvert, which the double
at 8733369 does not run: its @node("ImageInvert") decorator sits on the helper `_f32`.)

Why a node delay: the double's nodes cost only their CPU work (PNG decode and encode, about
0.3 s of CPU here), while on a GPU worker ComfyUI's time is mostly spent waiting on the GPU,
leaving the CPU to the worker. `node_delay_s` (COMFY_DOUBLE_FAULTS) makes each of the 3 nodes
sleep first, without using a core, as a GPU-bound node would. 0.05 s (0.15 s a job) puts
ComfyUI's share close to the worker's own (about 0.6-0.75 s each: the case the issue calls
I/O-heavy, ideal ratio about 1.8); 0.15 s makes ComfyUI's share the larger one.

The double runs as its own process with its folders known to the worker (local file fast
path), as on a RunPod worker where ComfyUI is a child on the same machine. On a small shared
machine the two processes compete for the cores; the CPU columns show how close to that
limit the figures are.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _double import cpu_seconds, double, machine, noise_png


def job_input(photo_b64: str, output_format: str = "webp") -> dict[str, Any]:
    return {
        "images": [{"name": "photo.png", "image": photo_b64}],
        "output": {"format": output_format, "quality": 90},
        "workflow": {
            "1": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
            "2": {"class_type": "ImageScaleBy", "inputs": {"image": ["1", 0],
                                                           "upscale_method": "nearest-exact",
                                                           "scale_by": 1.0}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "cc"}},
        },
    }


class LoopLag:
    """The longest time the event loop failed to wake a 5 ms sleeper: a measure of blocking."""

    def __init__(self) -> None:
        self.worst_ms = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.005)
            self.worst_ms = max(self.worst_ms, (time.perf_counter() - started - 0.005) * 1000)

    def start(self) -> None:
        self.worst_ms = 0.0
        self._task = asyncio.ensure_future(self._watch())

    def stop(self) -> float:
        assert self._task is not None
        self._task.cancel()
        return self.worst_ms


async def run_batch(
    handler: Any, job: dict[str, Any], jobs: int, in_flight: int, tag: str
) -> tuple[float, list[dict[str, Any]]]:
    """Seconds for `jobs` copies of `job` with at most `in_flight` at once; their timings_ms."""
    return await real_batch(handler, lambda index: job, jobs, in_flight, tag)


async def measure(job: dict[str, Any], jobs: int, repeats: int, double_pid: int) -> dict[str, Any]:
    import handler

    for index in range(3):  # warm both sides: imports, connections, caches
        await handler.handler({"id": f"warm-{index}", "input": job})
    lag = LoopLag()
    rates: dict[int, list[float]] = {1: [], 2: []}
    stalls: dict[int, list[float]] = {1: [], 2: []}
    cpu: dict[str, list[float]] = {"worker": [], "double": []}
    split: list[dict[str, Any]] = []
    for repeat in range(repeats):
        for in_flight in (1, 2) if repeat % 2 == 0 else (2, 1):
            lag.start()
            own, theirs = cpu_seconds("self"), cpu_seconds(double_pid)
            seconds, timings = await run_batch(handler, job, jobs, in_flight, f"r{repeat}c{in_flight}")
            stalls[in_flight].append(lag.stop())
            cpu["worker"].append((cpu_seconds("self") - own) / jobs * 1000)
            cpu["double"].append((cpu_seconds(double_pid) - theirs) / jobs * 1000)
            rates[in_flight].append(jobs / seconds)
            if in_flight == 1:
                split += timings
    handler._get_worker().drain_cleanups()
    return {"rates": rates, "stalls": stalls, "split": split, "cpu": cpu}


# --- the real mode: a real ComfyUI at a URL, inputs from a slow store, outputs to a store ----
_STORES = """
import sys, time
sys.path.insert(0, sys.argv[1])
from tests.s3_server import start_moto_server, s3_client, unique_bucket
from tests.slow_server import slow_server
body = open(sys.argv[2], "rb").read()
with slow_server(body, float(sys.argv[3])) as url:
    endpoint, stop = start_moto_server()
    # moto keeps its buckets per process: the remote store serves the same bucket.
    remote, stop_remote = start_moto_server(latency_s=float(sys.argv[4]))
    bucket = unique_bucket("bench")
    s3_client(endpoint).create_bucket(Bucket=bucket)
    print(url, endpoint, remote, bucket, flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    stop_remote()
    stop()
"""


def real_workloads(photo: bytes, photo_url: str, delay_s: float,
                   stores: dict[str, str]) -> dict[str, tuple[Any, str | None]]:
    """name -> (function of the job index giving that job's input, the object store's endpoint
    it delivers to). Each job differs (its own input folder, or EmptyImage color) so ComfyUI's
    cache skips none of its nodes."""
    photo_b64 = base64.b64encode(photo).decode()
    invert = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "cc"}},
    }

    def empty_to_store(index: int) -> dict[str, Any]:
        return {"output": {"delivery": "s3"}, "workflow": {
            "1": {"class_type": "EmptyImage", "inputs": {"width": 1024, "height": 1024,
                                                         "batch_size": 1, "color": index}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0],
                                                        "filename_prefix": "cc"}}}}

    workloads: dict[str, tuple[Any, str | None]] = {
        f"URL input, {delay_s * 1000:.0f} ms delay -> invert -> save": (lambda index: {
            "images": [{"name": "photo.png", "image": f"{photo_url}/photo-{index}.png"}],
            "workflow": invert}, None),
        f"{len(photo_b64) / 1e6:.1f} MB base64 input -> invert -> save": (lambda index: {
            "images": [{"name": "photo.png", "image": photo_b64}], "workflow": invert}, None),
    }
    for where, endpoint in stores.items():
        workloads[f"empty 1024 -> save -> store {where}"] = (empty_to_store, endpoint)
    return workloads


async def real_batch(handler: Any, make: Any, jobs: int, in_flight: int,
                     tag: str) -> tuple[float, list[dict[str, Any]]]:
    """Seconds for `jobs` jobs (`make(index)` each) with at most `in_flight` at once; their
    timings_ms."""
    gate = asyncio.Semaphore(in_flight)
    timings: list[dict[str, Any]] = []

    async def one(index: int) -> None:
        async with gate:
            result = await handler.handler({"id": f"{tag}-{index}", "input": make(index)})
            json.dumps(result)  # what the SDK does with it before posting
            if "error" in result:
                raise SystemExit(f"job failed: {result['error']}")
            timings.append(result["timings_ms"])

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(jobs)))
    return time.perf_counter() - started, timings


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds so far of each thread of a process on this machine."""
    ticks = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            seconds[task.name] = (int(fields[11]) + int(fields[12])) / ticks
    return seconds


def machine_ticks() -> tuple[int, int]:
    """(busy, all) clock ticks of every core so far, from /proc/stat: every process counts."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


async def real_measure(make: Any, jobs: int, repeats: int, comfyui_pid: int | None
                       ) -> dict[str, Any]:
    import handler

    for index in range(2):
        await handler.handler({"id": f"warm-{index}", "input": make(10_000 + index)})
    rates: dict[int, list[float]] = {1: [], 2: []}
    split: list[dict[str, Any]] = []
    split2: list[dict[str, Any]] = []  # at 2 in flight: does overlap slow ComfyUI down?
    busiest: list[float] = []  # ms per job of ComfyUI's busiest thread, at 1 in flight
    used: dict[int, list[float]] = {1: [], 2: []}  # share of the machine's cores kept busy
    serial = 0
    for repeat in range(repeats):
        for in_flight in (1, 2) if repeat % 2 == 0 else (2, 1):
            base = serial * jobs
            serial += 1
            before = thread_cpu_s(comfyui_pid) if comfyui_pid and in_flight == 1 else {}
            busy, every = machine_ticks()
            seconds, timings = await real_batch(
                handler, lambda i: make(base + i), jobs, in_flight, f"r{repeat}c{in_flight}")
            busy_after, every_after = machine_ticks()
            used[in_flight].append((busy_after - busy) / max(every_after - every, 1))
            rates[in_flight].append(jobs / seconds)
            (split if in_flight == 1 else split2).extend(timings)
            if before:
                after = thread_cpu_s(comfyui_pid)  # type: ignore[arg-type]
                busiest.append(max(after[t] - before.get(t, 0.0) for t in after) / jobs * 1000)
    handler._get_worker().drain_cleanups()
    return {"rates": rates, "split": split, "split2": split2, "busiest": busiest, "used": used}


def _use_store(endpoint: str | None) -> None:
    """Point a fresh Worker at `endpoint` (the worker reads its store once, when built)."""
    import handler

    if handler._worker is not None:
        handler._worker.close()
        handler._worker = None
    if endpoint:
        os.environ["BUCKET_ENDPOINT_URL"] = endpoint


def _print_row(name: str, figures: dict[str, Any]) -> None:
    one = statistics.median(figures["rates"][1])
    two = statistics.median(figures["rates"][2])
    exec_ms = statistics.median(t["execution"] for t in figures["split"])
    exec2_ms = statistics.median(t["execution"] for t in figures["split2"])
    # Own: all of a job's time at 1 in flight that is not ComfyUI's execution (the
    # SDK-side serialization and ComfyUI's queueing included).
    own_ms = 1000 / one - exec_ms
    bound = (exec_ms + own_ms) / max(exec_ms, own_ms)
    serial = ""
    if figures["busiest"]:
        # No overlap can make ComfyUI's busiest thread (its prompt worker) do a job's work
        # faster than it does alone: a second bound, from measured CPU, not from timestamps.
        busy_ms = statistics.median(figures["busiest"])
        serial = f" {busy_ms:8.0f} {(1000 / one) / busy_ms:6.2f}x"
    # The bound takes ComfyUI's execution as it is at 1 in flight. Where overlap slows that
    # execution down (CPU shared with it), the best 2 in flight can do is max(exec at 2, own)
    # a job: how close it came to that says how much of the worker's own part was hidden.
    achievable = max(exec2_ms, own_ms) / (1000 / two)
    # Every process's CPU, as a share of all cores: at 2 in flight the same work has to fit.
    used1, used2 = (statistics.median(figures["used"][n]) for n in (1, 2))
    print(f"{name:44} {one:8.2f} {two:8.2f} {two / one:7.2f}x {exec_ms:8.0f} {exec2_ms:7.0f} "
          f"{own_ms:7.0f} {bound:5.2f}x {two / one / bound:8.0%} {achievable:10.0%} "
          f"{used1:6.0%} {used2:6.0%}{serial}", flush=True)


def real_main(args: argparse.Namespace) -> None:
    import subprocess
    import tempfile

    photo = noise_png(args.size, seed=7)
    with tempfile.NamedTemporaryFile(suffix=".png") as body:
        body.write(photo)
        body.flush()
        stores = subprocess.Popen(
            [sys.executable, "-c", _STORES, str(Path(__file__).resolve().parents[1]), body.name,
             str(args.url_delay), str(args.store_delay)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True)
        assert stores.stdout is not None and stores.stdin is not None
        photo_url, endpoint, remote, bucket = stores.stdout.readline().split()
        from tests.s3_server import TEST_ACCESS_KEY_ID, TEST_REGION, TEST_SECRET_ACCESS_KEY

        if args.comfyui_dirs:
            for folder in ("input", "output", "temp"):
                os.environ[f"COMFYUI_{folder.upper()}_DIR"] = str(args.comfyui_dirs / folder)
        os.environ.update({
            "COMFYUI_URL": args.comfyui_url, "ALLOW_PRIVATE_URLS": "true",
            "BUCKET_ENDPOINT_URL": endpoint, "BUCKET_NAME": bucket,
            "BUCKET_ACCESS_KEY_ID": TEST_ACCESS_KEY_ID,
            "BUCKET_SECRET_ACCESS_KEY": TEST_SECRET_ACCESS_KEY, "BUCKET_REGION": TEST_REGION,
        })
        print(f"machine: {machine()}")
        files = "ComfyUI's folders" if args.comfyui_dirs else "HTTP"
        print(f"ComfyUI: {args.comfyui_url} (real, files via {files}); input server and object "
              f"store (moto) in a separate process on loopback; {args.jobs} jobs a run, "
              f"{args.repeats} runs each, medians\nexec: ComfyUI's execution per job at 1 in "
              f"flight; own: the rest of a job's time at 1 in flight (1000 / jobs per s - exec); "
              f"bound: (exec + own) / max(exec, own); at 2: ComfyUI's execution per job at 2 "
              f"in flight;\nhidden: max(at 2, own) / the job time at 2 in flight (how much of its "
              f"own part the worker hid, given ComfyUI's execution as overlap left it)\n"
              f"cpu 1, cpu 2: the machine's cores kept busy (every process) at 1 and 2 in flight")
        if args.comfyui_pid:
            print("busy ms: CPU per job of ComfyUI's busiest thread at 1 in flight; its bound: "
                  "job time at 1 in flight / busy ms")
        print(f"\n{'workload':44} {'1 job/s':>8} {'2 job/s':>8} {'speedup':>8} {'exec ms':>8} "
              f"{'at 2':>7} {'own ms':>7} {'bound':>6} {'of bound':>9} {'hidden':>10} "
              f"{'cpu 1':>6} {'cpu 2':>6}"
              + (f" {'busy ms':>8} {'bound':>7}" if args.comfyui_pid else ""))
        where = {"on loopback": endpoint,
                 f"{args.store_delay * 1000:.0f} ms away": remote}
        try:
            for name, (make, store) in real_workloads(photo, photo_url, args.url_delay,
                                                      where).items():
                if args.only and args.only not in name:
                    continue
                _use_store(store)
                _print_row(name, asyncio.run(real_measure(make, args.jobs, args.repeats,
                                                          args.comfyui_pid)))
        finally:
            _use_store(None)
            stores.stdin.close()
            stores.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui-url", default=None,
                        help="real mode: a running ComfyUI; measures a delayed-URL input, a "
                        "large base64 input and object-store delivery (default: the double)")
    parser.add_argument("--comfyui-dirs", type=Path, default=None,
                        help="real mode: a folder with ComfyUI's input/, output/ and temp/, told "
                        "to the worker (as when it launched ComfyUI); default: files over HTTP")
    parser.add_argument("--url-delay", type=float, default=0.3,
                        help="real mode: seconds the input server waits before answering")
    parser.add_argument("--store-delay", type=float, default=0.1,
                        help="real mode: the remote object store's delay before each request")
    parser.add_argument("--comfyui-pid", type=int, default=None,
                        help="real mode: ComfyUI's process id on this machine, to measure its "
                        "busiest thread's CPU per job")
    parser.add_argument("--only", default="",
                        help="real mode: run only the workloads whose name contains this text")
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--node-delays", default="0.05,0.15",
                        help="comma-separated node_delay_s values of the double, one run each")
    parser.add_argument("--size", type=int, default=1024, help="input PNG side in pixels")
    parser.add_argument("--format", default="webp", choices=["webp", "png", "jpeg"],
                        help="output.format of the job (png: no conversion)")
    args = parser.parse_args()
    if args.comfyui_url:
        real_main(args)
        return

    photo = noise_png(args.size, seed=7)
    photo_b64 = base64.b64encode(photo).decode()
    job = job_input(photo_b64, args.format)
    print(f"machine: {machine()}")
    print(f"job: {len(photo) / 1e6:.1f} MB noise PNG {args.size}x{args.size} as base64 "
          f"({len(photo_b64) / 1e6:.1f} MB) -> LoadImage -> ImageScaleBy 1.0 -> SaveImage -> "
          f"{args.format}; {args.jobs} jobs a run, {args.repeats} runs each, medians")
    print("worker/comfy ms: the job's own part and ComfyUI's part at 1 in flight; ideal: the "
          "two-stage pipeline bound;\ncpu ms: CPU time per job of the worker process and of the "
          "double; stall: the event loop's worst wake-up delay\n")
    print(f"{'node_delay_s':>12} {'1 job/s':>8} {'2 job/s':>8} {'ratio':>6} {'worker ms':>10} "
          f"{'comfy ms':>9} {'ideal':>6} {'cpu worker':>11} {'cpu double':>11} "
          f"{'stall1 ms':>10} {'stall2 ms':>10}")
    for delay in (float(d) for d in args.node_delays.split(",")):
        with double({"node_delay_s": delay}) as comfy:
            if "handler" in sys.modules:  # a fresh Worker for this double
                sys.modules["handler"]._worker = None  # type: ignore[attr-defined]
            figures = asyncio.run(measure(job, args.jobs, args.repeats, comfy.pid))
            worker = sys.modules["handler"]._worker  # type: ignore[attr-defined]
            if worker is not None:
                worker.close()
        one = statistics.median(figures["rates"][1])
        two = statistics.median(figures["rates"][2])
        # At 1 in flight: ComfyUI's share is queue + run (the prompt's wall time, events
        # included); the rest of the job's total is the worker's own.
        comfy_ms = statistics.median(t["run"] for t in figures["split"])
        own_ms = statistics.median(t["total"] - t["run"] for t in figures["split"])
        ideal = (own_ms + comfy_ms) / max(own_ms, comfy_ms)
        print(f"{delay:12.3f} {one:8.2f} {two:8.2f} {two / one:6.2f} {own_ms:10.1f} "
              f"{comfy_ms:9.1f} {ideal:6.2f} {statistics.median(figures['cpu']['worker']):11.0f} "
              f"{statistics.median(figures['cpu']['double']):11.0f} "
              f"{statistics.median(figures['stalls'][1]):10.1f} "
              f"{statistics.median(figures['stalls'][2]):10.1f}")
        print(f"{'':12} runs at 1: {', '.join(f'{r:.2f}' for r in figures['rates'][1])}; "
              f"at 2: {', '.join(f'{r:.2f}' for r in figures['rates'][2])} jobs/s")


if __name__ == "__main__":
    main()
