"""Call a comfy-worker endpoint with the runpod SDK (`pip install runpod`), save what it returns.

    export RUNPOD_API_KEY=...  ENDPOINT_ID=...
    python examples/client.py runsync test_input.json --out outputs/    # wait for the result
    python examples/client.py run job.json --out outputs/               # queue, poll, save
    python examples/client.py status JOB_ID                             # the raw status
    python examples/client.py stream JOB_ID
    python examples/client.py cancel JOB_ID
    python examples/client.py runsync .runpod/tests.json --test model_free_graph --out outputs/

An input file holds a job input (`{"workflow": ...}`), a request (`{"input": {...}}`, like
test_input.json), or the Hub's tests.json with `--test NAME`. Outputs are written to `--out`:
base64 items decoded, `s3_url` items downloaded, text outputs as `.txt`, and the result
without its file data as `result.json`.

`--base-url` (or the SDK's own RUNPOD_ENDPOINT_BASE_URL) points the SDK elsewhere, e.g. at
examples/local_gateway.py in front of a local `python handler.py --rp_serve_api`.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import requests  # the runpod SDK's HTTP library
import runpod
from runpod.endpoint import Job

FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}
FILE_GROUPS = ("images", "videos", "audio", "files")


# ----------------------------------------------------------------------------- inputs
def load_job_input(path: Path, test_name: str | None = None) -> dict[str, Any]:
    """The job input (what the handler gets as job["input"]) from any of the three shapes."""
    data = json.loads(path.read_text())
    if test_name is not None:
        names = [t.get("name") for t in data.get("tests", [])]
        for test in data.get("tests", []):
            if test.get("name") == test_name:
                return dict(test["input"])
        raise SystemExit(f"{path}: no test named {test_name!r} (have: {', '.join(names)})")
    if isinstance(data, dict) and set(data) <= {"input", "webhook", "policy"} and "input" in data:
        return dict(data["input"])
    return dict(data)


# ---------------------------------------------------------------------------- outputs
def _safe_name(name: str, taken: set[str]) -> str:
    # Names come from the worker: keep the last path part and tame odd characters.
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name) or "output"
    candidate, n = stem, 1
    while candidate in taken:
        base, dot, ext = stem.rpartition(".")
        candidate = f"{base}_{n}.{ext}" if dot else f"{stem}_{n}"
        n += 1
    taken.add(candidate)
    return candidate


def save_outputs(result: dict[str, Any], out_dir: Path, timeout_s: float = 120.0) -> list[Path]:
    """Write every file and text of a comfy-worker result to `out_dir`; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    written: list[Path] = []
    summary = json.loads(json.dumps(result))
    for group in FILE_GROUPS:
        for item, shown in zip(result.get(group) or [], summary.get(group) or [], strict=True):
            path = out_dir / _safe_name(item["filename"], taken)
            if item["type"] == "base64":
                path.write_bytes(base64.b64decode(item["data"]))
                shown["data"] = f"<{path.name}>"
            else:  # s3_url: a presigned URL, valid for BUCKET_URL_EXPIRY_S
                with urllib.request.urlopen(item["data"], timeout=timeout_s) as response:
                    path.write_bytes(response.read())
            written.append(path)
    for text in result.get("text") or []:
        path = out_dir / _safe_name(f"text_{text['node_id']}.txt", taken)
        path.write_text(text["text"])
        written.append(path)
    (out_dir / "result.json").write_text(json.dumps(summary, indent=2))
    return written


def shown(value: Any) -> str:
    """JSON for the terminal: long strings (base64 file data) cut to their length."""

    def cut(item: Any) -> Any:
        if isinstance(item, dict):
            return {k: cut(v) for k, v in item.items()}
        if isinstance(item, list):
            return [cut(v) for v in item]
        if isinstance(item, str) and len(item) > 300:
            return f"<{len(item)} characters>"
        return item

    return json.dumps(cut(value))


def report(result: Any, out_dir: Path | None) -> int:
    if not isinstance(result, dict):
        print(f"no output: {result!r}", file=sys.stderr)
        return 1
    if "error" in result:  # a failed job whose output reached us (status of a /run job)
        print(f"FAILED: {result['error']}", file=sys.stderr)
        return 1
    if out_dir is None:
        print(shown(result))
        return 0
    for path in save_outputs(result, out_dir):
        print(path)
    for warning in result.get("errors") or []:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- the SDK
def endpoint_from(args: argparse.Namespace) -> runpod.Endpoint:
    if args.base_url:
        # RunPodClient reads this module attribute when an Endpoint is made.
        runpod.endpoint_url_base = args.base_url.rstrip("/")
    if not args.endpoint_id:
        raise SystemExit("set ENDPOINT_ID or pass --endpoint-id")
    if not args.api_key:
        raise SystemExit("set RUNPOD_API_KEY or pass --api-key")
    return runpod.Endpoint(args.endpoint_id, api_key=args.api_key)


def raw_status(endpoint: runpod.Endpoint, job_id: str) -> dict[str, Any]:
    # Job.status() returns only the state and Job.output() drops a failed job's `error`;
    # the SDK's own client gets the whole answer.
    return endpoint.rp_client.get(f"{endpoint.endpoint_id}/status/{job_id}")


def cmd_runsync(endpoint: runpod.Endpoint, args: argparse.Namespace) -> int:
    job_input = load_job_input(args.input, args.test)
    result = endpoint.run_sync(job_input, timeout=args.timeout)
    if result is None:
        # run_sync returns a failed job's output, which is empty: the message is in `error`.
        print("the job failed or returned nothing; `run` shows the error", file=sys.stderr)
        return 1
    return report(result, args.out)


def cmd_run(endpoint: runpod.Endpoint, args: argparse.Namespace) -> int:
    job_input = load_job_input(args.input, args.test)
    job = endpoint.run(job_input)
    print(f"job {job.job_id}", file=sys.stderr)
    deadline = time.monotonic() + args.timeout
    while (state := job.status()) not in FINAL:
        if time.monotonic() > deadline:
            job.cancel()
            print(f"gave up after {args.timeout} s; cancel sent", file=sys.stderr)
            return 1
        time.sleep(args.poll_s)
    if state != "COMPLETED":
        # The Job object keeps no error text; ask once more for it.
        error = raw_status(endpoint, job.job_id).get("error")
        print(f"{state}: {error}", file=sys.stderr)
        return 1
    return report(job.output(), args.out)


def cmd_status(endpoint: runpod.Endpoint, args: argparse.Namespace) -> int:
    state = raw_status(endpoint, args.job_id)
    # While a job runs, `output` holds the worker's latest progress report.
    print(shown(state))
    return 0 if state.get("status") != "FAILED" else 1


def cmd_stream(endpoint: runpod.Endpoint, args: argparse.Namespace) -> int:
    job = Job(endpoint.endpoint_id, args.job_id, endpoint.rp_client)
    chunks = 0
    try:
        for chunk in job.stream():
            chunks += 1
            print(shown(chunk))
    except KeyError:
        # Job.stream() expects a `stream` list; an endpoint that refuses to stream sends an
        # `error` instead (the SDK's local API does, for handlers that are not generators).
        answer = endpoint.rp_client.get(f"{endpoint.endpoint_id}/stream/{args.job_id}")
        print(f"no stream: {answer.get('error')}", file=sys.stderr)
        return 1
    if not chunks:
        # This worker returns its result once, at the end (its handler is not a generator).
        print("no partial outputs; use status for progress and the result", file=sys.stderr)
    return 0


def cmd_cancel(endpoint: runpod.Endpoint, args: argparse.Namespace) -> int:
    job = Job(endpoint.endpoint_id, args.job_id, endpoint.rp_client)
    print(shown(job.cancel(timeout=args.timeout)))
    return 0


COMMANDS = {"runsync": cmd_runsync, "run": cmd_run, "status": cmd_status,
            "stream": cmd_stream, "cancel": cmd_cancel}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    top.add_argument("--endpoint-id", default=os.environ.get("ENDPOINT_ID"))
    top.add_argument("--api-key", default=os.environ.get("RUNPOD_API_KEY"))
    top.add_argument("--base-url", default=None,
                     help="API base (default: RUNPOD_ENDPOINT_BASE_URL or RunPod's /v2)")
    commands = top.add_subparsers(dest="command", required=True)
    for name in ("runsync", "run"):
        sub = commands.add_parser(name)
        sub.add_argument("input", type=Path, help="job input, request or tests.json file")
        sub.add_argument("--test", help="with a tests.json: the test whose input to send")
        sub.add_argument("--out", type=Path, help="folder for the outputs (else: print)")
        sub.add_argument("--timeout", type=int, default=900, help="seconds to wait")
        if name == "run":
            sub.add_argument("--poll-s", type=float, default=2.0)
    for name in ("status", "stream", "cancel"):
        sub = commands.add_parser(name)
        sub.add_argument("job_id")
        sub.add_argument("--timeout", type=int, default=10)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    endpoint = endpoint_from(args)
    try:
        return COMMANDS[args.command](endpoint, args)
    except requests.RequestException as exc:
        print(f"request failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
