"""Outputs through the object store, end to end: the worker, the double, moto's S3 server."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from tests.harness import WorkerHarness
from tests.images import open_image
from tests.s3_server import (
    TEST_ACCESS_KEY_ID,
    TEST_SECRET_ACCESS_KEY,
    moto_server,
    s3_client,
    unique_bucket,
)

GRAPH = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 256, "height": 128, "batch_size": 2, "color": 0x00FF00}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "stored"}},
}


@pytest.fixture(scope="module")
def s3() -> Iterator[tuple[str, str]]:
    with moto_server() as endpoint:
        bucket = unique_bucket("worker")
        s3_client(endpoint).create_bucket(Bucket=bucket)
        yield endpoint, bucket


def _harness(double, endpoint: str, bucket: str, **overrides) -> WorkerHarness:
    return WorkerHarness(
        double,
        bucket_endpoint_url=f"{endpoint}/{bucket}",
        bucket_access_key_id=SecretStr(TEST_ACCESS_KEY_ID),
        bucket_secret_access_key=SecretStr(TEST_SECRET_ACCESS_KEY),
        bucket_region="us-east-1",
        bucket_prefix="outputs",
        **overrides,
    )


def test_s3_delivery_returns_urls_with_the_exact_bytes(comfy_double, s3) -> None:
    endpoint, bucket = s3
    harness = _harness(comfy_double, endpoint, bucket)
    inline = harness.run({"workflow": GRAPH})["images"]
    stored = harness.run({"workflow": GRAPH, "output": {"delivery": "s3"}}, job_id="job-s3")["images"]
    assert [i["type"] for i in stored] == ["s3_url", "s3_url"]
    for item, reference in zip(stored, inline):
        response = httpx.get(item["data"])
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        assert open_image(response.content).tobytes() == open_image(base64.b64decode(reference["data"])).tobytes()
        assert f"/outputs/job-s3/{item['filename']}" in item["data"]


def test_auto_delivery_moves_to_the_store_past_the_limit(comfy_double, s3) -> None:
    endpoint, bucket = s3
    harness = _harness(comfy_double, endpoint, bucket, max_response_bytes=4_200)
    result = harness.run({"workflow": GRAPH})
    assert {i["type"] for i in result["images"]} == {"s3_url"}


def test_too_large_without_a_store(harness: WorkerHarness) -> None:
    harness.settings.max_response_bytes = 4_200
    result = harness.run({"workflow": GRAPH})
    assert result["error_code"] == "output_too_large"
    assert "BUCKET_ENDPOINT_URL" in result["error"]
    assert harness.leftovers() == []


def test_a_refusing_store_is_upload_failed_without_the_secret(comfy_double, s3) -> None:
    endpoint, _ = s3
    harness = _harness(comfy_double, endpoint, "no-such-bucket-here")
    result = harness.run({"workflow": GRAPH, "output": {"delivery": "s3"}})
    assert result["error_code"] == "upload_failed"
    assert "NoSuchBucket" in result["error"]
    assert TEST_SECRET_ACCESS_KEY not in str(result)
    assert "images" in harness.run({"workflow": GRAPH})  # inline jobs still work
