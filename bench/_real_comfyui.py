"""No figure of its own: what bench/warmup.py and bench/omp_policy.py share (a real ComfyUI).

`free_port()` for the ComfyUI each launches, and `txt2img_jobs()`: bundled txt2img jobs one
after another through a Worker, each timed (wall, ComfyUI's execution, the wait from queueing
to its start).
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from comfy_runtime.worker import Worker  # noqa: E402
from handler import respond  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def txt2img_jobs(worker: Worker, count: int, steps: int, size: int
                       ) -> list[tuple[float, float, float]]:
    """(wall s, ComfyUI's execution s, s from queueing to its start) of each job."""
    times = []
    for index in range(count):
        # A new prompt each time: ComfyUI would otherwise serve the text encoding of warm jobs
        # from its cache and flatter them against the first.
        params = {"prompt": f"a lighthouse at dusk, painting number {index}", "steps": steps,
                  "width": size, "height": size, "seed": index}
        started = time.perf_counter()
        result = respond(await worker.handle({"id": f"warm-{index}", "input": {"workflow": "txt2img", "params": params}}))
        if "error" in result:
            raise SystemExit(f"job failed: {result['error']}")
        timings = result["timings_ms"]
        times.append((time.perf_counter() - started, timings["execution"] / 1000,
                      timings["queued"] / 1000))
    return times
