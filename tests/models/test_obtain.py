"""One model made present without paying for what was not proven: a later checksum hashed
outside the cache's lock and within the job's time, eviction only for bytes that arrived,
and nothing asked of a server once the job has failed (issue 22, defects 10, 12, 13)."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from comfy_runtime.models.fetch import ModelFetchFailed
from tests.loopback import serve
from tests.models.test_cache import (
    KB,
    FileRoute,
    _cache,
    _ensure,
    _fill,
    _names,
    _req,
    _Server,
)
from tests.slow_server import header_drip_server

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server() -> Iterator[_Server]:
    yield from serve(_Server("127.0.0.1"))

EMPTY_SHA = hashlib.sha256(b"").hexdigest()


def _cached_fifo(server: _Server, tmp_path: Path) -> Path:
    """A cached file (fetched without a checksum) that hashing reads only as fast as the test
    writes into it: the file is swapped for a named pipe of the same (zero) size."""
    server.routes["/empty.safetensors"] = FileRoute(b"")
    _ensure(_cache(tmp_path), _req(server.url("/empty.safetensors")))
    path = tmp_path / "loras" / "m.safetensors"
    path.unlink()
    os.mkfifo(path)
    return path


def test_hashing_a_cached_file_for_a_later_checksum_holds_no_cache_lock(
    server: _Server, tmp_path: Path
) -> None:
    fifo = _cached_fifo(server, tmp_path)
    cache = _cache(tmp_path)
    results: list[object] = []
    asking = threading.Thread(target=lambda: results.extend(
        _ensure(cache, _req(server.url("/empty.safetensors"), sha256=EMPTY_SHA))))
    asking.start()
    time.sleep(0.3)  # it is hashing now, waiting for the pipe's bytes
    described = threading.Thread(target=cache.describe)  # takes the cache's lock
    described.start()
    described.join(timeout=2.0)
    blocked = described.is_alive()
    with open(fifo, "wb"):
        pass  # the end of the "file": hashing completes
    asking.join(timeout=10)
    described.join(timeout=10)
    assert not blocked, "hashing held the cache's lock"
    assert results and not results[0].downloaded  # type: ignore[attr-defined]


def test_hashing_a_cached_file_stops_at_the_jobs_deadline(
    server: _Server, tmp_path: Path
) -> None:
    fifo = _cached_fifo(server, tmp_path)
    cache = _cache(tmp_path)
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            _ensure(cache, _req(server.url("/empty.safetensors"), sha256=EMPTY_SHA),
                    timeout_s=1.0)
        except BaseException as exc:  # expected: the deadline
            errors.append(exc)

    asking = threading.Thread(target=ask)
    started = time.monotonic()
    asking.start()
    with open(fifo, "wb") as pipe:  # one byte every 0.1 s for 5 s
        for _ in range(50):
            if not asking.is_alive():
                break
            try:
                pipe.write(b"x")
                pipe.flush()
            except BrokenPipeError:
                break
            time.sleep(0.1)
    asking.join(timeout=10)
    assert time.monotonic() - started < 2.5, "hashing ran past the job's deadline"
    assert errors and isinstance(errors[0], ModelFetchFailed)
    assert errors[0].details[0]["reason"] == "timeout"


def test_a_declared_length_evicts_nothing_before_bytes_arrive(
    server: _Server, tmp_path: Path
) -> None:
    cache = _cache(tmp_path, max_bytes=300 * KB)
    _fill(server, cache, "a.safetensors", "b.safetensors")
    with header_drip_server(content_length=290 * KB) as (base, asked), \
            pytest.raises(ModelFetchFailed):
        _ensure(cache, _req(f"{base}/liar.safetensors", name="liar.safetensors"))
    assert asked, "the lying server was never asked"
    assert _names(cache) == {"a.safetensors", "b.safetensors"}


def test_after_a_failure_the_queued_fetches_ask_nothing_and_leave_no_lock_files(
    server: _Server, tmp_path: Path
) -> None:
    requests = [_req(server.url(f"/missing{i}.safetensors"), name=f"x{i}.safetensors")
                for i in range(40)]
    with pytest.raises(ModelFetchFailed) as caught:
        _ensure(_cache(tmp_path), *requests)
    assert caught.value.details[0]["status"] == 404
    asked = [s for s in server.seen if s.path.startswith("/missing")]
    assert len(asked) <= 4, f"{len(asked)} requests after the first failure"
    assert list((tmp_path / ".locks").glob("*")) == []
