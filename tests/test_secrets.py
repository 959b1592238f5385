"""Secrets never leave the worker: not in logs, errors, results, or the info request.

Jobs run through the real worker against the ComfyUI double with every secret set: the
ComfyUI API key in the settings, another one per job, and object-store keys (for a moto S3
server, and for a store that is down). Every log record of every logger is captured at DEBUG,
botocore's and httpx's included, and searched for the secret strings, as are the results.

Three things are deliberately not searched: what the double received (ComfyUI must get the
key in `extra_data`; that is the point of it); the access key *id* inside presigned URLs,
which SigV4 puts there by design (it names the key; the secret key signs and never travels);
and the same id in botocore's DEBUG dumps of signed requests, which handler.py's logging setup
keeps off by holding botocore, urllib3, httpx and websocket at WARNING. The secret key and the
API keys are searched for in every record of every logger at DEBUG.
The worker must also not log a job's input: a marker in the graph and the base64 payload are
searched for in the worker's own records.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.comfy_double import ComfyDouble
from tests.harness import WorkerHarness
from tests.images import png_b64
from tests.s3_server import (
    TEST_ACCESS_KEY_ID,
    TEST_SECRET_ACCESS_KEY,
    moto_server,
    s3_client,
    unique_bucket,
)

pytestmark = pytest.mark.timeout(60)

SETTINGS_KEY = "comfyorg-settings-key-5d1c9a7e0b"
JOB_KEY = "comfyorg-job-key-8f3e2b6a41"
SECRETS = (SETTINGS_KEY, JOB_KEY, TEST_SECRET_ACCESS_KEY)
# Libraries whose DEBUG records dump signed requests (Authorization: ...Credential=<key id>);
# handler.py holds them at WARNING.
REQUEST_DUMPERS = ("botocore", "urllib3")
NOISY = ("botocore", "boto3", "urllib3", "httpx", "httpcore", "websocket")

MARKER = "graph-marker-3c2d9e"
PHOTO_B64 = png_b64(color=(10, 200, 30))
GRAPH = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}, "_meta": {"title": MARKER}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "out"}},
}
JOB = {"workflow": GRAPH, "images": [{"name": "photo.png", "image": PHOTO_B64}]}


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)  # the root logger: every library's records too
    for name in (*NOISY, "comfy_runtime"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield caplog
    for name in (*NOISY, "comfy_runtime"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def _is_request_dump(record: logging.LogRecord) -> bool:
    return record.levelno < logging.WARNING and record.name.split(".")[0] in REQUEST_DUMPERS


def _record_texts(
    caplog: pytest.LogCaptureFixture,
    *,
    worker_only: bool = False,
    shown_in_production: bool = False,
) -> list[str]:
    texts = []
    for record in caplog.records:
        if worker_only and not record.name.startswith("comfy_runtime"):
            continue
        if shown_in_production and _is_request_dump(record):
            continue
        texts.append(record.getMessage())
        texts.append(repr(record.args))
        if record.exc_info:
            texts.append(logging.Formatter().formatException(record.exc_info))
    return texts


def _assert_nothing_leaked(caplog: pytest.LogCaptureFixture, results: list[dict[str, Any]]) -> None:
    logs = "\n".join(_record_texts(caplog))
    assert caplog.records, "nothing was logged: the capture is not working"
    for secret in SECRETS:
        assert secret not in logs, f"a secret was logged: {secret[:6]}..."
    production_logs = "\n".join(_record_texts(caplog, shown_in_production=True))
    assert TEST_ACCESS_KEY_ID not in production_logs, "the access key id was logged"
    dumped = json.dumps(results)
    for secret in SECRETS:
        assert secret not in dumped, f"a secret is in a result: {secret[:6]}..."
    worker_logs = "\n".join(_record_texts(caplog, worker_only=True))
    assert MARKER not in worker_logs, "the job's graph was logged"
    assert PHOTO_B64[20:80] not in worker_logs, "an input's content was logged"
    assert "api_key_comfy_org" not in worker_logs, "extra_data was logged"


def _run_all(harness: WorkerHarness, delivery: str) -> list[dict[str, Any]]:
    double = harness.double
    results = [
        harness.run({**JOB, "output": {"delivery": delivery}, "comfy_org_api_key": JOB_KEY}),
        harness.run({**JOB, "output": {"delivery": "base64"}}),  # the settings' key
        # Failures carrying a per-job key: refused input, refused graph, failed node.
        harness.run(
            {**JOB, "images": [{"name": "photo.png", "image": "%%%"}], "comfy_org_api_key": JOB_KEY}
        ),
        harness.run({**JOB, "comfy_org_api_key": 12345}),
        harness.run(
            {
                "workflow": {"1": {"class_type": "NoSuchNode", "inputs": {}}},
                "comfy_org_api_key": JOB_KEY,
            }
        ),
    ]
    double.faults.execution_error_class = "SaveImage"
    results.append(harness.run({**JOB, "comfy_org_api_key": JOB_KEY}))
    double.faults.execution_error_class = None
    info = harness.run({"info": True})
    # The info request tells a client that a key is set without showing it: the flag must be
    # there and true (both harnesses here set one), and the whole answer goes through the
    # leak checks with the other results.
    assert "error_code" not in info, info
    assert info["comfy_org_api_key_configured"] is True, info
    results.append(info)
    return results


def test_secrets_stay_out_of_logs_and_results_with_a_working_store(
    comfy_double: ComfyDouble, debug_logs: pytest.LogCaptureFixture
) -> None:
    with moto_server() as endpoint:
        bucket = unique_bucket("secrets")
        s3_client(endpoint).create_bucket(Bucket=bucket)
        harness = WorkerHarness(
            comfy_double,
            comfy_org_api_key=SETTINGS_KEY,
            bucket_endpoint_url=f"{endpoint}/{bucket}",
            bucket_access_key_id=TEST_ACCESS_KEY_ID,
            bucket_secret_access_key=TEST_SECRET_ACCESS_KEY,
            bucket_region="us-east-1",
        )
        try:
            results = _run_all(harness, delivery="s3")
        finally:
            harness.worker.close()

    uploaded, inline, bad_base64, bad_key_type, bad_graph, failed = results[:6]
    assert uploaded["images"][0]["type"] == "s3_url", uploaded
    assert inline["images"][0]["type"] == "base64", inline
    assert [r["error_code"] for r in (bad_base64, bad_key_type, bad_graph, failed)] == [
        "invalid_input",
        "invalid_input",
        "workflow_invalid",
        "execution_failed",
    ]
    # The keys did reach ComfyUI, where they belong.
    sent = [(p.get("extra_data") or {}).get("api_key_comfy_org") for p in comfy_double.prompts]
    assert JOB_KEY in sent and SETTINGS_KEY in sent
    for secret in (*SECRETS, TEST_ACCESS_KEY_ID):
        assert secret not in repr(harness.settings)
    _assert_nothing_leaked(debug_logs, results)


def test_secrets_stay_out_of_an_upload_failure(
    comfy_double: ComfyDouble, debug_logs: pytest.LogCaptureFixture
) -> None:
    harness = WorkerHarness(
        comfy_double,
        comfy_org_api_key=SETTINGS_KEY,
        bucket_endpoint_url=f"http://127.0.0.1:{_dead_port()}/bucket",
        bucket_access_key_id=TEST_ACCESS_KEY_ID,
        bucket_secret_access_key=TEST_SECRET_ACCESS_KEY,
        bucket_region="us-east-1",
    )
    try:
        result = harness.run({**JOB, "output": {"delivery": "s3"}, "comfy_org_api_key": JOB_KEY})
    finally:
        harness.worker.close()
    assert result["error_code"] == "upload_failed", result
    assert TEST_ACCESS_KEY_ID not in json.dumps(result)
    _assert_nothing_leaked(debug_logs, [result])
