"""comfy-worker's entrypoint: a RunPod serverless worker that runs ComfyUI workflows.

`python handler.py` launches ComfyUI (or attaches to COMFYUI_URL), waits until it answers,
runs the warmup workflow and only then starts the RunPod SDK: the job loop on the platform,
`test_input.json` locally, or an HTTP API with `--rp_serve_api`. With STREAM_RESULTS=true the
SDK gets `stream_handler`, an async generator, wherever it runs generators (the job loop and
`--rp_serve_api`; its local test mode does not, and gets `handler`).

Importing this module does nothing but define `handler`, so benchmarks and tests can call
`handler.handler(job)` in-process against the ComfyUI at COMFYUI_URL.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from comfy_runtime.settings import Settings

if TYPE_CHECKING:
    from comfy_runtime.worker import Outcome, Worker

log = logging.getLogger("comfy_worker")

_worker: Worker | None = None
_sdk_config: dict[str, Any] | None = None  # what runpod.serverless.start was given


async def handler(job: dict[str, Any]) -> dict[str, Any]:
    """RunPod's handler: one job in, its JSON result out (errors included, never raised)."""
    return await _answer(job, _progress_sink(job))


async def stream_handler(job: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """STREAM_RESULTS=true: the job as a stream of flat items, each with a `type`:
    `progress` reports, one `output` per output as soon as it is delivered (`{"type":
    "output", "images": [item]}`, exactly as in the result), and last `result`: the whole
    answer that `handler` returns, a failure's `error` fields included (the SDK then fails
    the job). See comfy_runtime/outputs/stream.py."""
    from comfy_runtime.outputs.stream import job_stream

    worker = _get_worker()
    items = job_stream(lambda progress, outputs: _answer(job, progress, outputs),
                       max_response_bytes=worker.settings.max_response_bytes,
                       status=_progress_sink(job))
    async for item in items:
        if item["type"] == "result" and item.pop("refresh_worker", False) and _sdk_config:
            # The SDK reads `refresh_worker` from a plain handler's result only; for a
            # generator it reads its config, after the job.
            _sdk_config["refresh_worker"] = True
        yield item


async def _answer(job: dict[str, Any], progress: Any, outputs: Any = None) -> dict[str, Any]:
    from comfy_runtime.errors import InternalError
    from comfy_runtime.worker import Failed

    job_id = job.get("id", "local")
    try:
        outcome: Outcome = await _get_worker().handle(job, progress=progress, outputs=outputs)
    except Exception as exc:  # noqa: BLE001 (the edge: nothing may escape as a raw traceback)
        log.exception("job %s: unexpected %s", job_id, type(exc).__name__)
        outcome = Failed(InternalError(
            f"the worker hit an unexpected {type(exc).__name__}; it is logged with job id "
            f"{job_id} and the worker takes the next job",
            {"exception_type": type(exc).__name__},
        ))
    return respond(outcome)


def respond(outcome: Outcome) -> dict[str, Any]:
    """The one place an outcome becomes the client's JSON.

    Success: the job's output. Failure: `{"error", "error_code", "details"}`, where `error`
    starts with the code because the platform keeps only `error` of a failed job. Either may
    carry the platform's `refresh_worker`.
    """
    from comfy_runtime.contract import ConvertedWorkflow, JobOutput
    from comfy_runtime.worker import Failed

    if isinstance(outcome, Failed):
        error = outcome.error
        body: dict[str, Any] = {
            "error": f"{error.code}: {error.message}",
            "error_code": error.code,
            "details": error.details,
        }
    elif isinstance(outcome.result, (JobOutput, ConvertedWorkflow)):
        body = outcome.result.to_json()
    else:
        body = dict(outcome.result)
    if outcome.refresh_worker:
        body["refresh_worker"] = True
    return body


def _get_worker() -> Worker:
    global _worker
    if _worker is None:
        # In-process use (tests, benchmarks): attach to the ComfyUI at COMFYUI_URL.
        from comfy_runtime.worker import Worker

        _worker = Worker(Settings())
    return _worker


def _progress_sink(job: dict[str, Any]) -> Any:
    # Progress goes to the platform only when there is one to send it to.
    if not os.environ.get("RUNPOD_WEBHOOK_POST_OUTPUT") or "runpod" not in sys.modules:
        return None
    import runpod

    return lambda report: runpod.serverless.progress_update(job, report)


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.worker_log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    # These log request URLs and headers at low levels: presigned URLs carry key ids.
    for noisy in ("botocore", "boto3", "urllib3", "httpx", "httpcore", "websocket"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main() -> None:
    global _worker
    settings = Settings()
    _configure_logging(settings)

    # Launch ComfyUI first: it boots while the heavy modules below are imported.
    from comfy_runtime.comfyui.supervision import launch_comfyui
    from comfy_runtime.errors import JobError

    try:
        process = launch_comfyui(settings)
    except (JobError, ValueError) as exc:
        log.critical("cannot start: %s", getattr(exc, "message", exc))
        sys.exit(1)

    import runpod

    from comfy_runtime.worker import Worker

    _worker = Worker(settings, process)
    # Runs before the child's own stop (registered at launch): the websocket is closed on
    # purpose first, and ComfyUI's exit is not reported as a broken connection.
    atexit.register(_worker.close)
    try:
        waited = _worker.wait_ready()
        log.info("ComfyUI answers at %s after %.1f s", settings.comfyui_base_url, waited)
        asyncio.run(_worker.warmup())
    except JobError as exc:
        log.critical("cannot start: %s", exc.message)
        _worker.close()
        sys.exit(1)

    global _sdk_config
    config: dict[str, Any] = {
        "handler": handler,
        "concurrency_modifier": lambda current: settings.max_concurrency,
    }
    if settings.stream_results and sdk_runs_generators(sys.argv[1:], os.environ):
        config.update(handler=stream_handler, return_aggregate_stream=True)
        _sdk_config = config
    elif settings.stream_results:
        log.info("STREAM_RESULTS: the SDK's local test mode runs no generator; the job's "
                 "result comes whole")
    runpod.serverless.start(config)


def sdk_runs_generators(argv: Sequence[str], environ: Mapping[str, str]) -> bool:
    """Whether the runpod SDK, started with `argv`, runs a generator handler: its API server
    (`--rp_serve_api`, or a realtime port) and its job loop do; its local test mode (a
    `--test_input`, or no job queue to poll) calls the handler once and keeps what it returns."""
    if "--rp_serve_api" in argv or environ.get("RUNPOD_REALTIME_PORT"):
        return True
    local_input = any(arg.split("=", 1)[0] == "--test_input" for arg in argv)
    return bool(environ.get("RUNPOD_WEBHOOK_GET_JOB")) and not local_input


if __name__ == "__main__":
    main()
