"""The recorded frontend conversions, per frontend version, and how the converter scores on them.

Each set is what one frontend made of editor workflows, with the `/object_info` of the ComfyUI
that served it:

    1.27.10  recordings/*.json (one file each), object_info.json            (ComfyUI 0.3.64)
    1.48.7   recordings-1.48.7/recordings.jsonl.gz (one recording a line),
             recordings-1.49.6/object_info.json (the same ComfyUI 0.33.0)    (ComfyUI 0.33.0)
    1.49.6   recordings-1.49.6/recordings.jsonl.gz (templates 0.11.44), same object_info

A recording is `{"name", "source": "template"|"handmade", "workflow", "frontend_output" |
"frontend_error"}`. `outcome` converts one as that frontend would and says whether the result
is the frontend's (`exact`), a refusal (`refused`), or anything else (`different`: a different
graph, or a graph where the frontend failed), which must never happen.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comfy_runtime.ui_format import ConversionError, NodeDefinitions, to_api_with_definitions
from comfy_runtime.ui_format.values import js_value, same_json

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class RecordedSet:
    frontend: str
    comfyui: str
    recordings: Path  # a folder of *.json, or a .jsonl.gz file
    object_info: Path

    def available(self) -> bool:
        return self.recordings.exists() and self.object_info.is_file()

    def load_object_info(self) -> dict[str, Any]:
        return dict(json.loads(self.object_info.read_text(encoding="utf-8")))

    def items(self) -> Iterator[dict[str, Any]]:
        if self.recordings.is_dir():
            for path in sorted(self.recordings.glob("*.json")):
                if path.name not in ("index.json", "object_info.json"):
                    yield json.loads(path.read_text(encoding="utf-8"))
            return
        with gzip.open(self.recordings, "rt", encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    yield json.loads(line)


SETS = (
    RecordedSet("1.27.10", "0.3.64", HERE / "recordings", HERE / "object_info.json"),
    RecordedSet("1.48.7", "0.33.0", HERE / "recordings-1.48.7" / "recordings.jsonl.gz",
                HERE / "recordings-1.49.6" / "object_info.json"),
    RecordedSet("1.49.6", "0.33.0", HERE / "recordings-1.49.6" / "recordings.jsonl.gz",
                HERE / "recordings-1.49.6" / "object_info.json"),
)


def strip_meta(graph: dict[str, Any]) -> dict[str, Any]:
    return {k: {kk: vv for kk, vv in v.items() if kk != "_meta"} for k, v in graph.items()}


def outcome(recording: dict[str, Any], definitions: NodeDefinitions) -> tuple[str, str]:
    """('exact' | 'refused' | 'different', what happened)."""
    try:
        got = strip_meta(to_api_with_definitions(recording["workflow"], definitions))
    except ConversionError as exc:
        return "refused", str(exc).splitlines()[0][:160]
    if "frontend_output" not in recording:
        return "different", f"converted, but the frontend failed: {recording.get('frontend_error')}"
    # The recording went through JSON from a browser: its numbers already are what JS writes.
    expected = js_value(strip_meta(recording["frontend_output"]))
    if same_json(got, expected):
        return "exact", ""
    differing = sorted(k for k in set(got) | set(expected)
                       if not same_json(got.get(k), expected.get(k)))
    first = differing[0]
    return "different", (f"differs at nodes {differing[:8]}; {first}: ours "
                         f"{json.dumps(got.get(first))[:300]} frontend "
                         f"{json.dumps(expected.get(first))[:300]}")


def score(recorded: RecordedSet) -> dict[str, dict[str, list[tuple[str, str]]]]:
    """{source: {outcome: [(name, detail), ...]}} for one recorded frontend."""
    definitions = NodeDefinitions(recorded.load_object_info(), frontend=recorded.frontend)
    result: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for recording in recorded.items():
        kind, detail = outcome(recording, definitions)
        by_kind = result.setdefault(recording["source"], {"exact": [], "refused": [],
                                                          "different": []})
        by_kind[kind].append((recording["name"], detail))
    return result
