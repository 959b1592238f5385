"""One model download against loopback servers that cost time: slowly sent headers end at the
job's deadline, and a cancelled job stops waiting for them (issue 22, defect 7)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from comfy_runtime.errors import JobCancelled
from comfy_runtime.models.fetch import Download, FetchLimits, ModelFetchFailed
from tests.slow_server import header_drip_server

pytestmark = pytest.mark.timeout(30)


def _download(url: str, part: Path, timeout_s: float,
              cancel: threading.Event | None = None) -> Download:
    return Download(url=url, part_path=part, deadline=time.monotonic() + timeout_s,
                    limits=FetchLimits(max_bytes=10**6, io_timeout_s=5.0, allow_private=True),
                    field="models[0]", cancel=cancel)


def test_slowly_sent_headers_end_at_the_jobs_deadline(tmp_path: Path) -> None:
    with header_drip_server(0.2) as (base, _):
        started = time.monotonic()
        with pytest.raises(ModelFetchFailed) as caught:
            _download(f"{base}/m.safetensors", tmp_path / "m.part", 1.0).run()
    assert caught.value.details[0]["reason"] == "timeout"
    assert time.monotonic() - started < 2.5
    assert not (tmp_path / "m.part").exists()


def test_a_cancelled_job_stops_waiting_for_slow_headers(tmp_path: Path) -> None:
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    with header_drip_server(0.2) as (base, _):
        started = time.monotonic()
        with pytest.raises(JobCancelled):
            _download(f"{base}/m.safetensors", tmp_path / "m.part", 30.0, cancel).run()
    assert time.monotonic() - started < 1.5
    assert not (tmp_path / "m.part").exists()
