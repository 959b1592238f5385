"""Per hostile job shape: the worker's answer, its time to answer (median ms) and its peak RSS.

    python bench/hostile_cost.py [--only NAME ...] [--repeats 3]

Issue 22: every cost a client controls is counted before it is paid. The shapes are
`SHAPES` of `bench/_hostile_workflows.py` (editor workflows and workflow files) and, when it
exists, `bench/_hostile_network.py`. Each run is a fresh child process holding a real `Worker`
(default settings) attached to the ComfyUI double (in its own process); after a warm-up job
(node definitions fetched), the heap is trimmed and the kernel's peak-RSS mark reset, then the
shape runs as a job through `Worker.handle`, as the runpod SDK calls it. Printed per shape:
the answer's `error_code` (`converted` for a `convert_only` job that passed), the median wall
time of --repeats runs, the largest peak RSS of the process (VmHWM: imports, the double's
client, the job input itself included) and the largest growth of it during the job.
The target: every shape answers in under 1 s and 200 MB, with a clear code.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _double import REPO, double, machine
from _hostile import Shape, measure, measure_call

SHAPE_MODULES = ("_hostile_workflows", "_hostile_network")


def collect() -> dict[str, Shape | Callable[[], dict[str, Any]]]:
    """Every shape module's SHAPES (a `Shape`, or a callable that sends its own job); a module
    that is not there is skipped."""
    found: dict[str, Shape | Callable[[], dict[str, Any]]] = {}
    for name in SHAPE_MODULES:
        if importlib.util.find_spec(name) is not None:
            found.update(importlib.import_module(name).SHAPES)
    return found


def _child(name: str) -> None:
    shape = collect()[name]
    print(json.dumps(measure(shape) if isinstance(shape, Shape) else measure_call(shape)))


def _run(name: str, shape: Shape | Callable[[], dict[str, Any]]) -> dict[str, object]:
    env = {**os.environ, **(shape.settings if isinstance(shape, Shape) else {})}
    done = subprocess.run([sys.executable, __file__, "--child", name], env=env, cwd=REPO,
                          check=False, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{name}: the child failed\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", help="shape names (default: all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child)
        return
    shapes = collect()
    names = args.only or list(shapes)
    print(f"# {machine()}; {args.repeats} fresh processes per shape\n")
    print("| shape | answer | time, ms (median) | peak RSS, MB | growth in the job, MB |")
    print("| --- | --- | --- | --- | --- |")
    worst = (0.0, 0)
    with double():
        for name in names:
            runs = [_run(name, shapes[name]) for _ in range(args.repeats)]
            ms = statistics.median(float(r["seconds"]) for r in runs) * 1000  # type: ignore[arg-type]
            peak = max(int(r["peak_rss"]) for r in runs)  # type: ignore[call-overload]
            growth = max(int(r["growth"]) for r in runs)  # type: ignore[call-overload]
            worst = (max(worst[0], ms), max(worst[1], peak))
            what = getattr(shapes[name], "what", name)
            print(f"| {what} | `{runs[0]['code']}` | {ms:.0f} | {peak / 1e6:.0f} "
                  f"| {growth / 1e6:.0f} |", flush=True)
    print(f"\nslowest {worst[0]:.0f} ms, largest peak {worst[1] / 1e6:.0f} MB "
          f"(target: under 1000 ms and 200 MB)")


if __name__ == "__main__":
    main()
