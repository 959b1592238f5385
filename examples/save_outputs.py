"""Send a local image through a workflow and save what comes back.

    export RUNPOD_API_KEY=...  ENDPOINT_ID=...
    python examples/save_outputs.py photo.png --out outputs/                    # upscale x2
    python examples/save_outputs.py photo.png --workflow upscale --param scale_by=1.5
    python examples/save_outputs.py photo.png --workflow invert --delivery s3
    python examples/save_outputs.py photo.png --workflow my_graph_api.json

`--workflow` is `upscale` (bundled, no model), `invert` (a three-node graph, no model), the
name of another bundled workflow whose `image` parameter takes the file, or an API-format
graph file whose LoadImage node names the file (its base name). The image travels as base64
in the job; outputs come back as base64 or, with an object store configured on the endpoint,
as presigned URLs, and are written to `--out` either way (see client.py's save_outputs).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

from client import endpoint_from, report  # this folder is on sys.path when run as a script

INVERT_GRAPH: dict[str, Any] = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "<file>"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inv"}},
}


def _param_value(text: str) -> Any:
    # `scale_by=1.5` -> 1.5, `method=bicubic` -> "bicubic".
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def build_job_input(image: Path, workflow: str, params: dict[str, Any],
                    delivery: str) -> dict[str, Any]:
    name = image.name
    files = [{"name": name, "image": base64.b64encode(image.read_bytes()).decode()}]
    job: dict[str, Any] = {"images": files, "output": {"delivery": delivery}}
    if workflow == "invert":
        graph = json.loads(json.dumps(INVERT_GRAPH))
        graph["1"]["inputs"]["image"] = name
        job["workflow"] = graph
    elif workflow.endswith(".json"):
        job["workflow"] = json.loads(Path(workflow).read_text())
    else:
        job["workflow"] = workflow
        job["params"] = {"image": name, **params}
    return job


def main(argv: list[str] | None = None) -> int:
    top = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    top.add_argument("image", type=Path)
    top.add_argument("--workflow", default="upscale")
    top.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                     help="a bundled workflow's parameter; repeatable")
    top.add_argument("--delivery", choices=("auto", "base64", "s3"), default="auto")
    top.add_argument("--out", type=Path, default=Path("outputs"))
    top.add_argument("--timeout", type=int, default=900)
    top.add_argument("--endpoint-id", default=os.environ.get("ENDPOINT_ID"))
    top.add_argument("--api-key", default=os.environ.get("RUNPOD_API_KEY"))
    top.add_argument("--base-url", default=None)
    args = top.parse_args(argv)

    params = dict(p.split("=", 1) for p in args.param)
    job_input = build_job_input(args.image, args.workflow,
                                {k: _param_value(v) for k, v in params.items()}, args.delivery)
    endpoint = endpoint_from(args)
    result = endpoint.run_sync(job_input, timeout=args.timeout)
    if result is None:
        print("the job failed; run it with client.py run to see the error", file=sys.stderr)
        return 1
    return report(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
