"""Models on demand: the cache and its downloads, against real HTTP servers on loopback.

Servers listen on 127.0.0.1 with `allow_private=True`, except where the address policy is the
point: then, as in tests/fetch/test_download.py, a server on 127.0.0.2 is treated as public (that one
address only) and reached through names that exist only in the test's resolver, with the
policy otherwise on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from comfy_runtime.errors import InvalidInput, JobCancelled
from comfy_runtime.models.cache import CacheConfig, CachedModel, ModelCache, ModelProgress
from comfy_runtime.models.fetch import ModelFetchFailed, TokenRule
from comfy_runtime.models.inputs import ModelRequest
from comfy_runtime.models.part import BLOCK_BYTES
from comfy_runtime.settings import REPO_ROOT
from comfy_runtime.worker import Failed
from handler import respond
from tests.loopback import PUBLIC_IP, judge_public, serve

pytestmark = pytest.mark.timeout(60)

KB = 1024
SECRET = "hf_SECRET_token_value"

Route = Callable[["_Handler"], None]


# --- a file server with faults ---------------------------------------------------------------


@dataclass
class Seen:
    path: str
    host: str | None
    range: str | None
    authorization: str | None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str) -> None:
        super().__init__((host, 0), _Handler)
        self.routes: dict[str, Route] = {}
        self.seen: list[Seen] = []
        self.stop = threading.Event()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str, host: str | None = None) -> str:
        return f"http://{host or str(self.server_address[0])}:{self.port}{path}"

    def gets(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path.split("?")[0] == path]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        h = self.headers
        self.server.seen.append(
            Seen(self.path, h.get("Host"), h.get("Range"), h.get("Authorization"))
        )
        self.close_connection = True
        route = self.server.routes.get(self.path.split("?", 1)[0])
        if route is None:
            _head(self, 404, {"Content-Length": "0"})
            return
        try:
            route(self)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass


def _head(h: _Handler, status: int, headers: dict[str, str]) -> None:
    h.send_response(status)
    for name, value in headers.items():
        h.send_header(name, value)
    h.end_headers()


@dataclass
class FileRoute:
    """Serves `data`, with Range support unless `ranges=False`. The first `drop` answers stop
    after half the body and close the connection."""

    data: bytes
    ranges: bool = True
    drop: int = 0
    delay_s: float = 0.0  # before the body
    length: bool = True  # False: no Content-Length, the end is the connection's close
    encoding: str | None = None
    answers: int = field(default=0)

    def __call__(self, h: _Handler) -> None:
        self.answers += 1
        start = 0
        wanted = h.headers.get("Range")
        if self.ranges and wanted and wanted.startswith("bytes="):
            start = int(wanted[6:].split("-")[0])
        body = self.data[start:]
        headers = {"ETag": '"v1"', "Content-Type": "application/octet-stream"}
        if self.length:
            headers["Content-Length"] = str(len(body))
        if self.encoding:
            headers["Content-Encoding"] = self.encoding
        status = 200
        if start:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(self.data) - 1}/{len(self.data)}"
        _head(h, status, headers)
        if self.delay_s:
            h.server.stop.wait(self.delay_s)
        if self.answers <= self.drop:
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            return  # the handler closes the connection: the client sees a short body
        h.wfile.write(body)


def _redirect(location: str) -> Route:
    return lambda h: _head(h, 302, {"Location": location, "Content-Length": "0"})


def _drip(h: _Handler) -> None:
    _head(h, 200, {"Content-Length": "100000"})
    while not h.server.stop.wait(0.05):
        h.wfile.write(b"x")
        h.wfile.flush()


def _endless(h: _Handler) -> None:
    """A body of unknown size that never ends; counts what it sent."""
    _head(h, 200, {"Connection": "close"})
    piece = b"y" * (64 * KB)
    sent = 0
    while not h.server.stop.is_set() and sent < 512 * 1024 * KB:
        h.wfile.write(piece)
        sent += len(piece)
    setattr(h.server, "endless_sent", sent)


@pytest.fixture
def server() -> Iterator[_Server]:
    yield from serve(_Server("127.0.0.1"))


@pytest.fixture
def public(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    """A server the address policy treats as public; every other address is judged as usual."""
    judge_public(monkeypatch)
    yield from serve(_Server(PUBLIC_IP))


# --- helpers -----------------------------------------------------------------------------------


def _data(size: int, seed: int = 0) -> bytes:
    # Distinct, incompressible-looking content per seed, so a mixed-up resume shows in the hash.
    block = hashlib.sha256(f"{seed}".encode()).digest() * 2048
    return (block * (size // len(block) + 1))[:size]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cache(root: Path, **overrides: Any) -> ModelCache:
    values: dict[str, Any] = {
        "root": root, "max_bytes": 10 * 1024 * KB, "max_model_bytes": 4 * 1024 * KB,
        "io_timeout_s": 5.0, "allow_private": True,
    }
    values.update(overrides)
    return ModelCache(CacheConfig(**values))


def _req(url: str, name: str = "m.safetensors", folder: str = "loras", **kw: Any) -> ModelRequest:
    return ModelRequest(url=url, folder=folder, name=name, **kw)


def _ensure(cache: ModelCache, *requests: ModelRequest, timeout_s: float = 20.0,
            **kw: Any) -> list[CachedModel]:
    with cache.lease() as lease:
        return lease.ensure(list(requests), deadline=time.monotonic() + timeout_s, **kw)


def _visible(root: Path) -> list[str]:
    """Every file under the model folders, hidden ones (partial downloads) included."""
    return sorted(
        str(p.relative_to(root)) for p in root.glob("*/*") if p.is_file() and p.parent.name[0] != "."
    )


# --- hits and misses --------------------------------------------------------------------------


def test_second_request_is_served_from_the_cache(server: _Server, tmp_path: Path) -> None:
    data = _data(300 * KB)
    server.routes["/a.safetensors"] = FileRoute(data)
    cache = _cache(tmp_path)
    url = server.url("/a.safetensors")
    progress: list[ModelProgress] = []

    first = _ensure(cache, _req(url, sha256=_sha(data)), on_progress=progress.append)
    second = _ensure(cache, _req(url))

    assert len(server.gets("/a.safetensors")) == 1, "the second ensure reached the server"
    assert first[0].downloaded and not second[0].downloaded
    assert first[0].size_bytes == len(data) and first[0].sha256 == _sha(data)
    assert (tmp_path / "loras" / "m.safetensors").read_bytes() == data
    assert _visible(tmp_path) == ["loras/m.safetensors"]
    assert progress and progress[-1].bytes == len(data) and progress[-1].percent == 100.0


def test_same_name_with_another_url_replaces_the_unused_file(
    server: _Server, tmp_path: Path
) -> None:
    server.routes["/v1.safetensors"] = FileRoute(_data(10 * KB, 1))
    server.routes["/v2.safetensors"] = FileRoute(_data(20 * KB, 2))
    cache = _cache(tmp_path)
    _ensure(cache, _req(server.url("/v1.safetensors")))
    [second] = _ensure(cache, _req(server.url("/v2.safetensors")))
    assert second.downloaded
    assert (tmp_path / "loras" / "m.safetensors").read_bytes() == _data(20 * KB, 2)


def test_sha256_identifies_a_hit_from_another_url(server: _Server, tmp_path: Path) -> None:
    data = _data(10 * KB)
    server.routes["/x.safetensors"] = FileRoute(data)
    cache = _cache(tmp_path)
    _ensure(cache, _req(server.url("/x.safetensors"), sha256=_sha(data)))
    [hit] = _ensure(cache, _req(server.url("/mirror/x.safetensors"), sha256=_sha(data)))
    assert not hit.downloaded and not server.gets("/mirror/x.safetensors")


def test_threads_asking_for_one_url_share_one_download(server: _Server, tmp_path: Path) -> None:
    data = _data(200 * KB)
    server.routes["/big.safetensors"] = FileRoute(data, delay_s=0.5)
    cache = _cache(tmp_path)
    barrier = threading.Barrier(3)
    results: list[CachedModel] = []
    errors: list[BaseException] = []

    def job() -> None:
        barrier.wait()
        try:
            results.extend(_ensure(cache, _req(server.url("/big.safetensors"))))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=job) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(server.gets("/big.safetensors")) == 1
    assert sorted(r.downloaded for r in results) == [False, False, True]
    assert (tmp_path / "loras" / "m.safetensors").read_bytes() == data
    assert _visible(tmp_path) == ["loras/m.safetensors"]


_CHILD = """
import json, sys, time
from pathlib import Path
from comfy_runtime.models.cache import CacheConfig, ModelCache
from comfy_runtime.models.inputs import ModelRequest
from comfy_runtime.models.part import BLOCK_BYTES
root, url, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
cache = ModelCache(CacheConfig(root=root, max_bytes=10**8, max_model_bytes=10**8,
                               io_timeout_s=10, allow_private=True))
print("ready", flush=True)
while not go.exists():
    time.sleep(0.01)
with cache.lease() as lease:
    [m] = lease.ensure([ModelRequest(url=url, folder="checkpoints", name="c.safetensors")],
                       deadline=time.monotonic() + 30)
print(json.dumps(m.model_dump()), flush=True)
"""


def test_two_processes_asking_for_one_url_share_one_download(
    server: _Server, tmp_path: Path
) -> None:
    data = _data(500 * KB)
    server.routes["/c.safetensors"] = FileRoute(data, delay_s=1.0)
    root, go = tmp_path / "cache", tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(root), server.url("/c.safetensors"), str(go)],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
        )
        for _ in range(2)
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    go.touch()
    outputs = [child.communicate(timeout=40)[0] for child in children]
    assert [child.returncode for child in children] == [0, 0]
    models = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    assert sorted(m["downloaded"] for m in models) == [False, True]
    assert len(server.gets("/c.safetensors")) == 1
    assert (root / "checkpoints" / "c.safetensors").read_bytes() == data
    assert _visible(root) == ["checkpoints/c.safetensors"]


# --- faults ---------------------------------------------------------------------------------


def test_a_dropped_connection_is_resumed_with_range(server: _Server, tmp_path: Path) -> None:
    data = _data(400 * KB)
    server.routes["/r.safetensors"] = FileRoute(data, drop=1)
    [model] = _ensure(_cache(tmp_path), _req(server.url("/r.safetensors"), sha256=_sha(data)))
    gets = server.gets("/r.safetensors")
    assert len(gets) == 2
    assert gets[0].range is None and gets[1].range == f"bytes={len(data) // 2}-"
    assert model.sha256 == _sha(data)
    assert (tmp_path / "loras" / "m.safetensors").read_bytes() == data


def test_a_body_of_many_blocks_is_stored_whole_and_resumed_at_the_byte(
    server: _Server, tmp_path: Path
) -> None:
    # Past httpx's first chunk, a body of known length is read straight from the connection
    # and written and hashed in blocks (model_part): a drop in the middle of a block keeps
    # every byte received, and the resume asks for exactly the next one.
    data = _data(4 * BLOCK_BYTES + 12345, seed=7)
    server.routes["/big.safetensors"] = FileRoute(data, drop=1)
    cache = _cache(tmp_path, max_bytes=64 * 1024 * KB, max_model_bytes=32 * 1024 * KB)
    [model] = _ensure(cache, _req(server.url("/big.safetensors"), sha256=_sha(data)))
    ranges = [get.range for get in server.gets("/big.safetensors")]
    assert ranges == [None, f"bytes={len(data) // 2}-"]
    assert model.sha256 == _sha(data) and model.size_bytes == len(data)
    assert (tmp_path / "loras" / "m.safetensors").read_bytes() == data


def test_a_body_of_many_blocks_without_a_length_is_stored_whole(
    server: _Server, tmp_path: Path
) -> None:
    data = _data(3 * BLOCK_BYTES + 777, seed=8)
    server.routes["/nolen.safetensors"] = FileRoute(data, length=False)
    cache = _cache(tmp_path, max_bytes=64 * 1024 * KB, max_model_bytes=32 * 1024 * KB)
    [model] = _ensure(cache, _req(server.url("/nolen.safetensors"), sha256=_sha(data)))
    assert model.size_bytes == len(data)
    assert (tmp_path / "loras" / "m.safetensors").read_bytes() == data


def test_a_dropped_connection_without_range_support_starts_over(
    server: _Server, tmp_path: Path
) -> None:
    data = _data(400 * KB)
    server.routes["/n.safetensors"] = FileRoute(data, drop=1, ranges=False)
    # With a checksum, so the hash has to start over with the file.
    [model] = _ensure(_cache(tmp_path), _req(server.url("/n.safetensors"), sha256=_sha(data)))
    assert len(server.gets("/n.safetensors")) == 2
    assert model.sha256 == _sha(data)
    assert (tmp_path / "loras" / "m.safetensors").read_bytes() == data


def test_a_download_that_keeps_failing_leaves_nothing(server: _Server, tmp_path: Path) -> None:
    server.routes["/f.safetensors"] = FileRoute(_data(100 * KB), drop=99, ranges=False)
    cache = _cache(tmp_path)
    with pytest.raises(ModelFetchFailed) as caught:
        _ensure(cache, _req(server.url("/f.safetensors")))
    assert caught.value.details[0]["reason"] in ("network_error", "size_mismatch")
    assert len(server.gets("/f.safetensors")) == 3  # retried
    assert _visible(tmp_path) == [] and not list(tmp_path.glob("*/.*.part"))
    assert cache.describe().files == []


def test_wrong_sha256_is_refused_and_nothing_kept(server: _Server, tmp_path: Path) -> None:
    server.routes["/s.safetensors"] = FileRoute(_data(50 * KB))
    with pytest.raises(ModelFetchFailed) as caught:
        _ensure(_cache(tmp_path), _req(server.url("/s.safetensors"), sha256="0" * 64))
    err = caught.value
    assert err.code == "model_fetch_failed" and err.details[0]["reason"] == "checksum_mismatch"
    assert err.details[0]["field"] == "models[0]" and err.message.startswith("models[0]: ")
    assert _visible(tmp_path) == [] and not list(tmp_path.glob("*/.*.part"))


@pytest.mark.parametrize("limit", ["max_model_bytes", "max_bytes"])
def test_a_declared_size_over_a_limit_is_refused_before_the_body(
    server: _Server, tmp_path: Path, limit: str
) -> None:
    route = FileRoute(_data(300 * KB), delay_s=5.0)
    server.routes["/l.safetensors"] = route
    started = time.monotonic()
    with pytest.raises(ModelFetchFailed) as caught:
        _ensure(_cache(tmp_path, **{limit: 200 * KB}), _req(server.url("/l.safetensors")))
    assert time.monotonic() - started < 2.0, "waited for the body"
    assert caught.value.details[0]["reason"] == "too_large"
    assert caught.value.details[0]["content_length"] == 300 * KB
    assert _visible(tmp_path) == []


def test_an_undeclared_size_is_stopped_past_the_limit(server: _Server, tmp_path: Path) -> None:
    server.routes["/u.safetensors"] = _endless
    with pytest.raises(ModelFetchFailed) as caught:
        _ensure(_cache(tmp_path, max_model_bytes=256 * KB), _req(server.url("/u.safetensors")))
    assert caught.value.details[0]["reason"] == "too_large"
    assert caught.value.details[0]["content_length"] is None
    assert _visible(tmp_path) == [] and not list(tmp_path.glob("*/.*.part"))


def test_a_slow_server_is_stopped_at_the_deadline(server: _Server, tmp_path: Path) -> None:
    server.routes["/slow.safetensors"] = _drip
    started = time.monotonic()
    with pytest.raises(ModelFetchFailed) as caught:
        _ensure(_cache(tmp_path), _req(server.url("/slow.safetensors")), timeout_s=1.0)
    assert 0.9 < time.monotonic() - started < 3.0
    assert caught.value.details[0]["reason"] == "timeout"
    assert _visible(tmp_path) == [] and not list(tmp_path.glob("*/.*.part"))


def test_a_stalled_server_is_cut_by_the_fetch_timeout(server: _Server, tmp_path: Path) -> None:
    server.routes["/stall.safetensors"] = FileRoute(_data(10 * KB), delay_s=10.0)
    started = time.monotonic()
    with pytest.raises(ModelFetchFailed) as caught:
        _ensure(_cache(tmp_path, io_timeout_s=0.3), _req(server.url("/stall.safetensors")))
    assert time.monotonic() - started < 5.0
    assert caught.value.details[0]["reason"] == "timeout"
    assert "MODEL_FETCH_TIMEOUT_S" in caught.value.message


def test_cancel_stops_the_download(server: _Server, tmp_path: Path) -> None:
    server.routes["/slow.safetensors"] = _drip
    cancel = threading.Event()
    during: list[list[str]] = []

    def look_then_cancel() -> None:
        during.append(_visible(tmp_path))  # mid-download: only a hidden .part file
        cancel.set()

    threading.Timer(0.5, look_then_cancel).start()
    with pytest.raises(JobCancelled):
        _ensure(_cache(tmp_path), _req(server.url("/slow.safetensors")), cancel=cancel)
    [seen] = during
    assert len(seen) == 1 and seen[0].startswith("loras/.") and seen[0].endswith(".part")
    assert _visible(tmp_path) == [] and not list(tmp_path.glob("*/.*.part"))


def test_content_encoding_is_refused(server: _Server, tmp_path: Path) -> None:
    server.routes["/z.safetensors"] = FileRoute(_data(10 * KB), encoding="gzip")
    with pytest.raises(ModelFetchFailed) as caught:
        _ensure(_cache(tmp_path), _req(server.url("/z.safetensors")))
    assert caught.value.details[0]["reason"] == "content_encoding"
    assert _visible(tmp_path) == []


def test_http_errors_name_status_and_host_but_not_the_query(
    server: _Server, tmp_path: Path
) -> None:
    with pytest.raises(ModelFetchFailed) as caught:
        _ensure(_cache(tmp_path), _req(server.url("/gone.safetensors?X-Amz-Signature=SIGNED")))
    err = caught.value
    assert err.details[0]["status"] == 404 and err.details[0]["host"] == "127.0.0.1"
    assert "SIGNED" not in json.dumps(respond(Failed(err)))
    assert "HTTP 404" in err.message


# --- address policy and tokens ---------------------------------------------------------------


def _resolver(*names: str) -> Callable[[str, int], list[str]]:
    def resolve(host: str, port: int) -> list[str]:
        if host in names:
            return [PUBLIC_IP]
        raise OSError(f"unknown test name {host}")

    return resolve


def test_a_redirect_to_a_private_address_is_refused(
    public: _Server, server: _Server, tmp_path: Path
) -> None:
    server.routes["/inside.safetensors"] = FileRoute(_data(KB))
    public.routes["/m.safetensors"] = _redirect(server.url("/inside.safetensors"))
    cache = _cache(tmp_path, allow_private=False, resolver=_resolver("models.example.test"))
    with pytest.raises(InvalidInput) as caught:
        _ensure(cache, _req(public.url("/m.safetensors", "models.example.test")))
    assert caught.value.details[0]["reason"] == "address_not_allowed"
    assert caught.value.details[0]["via_redirect"] is True
    assert len(public.gets("/m.safetensors")) == 1
    assert server.seen == [], "the private server was reached"


def test_a_public_address_is_fetched_with_the_policy_on(public: _Server, tmp_path: Path) -> None:
    public.routes["/p.safetensors"] = FileRoute(_data(KB))
    cache = _cache(tmp_path, allow_private=False, resolver=_resolver("models.example.test"))
    [model] = _ensure(cache, _req(public.url("/p.safetensors", "models.example.test")))
    assert model.downloaded


def _hf_rule() -> TokenRule:
    # Plain HTTP only because the test server has no TLS; the real rules require https.
    return TokenRule("huggingface.co", SecretStr(SECRET), require_https=False)


# A subdomain of the token's domain is another host too: the token stays on the job's host.
@pytest.mark.parametrize("cdn", ["cdn-elsewhere.example.test", "cdn-lfs.huggingface.co"])
def test_the_token_goes_to_its_host_and_not_across_a_redirect(
    public: _Server, tmp_path: Path, caplog: pytest.LogCaptureFixture, cdn: str
) -> None:
    caplog.set_level(logging.DEBUG)
    public.routes["/repo/resolve/main/w.safetensors"] = _redirect(
        public.url("/blob/w.safetensors?sig=abc", cdn)
    )
    public.routes["/blob/w.safetensors"] = FileRoute(_data(KB))
    cache = _cache(
        tmp_path, allow_private=False, tokens=(_hf_rule(),),
        resolver=_resolver("huggingface.co", cdn),
    )
    url = public.url("/repo/resolve/main/w.safetensors", "huggingface.co")
    [model] = _ensure(cache, _req(url))
    first, second = public.seen
    assert first.authorization == f"Bearer {SECRET}"
    assert second.host is not None and second.host.startswith(cdn)
    assert second.authorization is None, "the token crossed the redirect"
    assert SECRET not in caplog.text and SECRET not in model.model_dump_json()


def test_a_token_is_not_sent_to_other_hosts(public: _Server, tmp_path: Path) -> None:
    public.routes["/w.safetensors"] = FileRoute(_data(KB))
    cache = _cache(tmp_path, allow_private=False, tokens=(_hf_rule(),),
                   resolver=_resolver("huggingface.co.evil.example.test"))
    _ensure(cache, _req(public.url("/w.safetensors", "huggingface.co.evil.example.test")))
    assert public.seen[0].authorization is None


def test_token_rules_match_the_domain_and_require_https() -> None:
    import httpx

    rule = TokenRule("huggingface.co", SecretStr(SECRET))
    assert rule.applies_to(httpx.URL("https://huggingface.co/x"))
    assert rule.applies_to(httpx.URL("https://cdn-lfs.huggingface.co/x"))
    assert not rule.applies_to(httpx.URL("http://huggingface.co/x"))
    assert not rule.applies_to(httpx.URL("https://nothuggingface.co/x"))
    assert not rule.applies_to(httpx.URL("https://huggingface.co.evil.test/x"))
    assert SECRET not in repr(rule)


def test_settings_give_each_token_its_own_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    from comfy_runtime.settings import Settings

    monkeypatch.setenv("HF_TOKEN", "hf-x")
    monkeypatch.setenv("CIVITAI_TOKEN", "cv-y")
    config = CacheConfig.from_settings(Settings(model_cache_dir=Path("/tmp/mc")))
    assert [(r.domain, r.token.get_secret_value()) for r in config.tokens] == [
        ("huggingface.co", "hf-x"), ("civitai.com", "cv-y")
    ]
    assert all(r.require_https for r in config.tokens)


# --- eviction ----------------------------------------------------------------------------------


def _fill(server: _Server, cache: ModelCache, *names: str, size: int = 100 * KB) -> None:
    for name in names:
        server.routes[f"/{name}"] = FileRoute(_data(size, hash(name) % 1000))
        _ensure(cache, _req(server.url(f"/{name}"), name=name))
        time.sleep(0.01)  # distinct last-use times


def _names(cache: ModelCache) -> set[str]:
    return {f.name for f in cache.describe().files}


def test_least_recently_used_files_are_evicted_within_the_budget(
    server: _Server, tmp_path: Path
) -> None:
    cache = _cache(tmp_path, max_bytes=300 * KB)
    _fill(server, cache, "a.safetensors", "b.safetensors", "c.safetensors")
    _ensure(cache, _req(server.url("/a.safetensors"), name="a.safetensors"))  # a used again
    time.sleep(0.01)
    _fill(server, cache, "d.safetensors")
    assert _names(cache) == {"a.safetensors", "c.safetensors", "d.safetensors"}
    _fill(server, cache, "e.safetensors")
    assert _names(cache) == {"a.safetensors", "d.safetensors", "e.safetensors"}
    info = cache.describe()
    assert info.size_bytes <= 300 * KB and info.max_bytes == 300 * KB
    assert sorted(_visible(tmp_path)) == sorted(f"loras/{n}" for n in _names(cache))


def test_a_file_in_use_is_not_evicted(server: _Server, tmp_path: Path) -> None:
    cache = _cache(tmp_path, max_bytes=200 * KB)
    _fill(server, cache, "old.safetensors")
    server.routes["/new.safetensors"] = FileRoute(_data(100 * KB, 7))
    server.routes["/third.safetensors"] = FileRoute(_data(100 * KB, 8))
    with cache.lease() as running_job:
        running_job.ensure(
            [_req(server.url("/old.safetensors"), name="old.safetensors")],
            deadline=time.monotonic() + 10,
        )
        _fill(server, cache, "new.safetensors")
        _fill(server, cache, "third.safetensors")  # old is least recent, but in use
        assert _names(cache) == {"old.safetensors", "third.safetensors"}
        assert [f.in_use for f in cache.describe().files if f.name == "old.safetensors"] == [True]
        with cache.lease() as other:  # third in use too: no room at all
            other.ensure([_req(server.url("/third.safetensors"), name="third.safetensors")],
                         deadline=time.monotonic() + 10)
            server.routes["/fourth.safetensors"] = FileRoute(_data(100 * KB, 9))
            with pytest.raises(ModelFetchFailed) as caught:
                _fill(server, cache, "fourth.safetensors")
            assert caught.value.details[0]["reason"] == "cache_full"
    _fill(server, cache, "fourth.safetensors")  # released: now old can go
    assert _names(cache) == {"third.safetensors", "fourth.safetensors"}


def test_files_the_cache_did_not_create_are_never_touched(
    server: _Server, tmp_path: Path
) -> None:
    cache = _cache(tmp_path, max_bytes=150 * KB)
    mine = tmp_path / "loras" / "mine.safetensors"
    mine.write_bytes(b"baked")
    server.routes["/mine.safetensors"] = FileRoute(_data(KB))
    with pytest.raises(ModelFetchFailed) as caught:
        _ensure(cache, _req(server.url("/mine.safetensors"), name="mine.safetensors"))
    assert caught.value.details[0]["reason"] == "name_conflict"
    _fill(server, cache, "x.safetensors", "y.safetensors")
    assert mine.read_bytes() == b"baked" and _names(cache) == {"y.safetensors"}


def test_sweep_removes_orphaned_partial_files(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    orphan = tmp_path / "loras" / ".0123456789abcdef0123456789abcdef.5f3c9a.part"
    orphan.write_bytes(b"half")
    live = tmp_path / "loras" / ".0123456789abcdef0123456789abcdef.77aa01.part"
    live.write_bytes(b"growing")  # written to just now: perhaps a download on another machine
    old = time.time() - 60
    os.utime(orphan, (old, old))
    assert cache.sweep() == 1 and not orphan.exists() and live.exists()


def test_an_old_index_is_adopted_and_a_damaged_entry_ignored(
    server: _Server, tmp_path: Path
) -> None:
    (tmp_path / "loras").mkdir()
    (tmp_path / "loras" / "old.safetensors").write_bytes(b"12345")
    (tmp_path / "index.json").write_text(json.dumps({"version": 1, "entries": {
        "loras/old.safetensors": {"url_key": "0" * 64, "size": 5, "last_used": 1.0,
                                  "source": "http://x/old.safetensors"}}}))
    cache = _cache(tmp_path)
    (tmp_path / ".index" / "damaged.json").write_text("{not json")
    cache.sweep()
    assert not (tmp_path / "index.json").exists()
    _fill(server, cache, "k.safetensors")
    assert _names(cache) == {"old.safetensors", "k.safetensors"}


def test_waiting_for_another_download_is_bounded_by_the_deadline(
    server: _Server, tmp_path: Path
) -> None:
    server.routes["/slow.safetensors"] = _drip
    cache = _cache(tmp_path)
    first_error: list[BaseException] = []

    def first() -> None:
        try:
            _ensure(cache, _req(server.url("/slow.safetensors")), timeout_s=3.0)
        except BaseException as exc:  # expected: it times out too
            first_error.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    time.sleep(0.3)  # the first holds the download lock
    started = time.monotonic()
    with pytest.raises(ModelFetchFailed) as caught:
        _ensure(cache, _req(server.url("/slow.safetensors")), timeout_s=0.5)
    assert time.monotonic() - started < 2.0
    assert caught.value.details[0]["reason"] == "timeout"
    assert "another download of loras/m.safetensors" in caught.value.message
    assert len(server.gets("/slow.safetensors")) == 1
    thread.join()
    assert first_error


def test_the_yaml_section_points_comfyui_at_every_cache_folder(tmp_path: Path) -> None:
    import yaml

    from comfy_runtime.models.paths import CACHE_SECTION, render_cache_section

    # What the worker appends to the extra_model_paths.yaml it launches ComfyUI with.
    section = yaml.safe_load(render_cache_section(tmp_path / "a dir"))[CACHE_SECTION]
    assert section.pop("base_path") == str(tmp_path / "a dir")
    assert section and all(name == folder for folder, name in section.items())
    assert all((tmp_path / "a dir" / folder).is_dir() for folder in section)
    assert {"checkpoints", "loras", "text_encoders", "diffusion_models"} <= set(section)


def test_cancelling_the_async_ensure_stops_the_download(server: _Server, tmp_path: Path) -> None:
    import asyncio

    server.routes["/slow.safetensors"] = _drip
    cache = _cache(tmp_path)

    async def job() -> None:
        with cache.lease() as lease:
            task = asyncio.ensure_future(lease.ensure_async(
                [_req(server.url("/slow.safetensors"))], deadline=time.monotonic() + 20
            ))
            await asyncio.sleep(0.5)
            assert len(_visible(tmp_path)) == 1  # the .part file
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # By the time the cancellation arrives, the download has cleaned up.
            assert _visible(tmp_path) == []

    started = time.monotonic()
    asyncio.run(job())
    assert time.monotonic() - started < 3.0


def test_the_async_ensure_returns_the_models(server: _Server, tmp_path: Path) -> None:
    import asyncio

    server.routes["/a.safetensors"] = FileRoute(_data(KB))
    cache = _cache(tmp_path)

    async def job() -> list[CachedModel]:
        with cache.lease() as lease:
            return await lease.ensure_async(
                [_req(server.url("/a.safetensors"))], deadline=time.monotonic() + 20
            )

    [model] = asyncio.run(job())
    assert model.downloaded and model.size_bytes == KB


def test_several_models_download_at_once(server: _Server, tmp_path: Path) -> None:
    for name in ("p1", "p2", "p3"):
        server.routes[f"/{name}.safetensors"] = FileRoute(_data(10 * KB), delay_s=1.0)
    requests = [_req(server.url(f"/{n}.safetensors"), name=f"{n}.safetensors")
                for n in ("p1", "p2", "p3")]
    started = time.monotonic()
    models = _ensure(_cache(tmp_path), *requests)
    assert time.monotonic() - started < 2.5, "downloaded one after the other"
    assert [m.name for m in models] == ["p1.safetensors", "p2.safetensors", "p3.safetensors"]


def test_one_failure_stops_the_other_downloads(server: _Server, tmp_path: Path) -> None:
    server.routes["/slow.safetensors"] = _drip
    requests = [_req(server.url("/slow.safetensors"), name="slow.safetensors"),
                _req(server.url("/missing.safetensors"), name="missing.safetensors")]
    started = time.monotonic()
    with pytest.raises(ModelFetchFailed) as caught:
        _ensure(_cache(tmp_path), *requests)
    assert time.monotonic() - started < 3.0
    assert caught.value.details[0]["field"] == "models[1]"
    assert caught.value.details[0]["status"] == 404
    assert _visible(tmp_path) == [] and not list(tmp_path.glob("*/.*.part"))


def test_a_checksum_asked_for_later_is_checked_against_the_cached_file(
    server: _Server, tmp_path: Path
) -> None:
    data = _data(300 * KB)
    server.routes["/late.safetensors"] = FileRoute(data)
    cache = _cache(tmp_path)
    [first] = _ensure(cache, _req(server.url("/late.safetensors")))
    assert first.downloaded and first.sha256 is None  # nothing asked it to be hashed
    [again] = _ensure(cache, _req(server.url("/late.safetensors"), sha256=_sha(data)))
    assert (again.downloaded, again.sha256) == (False, _sha(data))
    assert len(server.gets("/late.safetensors")) == 1
    with pytest.raises(ModelFetchFailed, match="checksum|sha256"):
        # Another checksum does not match the cached file: it is fetched again, and the
        # server's bytes do not match it either.
        _ensure(cache, _req(server.url("/late.safetensors"), sha256="1" * 64))
