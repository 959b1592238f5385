"""Delivery: inline below the limit, object store above it, a clear error without one."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator

import httpx
import pytest

from comfy_runtime.errors import InvalidInput, OutputTooLarge
from comfy_runtime.outputs.collect import OutputFileData, OutputRef
from comfy_runtime.contract import OutputFile
from comfy_runtime.outputs.delivery import (
    Delivery,
    KeyNames,
    ResponseBudget,
    deliver,
    deliver_one,
    inline_size,
)
from comfy_runtime.outputs.store import ObjectStore
from comfy_runtime.settings import Settings
from tests.s3_server import (
    TEST_ACCESS_KEY_ID,
    TEST_SECRET_ACCESS_KEY,
    moto_server,
    s3_client,
    unique_bucket,
)


def _files(*sizes: int) -> list[OutputFileData]:
    files = []
    for index, size in enumerate(sizes):
        name = f"out_{index}.png"
        ref = OutputRef(str(index), name, "", "output", "images", False)
        files.append(OutputFileData(ref=ref, filename=name, data=os.urandom(size), mime_type="image/png"))
    return files


@pytest.fixture(scope="module")
def store() -> Iterator[ObjectStore]:
    with moto_server() as endpoint:
        bucket = unique_bucket("delivery")
        s3_client(endpoint).create_bucket(Bucket=bucket)
        settings = Settings(
            bucket_endpoint_url=f"{endpoint}/{bucket}",
            bucket_access_key_id=TEST_ACCESS_KEY_ID,
            bucket_secret_access_key=TEST_SECRET_ACCESS_KEY,
            bucket_region="us-east-1",
        )
        yield ObjectStore(settings)


def test_inline_when_small() -> None:
    files = _files(1000)
    original = files[0].data
    (item,) = deliver(files, delivery="auto", job_id="j", store=None, max_response_bytes=100_000)
    assert item.type == "base64"
    assert base64.b64decode(item.data) == original
    assert files[0].data == b""  # the raw bytes are not kept beside their base64 text


def test_inline_encoding_is_pybase64s(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14: outputs are encoded by the SIMD encoder straight into a str."""
    import comfy_runtime.outputs.delivery as delivery

    calls: list[int] = []
    real = delivery.pybase64.b64encode_as_string

    def spy(data: bytes) -> str:
        calls.append(len(data))
        return real(data)

    monkeypatch.setattr(delivery.pybase64, "b64encode_as_string", spy)
    files = _files(5000)
    original = files[0].data
    (item,) = deliver(files, delivery="auto", job_id="j", store=None, max_response_bytes=100_000)
    assert calls == [5000] and base64.b64decode(item.data) == original


def test_size_estimate_covers_the_encoded_json() -> None:
    files = _files(30_000, 12_345)
    estimate = inline_size(files)
    items = deliver(files, delivery="base64", job_id="j", store=None, max_response_bytes=10**7)
    actual = sum(len(i.model_dump_json()) for i in items)
    assert actual <= estimate < actual + 8192


def test_too_large_without_a_store_says_what_to_configure() -> None:
    with pytest.raises(OutputTooLarge) as caught:
        deliver(_files(60_000), delivery="auto", job_id="j", store=None, max_response_bytes=50_000)
    assert "BUCKET_ENDPOINT_URL" in caught.value.message
    assert caught.value.code == "output_too_large"
    assert caught.value.details[0]["size_bytes"] > 50_000


def test_s3_without_a_store_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="output.delivery"):
        deliver(_files(10), delivery="s3", job_id="j", store=None, max_response_bytes=10**6)


def test_auto_switches_to_the_store_past_the_limit(store: ObjectStore) -> None:
    files = _files(60_000, 70_000)
    originals = [f.data for f in files]
    items = deliver(files, delivery="auto", job_id="job-1", store=store, max_response_bytes=50_000)
    assert [i.type for i in items] == ["s3_url", "s3_url"]
    for original, item in zip(originals, items):
        response = httpx.get(item.data)
        assert response.status_code == 200
        assert response.content == original
        assert response.headers["content-type"] == "image/png"


def test_local_files_are_streamed_not_read_whole(store: ObjectStore, tmp_path) -> None:
    content = os.urandom(200_000)
    path = tmp_path / "big.png"
    path.write_bytes(content)
    ref = OutputRef("9", "big.png", "", "output", "images", False)
    local = OutputFileData(ref=ref, filename="big.png", data=None, path=path, mime_type="image/png")
    assert inline_size([local]) > 4 * 200_000 // 3
    (item,) = deliver([local], delivery="s3", job_id="job-2", store=store, max_response_bytes=10**7)
    assert local.data is None  # never read into memory by us
    assert httpx.get(item.data).content == content
    (inline,) = deliver([local], delivery="base64", job_id="j", store=None, max_response_bytes=10**7)
    assert base64.b64decode(inline.data) == content and local.data is None


def test_base64_refuses_rather_than_overflowing(store: ObjectStore) -> None:
    with pytest.raises(OutputTooLarge):
        deliver(_files(60_000), delivery="base64", job_id="j", store=store, max_response_bytes=50_000)


# --- one at a time, as a streamed job delivers ------------------------------------------------
def _one(file: OutputFileData, budget: ResponseBudget, names: KeyNames, delivery: Delivery,
         store: ObjectStore | None) -> OutputFile:
    return deliver_one(file, delivery=delivery, job_id="job-3", store=store, budget=budget,
                       names=names)


def test_a_streamed_answer_counts_each_inline_output_twice() -> None:
    # 30 KB is 40 KB as base64: once it fits 100 KB, twice (item and result) it fits once
    budget, names = ResponseBudget(100_000, copies=2), KeyNames()
    first, second = _files(30_000, 30_000)
    assert _one(first, budget, names, "base64", None).type == "base64"
    with pytest.raises(OutputTooLarge) as caught:
        _one(second, budget, names, "base64", None)
    assert caught.value.details[0]["size_bytes"] > 100_000, caught.value.details
    assert "BUCKET_ENDPOINT_URL" in caught.value.message


def test_auto_one_at_a_time_sends_to_the_store_what_no_longer_fits(store: ObjectStore) -> None:
    budget, names = ResponseBudget(100_000, copies=2), KeyNames()
    files = _files(30_000, 30_000, 1_000)
    originals = [f.data for f in files]
    items = [_one(f, budget, names, "auto", store) for f in files]
    # per output: inline while the answer has room, the store past it, inline again if small
    assert [i.type for i in items] == ["base64", "s3_url", "base64"]
    assert httpx.get(items[1].data).content == originals[1]
    assert base64.b64decode(items[2].data) == originals[2]


def test_text_outputs_take_their_room_first() -> None:
    budget = ResponseBudget(100_000, copies=2)
    budget.charge(20_000)  # 40 KB of the answer's 100 KB are text, counted twice
    with pytest.raises(OutputTooLarge):
        _one(_files(30_000)[0], budget, KeyNames(), "base64", None)


def test_store_keys_stay_unique_when_claimed_one_by_one() -> None:
    names = KeyNames()
    files = _files(10, 10, 10)
    for file, subfolder in zip(files, ("", "a/b", "")):
        file.filename = "same.png"
        file.ref = OutputRef("1", "same.png", subfolder, "output", "images", False)
    assert [names.claim(f) for f in files] == ["same.png", "a_b_same.png", "1_same.png"]
