"""Exact frontend matches over the recordings: comfy_runtime.ui_format vs comfyui-autograph.

    pip install comfyui-autograph==2.3.0   # only for this comparison; the worker never uses it
    python bench/ui_format_autograph.py [--recordings DIR] [--object-info FILE]

A conversion counts as a match when it equals the recorded frontend output exactly (ignoring
`_meta`, ints and floats told apart as JSON writes them). For ui_format a refusal is counted
separately: it is the outcome the issue asks for when a graph cannot be reproduced; for
autograph, an exception is counted as a refusal the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from comfy_runtime.ui_format import NodeDefinitions, to_api_with_definitions  # noqa: E402
from comfy_runtime.ui_format.values import js_value, same_json  # noqa: E402

DEFAULT_DIR = REPO / "tests" / "ui_format"


def _strip(graph: dict[str, Any]) -> dict[str, Any]:
    return {k: {kk: vv for kk, vv in v.items() if kk != "_meta"} for k, v in graph.items()}


def _score(name: str, convert: Any, recordings: list[dict[str, Any]]) -> None:
    match = refused = differ = 0
    for rec in recordings:
        try:
            got = _strip(convert(rec["workflow"]))
        except Exception:  # noqa: BLE001 - any failure to convert is a refusal here
            refused += 1
            continue
        expected = rec.get("frontend_output")
        if expected is not None and same_json(got, js_value(_strip(expected))):
            match += 1
        else:
            differ += 1
    print(f"{name:>12}: {match}/{len(recordings)} exact, {refused} refused, "
          f"{differ} different")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=Path, default=DEFAULT_DIR / "recordings")
    parser.add_argument("--object-info", type=Path, default=DEFAULT_DIR / "object_info.json")
    parser.add_argument("--source", default="template", help="template, handmade or all")
    args = parser.parse_args()
    object_info = json.loads(args.object_info.read_text(encoding="utf-8"))
    recordings = [json.loads(p.read_text(encoding="utf-8"))
                  for p in sorted(args.recordings.glob("*.json")) if p.name != "index.json"]
    recordings = [r for r in recordings if args.source in ("all", r.get("source"))]
    definitions = NodeDefinitions(object_info)

    def ours(workflow: dict[str, Any]) -> dict[str, Any]:
        return to_api_with_definitions(workflow, definitions)

    _score("ui_format", ours, recordings)
    try:
        from autograph.convert import (  # type: ignore[import-not-found]
            convert_workflow_with_errors,
        )
    except ImportError:
        print("  autograph: not installed (pip install comfyui-autograph==2.3.0)")
        return

    def theirs(workflow: dict[str, Any]) -> dict[str, Any]:
        # Its top-level entry point (the one its README shows), with the same /object_info.
        result = convert_workflow_with_errors(json.loads(json.dumps(workflow)),
                                              node_info=object_info)
        if not result.success:
            raise RuntimeError(result.errors[0].message if result.errors else "failed")
        return json.loads(json.dumps(dict(result.data)))

    _score("autograph", theirs, recordings)


if __name__ == "__main__":
    main()
