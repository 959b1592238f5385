"""The cache's disk state stays true through crashes, full disks and workers whose locks
cannot see each other (issue 22, defects 8, 9 and 16), against loopback servers."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from comfy_runtime.models.cache import ModelCache
from comfy_runtime.settings import REPO_ROOT
from tests.loopback import serve
from tests.models.test_cache import (
    KB,
    FileRoute,
    _cache,
    _data,
    _ensure,
    _req,
    _Server,
    _visible,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server() -> Iterator[_Server]:
    yield from serve(_Server("127.0.0.1"))

_CRASH_AFTER_RENAME = """
import os, sys, time
from pathlib import Path
from comfy_runtime.models.cache import CacheConfig, ModelCache
from comfy_runtime.models.inputs import ModelRequest
root, url = Path(sys.argv[1]), sys.argv[2]
real = os.replace
def replace(src, dst, *args, **kwargs):
    real(src, dst, *args, **kwargs)
    if str(src).endswith(".part"):
        os._exit(3)  # the power goes the instant the download is in place
os.replace = replace
cache = ModelCache(CacheConfig(root=root, max_bytes=10**7, max_model_bytes=10**7,
                               io_timeout_s=10, allow_private=True))
with cache.lease() as lease:
    lease.ensure([ModelRequest(url=url, folder="loras", name="m.safetensors")],
                 deadline=time.monotonic() + 30)
"""


def test_a_crash_right_after_the_rename_leaves_a_file_the_cache_knows(
    server: _Server, tmp_path: Path
) -> None:
    data = _data(50 * KB)
    server.routes["/m.safetensors"] = FileRoute(data)
    crashed = subprocess.run(
        [sys.executable, "-c", _CRASH_AFTER_RENAME, str(tmp_path), server.url("/m.safetensors")],
        cwd=REPO_ROOT, timeout=40, check=False,
    )
    assert crashed.returncode == 3
    cache = _cache(tmp_path)  # a restarted worker
    cache.sweep()
    [again] = _ensure(cache, _req(server.url("/m.safetensors")))  # not name_conflict
    assert (tmp_path / "loras" / "m.safetensors").read_bytes() == data
    assert not again.downloaded, "the file in place was not recognised"
    assert {f.name for f in cache.describe().files} == {"m.safetensors"}


@contextmanager
def _full_disk() -> Iterator[None]:
    """Every write that would grow a file fails (EFBIG, as ENOSPC would) in this process."""
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)


def test_a_hit_is_served_on_a_full_disk(server: _Server, tmp_path: Path) -> None:
    server.routes["/m.safetensors"] = FileRoute(_data(10 * KB))
    cache = _cache(tmp_path)
    _ensure(cache, _req(server.url("/m.safetensors")))
    with cache.lease() as lease, _full_disk():
        [hit] = lease.ensure([_req(server.url("/m.safetensors"))], deadline=time.monotonic() + 10)
    assert not hit.downloaded and hit.size_bytes == 10 * KB


_NO_SHARED_LOCKS = """
import json, sys, time
from pathlib import Path
import fcntl
from comfy_runtime.models.cache import CacheConfig, ModelCache
from comfy_runtime.models.inputs import ModelRequest
root, base, go, shared = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4]
if shared == "no":
    # This worker's locks are invisible to the other one, as on a network file system that
    # does not share flock locks between machines: every flock succeeds at once.
    fcntl.flock = lambda fd, operation: None
names = [f"n{i}.safetensors" for i in range(6)]
if shared == "no":
    names.reverse()
cache = ModelCache(CacheConfig(root=root, max_bytes=10**8, max_model_bytes=10**8,
                               io_timeout_s=10, allow_private=True))
while not go.exists():
    time.sleep(0.01)
done = []
with cache.lease() as lease:
    for name in names:
        [m] = lease.ensure([ModelRequest(url=f"{base}/{name}", folder="loras", name=name)],
                           deadline=time.monotonic() + 30)
        done.append(m.name)
print(json.dumps(done), flush=True)
"""


def test_two_workers_whose_locks_do_not_see_each_other_keep_the_cache_whole(
    server: _Server, tmp_path: Path
) -> None:
    files = {f"n{i}.safetensors": _data(60 * KB, i) for i in range(6)}
    for name, data in files.items():
        server.routes[f"/{name}"] = FileRoute(data, delay_s=0.1)
    root, go = tmp_path / "cache", tmp_path / "go"
    base = server.url("")
    children = [
        subprocess.Popen([sys.executable, "-c", _NO_SHARED_LOCKS, str(root), base, str(go), shared],
                         cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
        for shared in ("yes", "no")
    ]
    time.sleep(1.0)  # both imported and waiting
    go.touch()
    outputs = [child.communicate(timeout=50)[0] for child in children]
    assert [child.returncode for child in children] == [0, 0]
    assert all(sorted(json.loads(out)) == sorted(files) for out in outputs)
    cache = ModelCache(_cache(root).config)
    listed = {f.name: f.size_bytes for f in cache.describe().files}
    assert listed == {name: len(data) for name, data in files.items()}, "an entry was lost"
    for name, data in files.items():
        assert (root / "loras" / name).read_bytes() == data
    assert sorted(_visible(root)) == sorted(f"loras/{name}" for name in files)
    # At worst a file was downloaded twice: never more often than there are workers.
    assert all(1 <= len(server.gets(f"/{name}")) <= 2 for name in files)
