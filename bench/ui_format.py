"""Milliseconds to convert the largest recorded template, node definitions cached (target < 20).

    python bench/ui_format.py [--recordings DIR] [--object-info FILE] [--runs N]

Definitions are built once (as the worker keeps them per ComfyUI process) and warmed on the
workflow; each run then converts the workflow from its parsed JSON. Prints the median, the
fastest and the 95th percentile, and the same median with definitions built from scratch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from comfy_runtime.ui_format import NodeDefinitions, to_api, to_api_with_definitions  # noqa: E402

DEFAULT_DIR = REPO / "tests" / "ui_format"


def _largest(recordings: Path) -> tuple[str, dict[str, Any]]:
    best: tuple[int, str, dict[str, Any]] | None = None
    for path in sorted(recordings.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("source") != "template":
            continue
        workflow = data["workflow"]
        subs = (workflow.get("definitions") or {}).get("subgraphs") or []
        size = len(workflow.get("nodes") or []) + sum(len(s.get("nodes") or []) for s in subs)
        if best is None or size > best[0]:
            best = (size, path.stem, workflow)
    if best is None:
        raise SystemExit(f"no template recordings in {recordings}")
    return f"{best[1]} ({best[0]} nodes)", best[2]


def _times(fn: Any, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return sorted(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=Path, default=DEFAULT_DIR / "recordings")
    parser.add_argument("--object-info", type=Path, default=DEFAULT_DIR / "object_info.json")
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    object_info = json.loads(args.object_info.read_text(encoding="utf-8"))
    name, workflow = _largest(args.recordings)
    definitions = NodeDefinitions(object_info)
    result = to_api_with_definitions(workflow, definitions)  # warm the per-class cache
    cached = _times(lambda: to_api_with_definitions(workflow, definitions), args.runs)
    cold = _times(lambda: to_api(workflow, object_info), max(args.runs // 4, 5))
    p95 = cached[int(len(cached) * 0.95) - 1]
    print(f"largest template: {name} -> {len(result)} API nodes")
    print(f"cached definitions: median {statistics.median(cached):.2f} ms, "
          f"min {cached[0]:.2f} ms, p95 {p95:.2f} ms over {len(cached)} runs (target < 20 ms)")
    print(f"definitions built per call: median {statistics.median(cold):.2f} ms")


if __name__ == "__main__":
    main()
