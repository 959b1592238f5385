"""Record what a real ComfyUI reports for output nodes it caches, when their files are gone.

The worker removes a job's files after the job. A second, identical job then meets ComfyUI's
cache: does ComfyUI run the output node again and write a new file, or report the first job's
file (now deleted)? This script asks a real ComfyUI, for the cases the worker meets:

* `linked_prefix`: SaveImage whose filename_prefix comes from a PrimitiveString node;
* `preview`: PreviewImage (a temp output);
* `literal_prefix`: SaveImage with a literal prefix;
* `marked_preview` and `marked_linked_prefix`: what the worker sends instead: each output node
  carries an extra input naming the job (ComfyUI ignores inputs a node does not declare, but
  they are part of its cache key), and a linked prefix is put behind the job's folder with
  StringConcatenate.

Each case runs twice (the marked ones as two different jobs); between the runs every file the first run reported is deleted (as the
worker's cleanup does) and its history entry removed. Written to `cached_outputs.json`:
per case, both runs' websocket messages, history entries and whether `/view` serves the files.

    python tests/protocol/record_cached_outputs.py --comfyui-url http://127.0.0.1:8188 \\
        --output-dir /path/to/ComfyUI/output --temp-dir /path/to/ComfyUI/temp
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import websocket

_EMPTY = {"class_type": "EmptyImage",
          "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x224466}}
def _marked(job: str) -> dict[str, Any]:
    return {
        "1": _EMPTY,
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0], "comfy_worker_job": job}},
    }


def _marked_linked(job: str) -> dict[str, Any]:
    return {
        "1": _EMPTY,
        "2": {"class_type": "PrimitiveString", "inputs": {"value": "cached_linked"}},
        "job_prefix_3": {"class_type": "StringConcatenate",
                         "inputs": {"string_a": f"{job}/", "string_b": ["2", 0], "delimiter": ""}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0],
                                                     "filename_prefix": ["job_prefix_3", 0],
                                                     "comfy_worker_job": job}},
    }


CASES: dict[str, Any] = {
    "linked_prefix": {
        "1": _EMPTY,
        "2": {"class_type": "PrimitiveString", "inputs": {"value": "cached_linked"}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": ["2", 0]}},
    },
    "preview": {
        "1": _EMPTY,
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    },
    "literal_prefix": {
        "1": _EMPTY,
        "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0],
                                                     "filename_prefix": "cached_literal"}},
    },
    "marked_preview": [_marked("job-a"), _marked("job-b")],
    "marked_linked_prefix": [_marked_linked("job-a"), _marked_linked("job-b")],
}


def _run(http: httpx.Client, ws_url: str, graph: dict[str, Any]) -> dict[str, Any]:
    client_id = uuid.uuid4().hex
    ws = websocket.create_connection(f"{ws_url}?clientId={client_id}", timeout=30)
    try:
        answer = http.post("/prompt", json={"prompt": graph, "client_id": client_id}).json()
        prompt_id = answer["prompt_id"]
        messages = []
        while True:
            raw = ws.recv()
            if isinstance(raw, bytes):
                continue
            message = json.loads(raw)
            messages.append(message)
            data = message.get("data") or {}
            if message["type"] == "executing" and data.get("node") is None \
                    and data.get("prompt_id") == prompt_id:
                break
    finally:
        ws.close()
    history = http.get(f"/history/{prompt_id}").json().get(prompt_id, {})
    files = [item for node in history.get("outputs", {}).values()
             for item in node.get("images", [])]
    for item in files:  # a prefix with a folder makes the subfolder on the way
        item.setdefault("subfolder", "")
    served = {item["filename"]: http.get("/view", params=item).status_code for item in files}
    return {"prompt_id": prompt_id, "ws_messages": messages,
            "ws_types": [m["type"] for m in messages], "history": history,
            "files": files, "view_status": served}


def _delete(files: list[dict[str, Any]], dirs: dict[str, Path]) -> list[str]:
    removed = []
    for item in files:
        path = dirs[item["type"]] / item.get("subfolder", "") / item["filename"]
        if path.exists():
            path.unlink()
            removed.append(f"{item['type']}/{item['filename']}")
    return removed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui-url", default="http://127.0.0.1:8188")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--temp-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("cached_outputs.json"))
    args = parser.parse_args()
    dirs = {"output": args.output_dir, "temp": args.temp_dir}
    ws_url = "ws" + args.comfyui_url.removeprefix("http") + "/ws"
    record: dict[str, Any] = {}
    with httpx.Client(base_url=args.comfyui_url, timeout=60) as http:
        version = http.get("/system_stats").json()["system"]["comfyui_version"]
        for name, graphs in CASES.items():
            graph, again = graphs if isinstance(graphs, list) else (graphs, graphs)
            first = _run(http, ws_url, graph)
            removed = _delete(first["files"], dirs)
            http.post("/history", json={"delete": [first["prompt_id"]]})
            time.sleep(0.2)
            second = _run(http, ws_url, again)
            _delete(second["files"], dirs)
            record[name] = {"graph": graph, "first": first, "removed_between": removed,
                            "second_graph": again, "second": second}
            print(f"{name}: first {[f['filename'] for f in first['files']]} -> second "
                  f"{[f['filename'] for f in second['files']]}, view {second['view_status']}")
    args.out.write_text(json.dumps({"comfyui_version": version, "cases": record}, indent=1) + "\n")


if __name__ == "__main__":
    main()
