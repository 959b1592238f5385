"""Run a job with live previews: print each step and node, keep the newest preview in a file,
then save the outputs.

    export RUNPOD_API_KEY=...  ENDPOINT_ID=...
    python examples/watch_progress.py job.json --out outputs/            # poll /status
    python examples/watch_progress.py job.json --out outputs/ --stream   # read /stream

The job (any input file client.py takes) is sent with `"previews": true` unless it asks for
previews itself. Without `--stream` the script polls the job's status: while it is
IN_PROGRESS, `output` is the worker's newest progress report, and now and then it carries a
`preview` (a JPEG as base64). With `--stream` (an endpoint with STREAM_RESULTS=true) it reads
`/stream/{id}`: progress items as above, each output as soon as the worker delivered it
(saved at once), then the result. Either way the newest preview is `OUT/preview.jpg`,
rewritten whenever a new one comes, and the outputs end up in `OUT` as client.py saves them.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import time
from pathlib import Path
from typing import Any

from client import FINAL, endpoint_from, load_job_input, raw_status, report, save_outputs
from runpod.endpoint import Job


def show_progress(update: dict[str, Any], out_dir: Path, last: dict[str, Any]) -> None:
    """Print a progress report once per change; write its preview if it is a new one."""
    line = (f"{update.get('percent', 0):5.1f}%  node {update.get('node')} "
            f"({update.get('class_type')})")
    if "step" in update:
        line += f"  step {update['step']}/{update['max']}"
    if update.get("text"):
        line += f"  {update['text']}"
    if update.get("previews_off"):
        line += f"  [no previews: {update['previews_off']}]"
    if line != last.get("line"):
        print(line, flush=True)
        last["line"] = line
    preview = update.get("preview")
    if preview and preview["data_base64"] != last.get("preview"):
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "preview.jpg"
        partial = path.with_suffix(".jpg.part")  # a viewer never sees half a file
        partial.write_bytes(base64.b64decode(preview["data_base64"]))
        partial.replace(path)
        last["preview"] = preview["data_base64"]
        print(f"        preview of node {preview['node_id']} at step {preview['step']}/"
              f"{preview['steps']} -> {path}", flush=True)


def poll(endpoint: Any, job_id: str, args: argparse.Namespace) -> int:
    last: dict[str, Any] = {}
    deadline = time.monotonic() + args.timeout
    while True:
        state = raw_status(endpoint, job_id)
        status = state.get("status")
        if status == "IN_PROGRESS" and isinstance(state.get("output"), dict):
            show_progress(state["output"], args.out, last)
        if status in FINAL:
            break
        if time.monotonic() > deadline:
            print(f"gave up after {args.timeout} s", file=sys.stderr)
            return 1
        time.sleep(args.poll_s)
    if status != "COMPLETED":
        print(f"{status}: {state.get('error')}", file=sys.stderr)
        return 1
    return report(state["output"], args.out)


def stream(endpoint: Any, job_id: str, args: argparse.Namespace) -> int:
    last: dict[str, Any] = {}
    for item in Job(endpoint.endpoint_id, job_id, endpoint.rp_client).stream():
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "progress":
            show_progress(item, args.out, last)
        elif kind == "output":
            # One output, in the shape the result lists it: saved now, not at the end.
            for path in save_outputs({k: v for k, v in item.items() if k != "type"},
                                     args.out / "streamed"):
                print(f"output {path}", flush=True)
        elif kind == "result":
            if "error" in item:
                print(f"FAILED: {item['error']}", file=sys.stderr)
                return 1
            return report({k: v for k, v in item.items() if k != "type"}, args.out)
    state = raw_status(endpoint, job_id)
    print(f"the stream ended without a result ({state.get('status')}: {state.get('error')}); "
          "is STREAM_RESULTS=true set on the endpoint?", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    top = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    top.add_argument("input", type=Path, help="a job input, a request, or tests.json")
    top.add_argument("--test", help="with tests.json: the test's name")
    top.add_argument("--stream", action="store_true", help="read /stream (STREAM_RESULTS)")
    top.add_argument("--out", type=Path, default=Path("outputs"))
    top.add_argument("--poll-s", type=float, default=1.0)
    top.add_argument("--timeout", type=int, default=900)
    top.add_argument("--endpoint-id", default=os.environ.get("ENDPOINT_ID"))
    top.add_argument("--api-key", default=os.environ.get("RUNPOD_API_KEY"))
    top.add_argument("--base-url", default=None)
    args = top.parse_args(argv)

    job_input = load_job_input(args.input, args.test)
    job_input.setdefault("previews", True)
    endpoint = endpoint_from(args)
    job = endpoint.run(job_input)
    print(f"job {job.job_id}", file=sys.stderr)
    return stream(endpoint, job.job_id, args) if args.stream else poll(endpoint, job.job_id, args)


if __name__ == "__main__":
    sys.exit(main())
