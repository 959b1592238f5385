"""URL inputs: the address policy, pinning to the checked address, redirects and limits.

Every server here listens on loopback, which the policy refuses. Two ways in:

* `allow_private=True`, for what has nothing to do with the address policy;
* the `public` fixture: a server on 127.0.0.2 that the policy is told to treat as a public
  address (only that one address), reached through a name that exists only in the test's
  resolver. That keeps the whole policy on for redirects to 127.0.0.1 and private names, and
  a download that succeeds proves the connection went to the resolver's answer: real DNS
  knows nothing of `images.example.test`.
"""

from __future__ import annotations

import gzip
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from comfy_runtime.errors import InputFetchFailed, InvalidInput, JobCancelled
from comfy_runtime.fetch import address_policy
from comfy_runtime.fetch.download import FetchedInput, UrlPolicy, fetch_url
from tests.loopback import PUBLIC_IP, judge_public, serve
from tests.slow_server import header_drip_server

pytestmark = pytest.mark.timeout(30)

PUBLIC_NAME = "images.example.test"
FIELD = "images[0].image"
MB = 1024 * 1024

Route = Callable[["_Handler"], None]


# --- test servers ----------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str) -> None:
        super().__init__((host, 0), _Handler)
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.sent = 0
        self.handler_done = threading.Event()
        self.stop = threading.Event()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Host")))
        self.close_connection = True
        route = self.server.routes.get(self.path.split("?", 1)[0])
        if route is None:
            _reply(self, 404, b"not here")
            return
        route(self)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _reply(
    handler: _Handler,
    status: int,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> None:
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _redirect(location: str, status: int = 302) -> Route:
    return lambda h: _reply(h, status, headers={"Location": location})


def _ok(body: bytes = b"PNG-ish bytes", content_type: str = "image/png") -> Route:
    return lambda h: _reply(h, 200, body, {"Content-Type": content_type})


def _stream(total: int, *, chunked: bool, declare_length: bool = False) -> Route:
    """Tries to send `total` bytes and counts what the socket accepted before the client left."""

    def route(h: _Handler) -> None:
        server = h.server
        try:
            h.send_response(200)
            h.send_header("Content-Type", "application/octet-stream")
            if declare_length:
                h.send_header("Content-Length", str(total))
            if chunked:
                h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            piece = b"x" * (64 * 1024)
            while server.sent < total:
                frame = b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
                h.wfile.write(frame)
                server.sent += len(piece)
            if chunked:
                h.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            server.handler_done.set()

    return route


def _drip(interval_s: float, total: int) -> Route:
    def route(h: _Handler) -> None:
        try:
            h.send_response(200)
            h.send_header("Content-Length", str(total))
            h.end_headers()
            for _ in range(total):
                h.wfile.write(b"x")
                h.wfile.flush()
                if h.server.stop.wait(interval_s):
                    return
        except (BrokenPipeError, ConnectionResetError):
            pass

    return route


def _stall(h: _Handler) -> None:
    h.send_response(200)
    h.send_header("Content-Length", "10")
    h.end_headers()
    h.server.stop.wait(5)


@dataclass
class FakeResolver:
    """Answers from a table, records every question, and can change its answers over time."""

    table: dict[str, list[str]]
    later: dict[str, list[str]] = field(default_factory=dict)
    calls: list[tuple[str, int]] = field(default_factory=list)

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        asked_before = sum(1 for name, _ in self.calls if name == host) > 1
        if asked_before and host in self.later:
            return self.later[host]
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host]


def _refusing_resolver(host: str, port: int) -> list[str]:
    raise AssertionError(f"resolver called for {host}:{port}")


@pytest.fixture
def public(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    """A server the address policy treats as public; every other address is judged as usual."""
    judge_public(monkeypatch)
    yield from serve(_Server(PUBLIC_IP))


@pytest.fixture
def local() -> Iterator[_Server]:
    yield from serve(_Server("127.0.0.1"))


def _resolver(extra: dict[str, list[str]] | None = None) -> FakeResolver:
    return FakeResolver({PUBLIC_NAME: [PUBLIC_IP], **(extra or {})})


def _policy(**overrides: object) -> UrlPolicy:
    values: dict[str, object] = {"max_bytes": 1 * MB, "timeout_s": 5.0}
    values.update(overrides)
    return UrlPolicy(**values)  # type: ignore[arg-type]


def _public_url(server: _Server, path: str) -> str:
    return f"http://{PUBLIC_NAME}:{server.port}{path}"


# --- the address policy, before any connection -----------------------------------------------


@pytest.mark.parametrize(
    ("url", "address", "kind"),
    [
        ("http://127.0.0.1:8188/prompt", "127.0.0.1", "loopback"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254", "link-local"),
        ("http://[::1]/", "::1", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "::ffff:7f00:1", "loopback"),
        ("https://10.1.2.3/x.png", "10.1.2.3", "private"),
        ("http://[fd12::1]/", "fd12::1", "unique-local"),
        ("http://[fe80::1]/", "fe80::1", "link-local"),
        ("http://100.64.0.7/", "100.64.0.7", "shared address space"),
        ("http://0.0.0.0:8188/", "0.0.0.0", "unspecified"),
    ],
)
def test_ip_literal_hosts_are_refused_without_a_lookup(url: str, address: str, kind: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        fetch_url(url, _policy(), field=FIELD, resolver=_refusing_resolver)
    err = caught.value
    assert err.code == "invalid_input"
    assert err.message.startswith(f"{FIELD}: ")
    assert kind in err.message
    assert "ALLOW_PRIVATE_URLS" in err.message
    assert err.details[0]["field"] == FIELD
    assert err.details[0]["reason"] == "address_not_allowed"
    assert err.details[0]["address"] == address


def test_decimal_ip_host_is_resolved_and_refused() -> None:
    # The URL parser keeps "2130706433" as a name; glibc's resolver reads it as 127.0.0.1.
    try:
        socket.getaddrinfo("2130706433", 80)
    except socket.gaierror:
        pytest.skip("this libc does not read decimal IPv4 addresses")
    with pytest.raises(InvalidInput) as caught:
        fetch_url("http://2130706433:8188/prompt", _policy(), field=FIELD)
    assert caught.value.details[0]["address"] == "127.0.0.1"
    assert "loopback" in caught.value.message


def test_metadata_name_message() -> None:
    resolver = FakeResolver({"metadata.internal": ["169.254.169.254"]})
    with pytest.raises(InvalidInput) as caught:
        fetch_url("http://metadata.internal/latest/", _policy(), field=FIELD, resolver=resolver)
    assert caught.value.message == (
        "images[0].image: URL host 'metadata.internal' resolves to 169.254.169.254, a "
        "link-local address; private and local addresses are refused (ALLOW_PRIVATE_URLS=true "
        "lifts this for local testing)"
    )
    assert resolver.calls == [("metadata.internal", 80)]


def test_name_resolving_to_a_private_address_is_refused() -> None:
    resolver = FakeResolver({"intranet.example.test": ["10.0.0.1"]})
    with pytest.raises(InvalidInput) as caught:
        fetch_url("https://intranet.example.test/a.png", _policy(), field=FIELD, resolver=resolver)
    assert "'intranet.example.test' resolves to 10.0.0.1, a private address" in caught.value.message
    assert resolver.calls == [("intranet.example.test", 443)]


@pytest.mark.parametrize(
    "answers", [["93.184.216.34", "10.0.0.1"], ["10.0.0.1", "93.184.216.34"]]
)
def test_one_private_address_among_public_ones_refuses_the_name(answers: list[str]) -> None:
    resolver = FakeResolver({"mixed.example.test": answers})
    with pytest.raises(InvalidInput) as caught:
        fetch_url("http://mixed.example.test/", _policy(), field=FIELD, resolver=resolver)
    assert caught.value.details[0]["address"] == "10.0.0.1"


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.1.2.3", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254",
        "100.64.0.1", "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255", "192.0.2.1",
        "::1", "::", "fe80::1", "fc00::1", "fd00:ec2::254", "ff02::1", "::ffff:127.0.0.1",
        "::ffff:10.0.0.1", "::ffff:169.254.169.254", "2002:7f00:1::1", "2002:a9fe:a9fe::",
        "64:ff9b::a9fe:a9fe", "64:ff9b::7f00:1", "::127.0.0.1", "fec0::1",
    ],
)
def test_non_global_addresses_have_a_refusal_reason(address: str) -> None:
    assert address_policy.refusal_reason(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_pass(address: str) -> None:
    assert address_policy.refusal_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "file:///etc/passwd", "gopher://x/"])
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        fetch_url(url, _policy(allow_private=True), field=FIELD, resolver=_refusing_resolver)
    scheme = url.split(":", 1)[0]
    assert f"scheme '{scheme}'" in caught.value.message
    assert caught.value.message.startswith(f"{FIELD}: ")
    assert caught.value.details[0]["reason"] == "scheme_not_allowed"


def test_unknown_host_is_a_fetch_failure() -> None:
    with pytest.raises(InputFetchFailed) as caught:
        fetch_url("http://nowhere.example.test/", _policy(), field=FIELD, resolver=_resolver())
    assert caught.value.code == "input_fetch_failed"
    assert caught.value.details[0]["reason"] == "dns_failed"


# --- connecting to what was checked --------------------------------------------------------


def test_download_connects_to_the_checked_address_with_the_original_host(
    public: _Server,
) -> None:
    public.routes["/cat.png"] = _ok(b"\x89PNG fake", "image/png")
    # A second answer for the same name would be private: a client that looked the name up
    # again to connect would be turned away from the public address it checked.
    resolver = FakeResolver({PUBLIC_NAME: [PUBLIC_IP]}, later={PUBLIC_NAME: ["10.0.0.1"]})
    got = fetch_url(_public_url(public, "/cat.png"), _policy(), field=FIELD, resolver=resolver)
    assert got == FetchedInput(b"\x89PNG fake", "image/png", _public_url(public, "/cat.png"))
    assert resolver.calls == [(PUBLIC_NAME, public.port)]
    assert public.requests == [("/cat.png", f"{PUBLIC_NAME}:{public.port}")]


def test_allow_private_reaches_loopback(local: _Server) -> None:
    local.routes["/page"] = _ok(b"<html></html>", "text/html; charset=utf-8")
    url = f"http://127.0.0.1:{local.port}/page"
    with pytest.raises(InvalidInput):
        fetch_url(url, _policy(), field=FIELD)
    got = fetch_url(url, _policy(allow_private=True), field=FIELD)
    # The content type is reported, not judged: that is the caller's business.
    assert got.content_type == "text/html; charset=utf-8"
    assert got.data == b"<html></html>"


def test_next_address_is_tried_when_connecting_fails(local: _Server) -> None:
    local.routes["/ok"] = _ok()
    # The server listens on 127.0.0.1 only, so 127.0.0.3 on its port refuses the connection.
    resolver = FakeResolver({PUBLIC_NAME: ["127.0.0.3", "127.0.0.1"]})
    got = fetch_url(
        f"http://{PUBLIC_NAME}:{local.port}/ok",
        _policy(allow_private=True),
        field=FIELD,
        resolver=resolver,
    )
    assert got.data == b"PNG-ish bytes"
    assert len(resolver.calls) == 1


@pytest.fixture
def blackhole(local: _Server) -> Iterator[str]:
    """An address on `local`'s port where connecting hangs: a listener whose accept queue is
    full, so the kernel drops new SYNs, as a firewalled or dead host would."""
    address = "127.0.0.4"
    listener = socket.socket()
    listener.bind((address, local.port))
    listener.listen(0)
    queued = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex((address, local.port))
        queued.append(filler)
    time.sleep(0.05)
    try:
        yield address
    finally:
        for sock in (*queued, listener):
            sock.close()


def test_next_address_is_tried_when_connecting_times_out(local: _Server, blackhole: str) -> None:
    local.routes["/ok"] = _ok()
    resolver = FakeResolver({PUBLIC_NAME: [blackhole, "127.0.0.1"]})
    started = time.monotonic()
    got = fetch_url(
        f"http://{PUBLIC_NAME}:{local.port}/ok",
        _policy(allow_private=True, timeout_s=2.0),
        field=FIELD,
        resolver=resolver,
    )
    # The dead address had its share (half of the 2 s), the live one the rest.
    assert got.data == b"PNG-ish bytes"
    assert time.monotonic() - started < 1.9


def test_every_address_timing_out_is_a_timeout_within_the_deadline(
    local: _Server, blackhole: str
) -> None:
    resolver = FakeResolver({PUBLIC_NAME: [blackhole, blackhole]})
    started = time.monotonic()
    with pytest.raises(InputFetchFailed) as caught:
        fetch_url(
            f"http://{PUBLIC_NAME}:{local.port}/ok",
            _policy(allow_private=True, timeout_s=1.0),
            field=FIELD,
            resolver=resolver,
        )
    assert caught.value.details[0]["reason"] == "timeout"
    assert time.monotonic() - started < 1.5


def test_a_slow_lookup_is_bound_by_the_deadline() -> None:
    # getaddrinfo has no timeout of its own; a resolver that hangs must not hold the job.
    release = threading.Event()

    def slow_resolver(host: str, port: int) -> list[str]:
        release.wait(3)
        return [PUBLIC_IP]

    started = time.monotonic()
    try:
        with pytest.raises(InputFetchFailed) as caught:
            fetch_url(
                _public_url_for_port(80, "/x.png"),
                _policy(timeout_s=0.5, allow_private=True),
                field=FIELD,
                resolver=slow_resolver,
            )
    finally:
        release.set()
    elapsed = time.monotonic() - started
    err = caught.value
    assert err.details[0]["reason"] == "timeout"
    assert err.details[0]["host"] == PUBLIC_NAME
    assert "looking up" in err.message and err.message.startswith(f"{FIELD}: ")
    assert elapsed < 1.0


def test_a_lookup_error_is_still_dns_failed_with_a_deadline() -> None:
    def failing_resolver(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    with pytest.raises(InputFetchFailed) as caught:
        fetch_url(_public_url_for_port(80, "/x.png"), _policy(), field=FIELD,
                  resolver=failing_resolver)
    assert caught.value.details[0]["reason"] == "dns_failed"
    assert "Temporary failure" in caught.value.message


def _public_url_for_port(port: int, path: str) -> str:
    return f"http://{PUBLIC_NAME}:{port}{path}"


# --- redirects -------------------------------------------------------------------------------


def test_redirect_is_followed_and_each_hop_resolved_once(public: _Server) -> None:
    public.routes["/old"] = _redirect("/new", 301)
    public.routes["/new"] = _ok(b"moved")
    resolver = _resolver()
    got = fetch_url(_public_url(public, "/old"), _policy(), field=FIELD, resolver=resolver)
    assert got.data == b"moved"
    assert got.final_url == _public_url(public, "/new")
    assert resolver.calls == [(PUBLIC_NAME, public.port)] * 2


@pytest.mark.parametrize(
    ("location", "address"),
    [
        ("http://127.0.0.1:8188/prompt", "127.0.0.1"),
        ("http://[::1]:8188/prompt", "::1"),
        ("http://169.254.169.254/latest/meta-data/iam", "169.254.169.254"),
        ("http://intranet.example.test/admin", "10.0.0.1"),
    ],
)
def test_redirect_to_a_private_address_is_refused(
    public: _Server, location: str, address: str
) -> None:
    public.routes["/go"] = _redirect(location)
    resolver = _resolver({"intranet.example.test": ["10.0.0.1"]})
    with pytest.raises(InvalidInput) as caught:
        fetch_url(_public_url(public, "/go"), _policy(), field=FIELD, resolver=resolver)
    err = caught.value
    assert err.message.startswith(f"{FIELD}: URL redirect target host")
    assert err.details[0]["address"] == address
    assert err.details[0]["via_redirect"] is True


def test_redirect_to_file_is_refused(public: _Server) -> None:
    public.routes["/go"] = _redirect("file:///etc/passwd")
    with pytest.raises(InvalidInput) as caught:
        fetch_url(_public_url(public, "/go"), _policy(), field=FIELD, resolver=_resolver())
    assert "redirect to URL scheme 'file' is not allowed" in caught.value.message


def test_redirects_are_bounded(public: _Server) -> None:
    for n in range(1, 8):
        public.routes[f"/hop{n}"] = _redirect(f"/hop{n - 1}", 307)
    public.routes["/hop0"] = _ok(b"end")
    resolver = _resolver()

    got = fetch_url(_public_url(public, "/hop5"), _policy(), field=FIELD, resolver=resolver)
    assert got.data == b"end"

    public.requests.clear()
    with pytest.raises(InputFetchFailed) as caught:
        fetch_url(_public_url(public, "/hop6"), _policy(), field=FIELD, resolver=resolver)
    assert caught.value.details[0]["reason"] == "too_many_redirects"
    assert "more than 5 times" in caught.value.message
    assert len(public.requests) == 6  # the first request and five redirects, no more


# --- statuses and redaction ------------------------------------------------------------------


def test_404_names_status_and_url_without_credentials(public: _Server) -> None:
    url = (
        f"http://user:hunter2@{PUBLIC_NAME}:{public.port}/missing.png"
        "?X-Amz-Signature=topsecret&X-Amz-Credential=AKIA"
    )
    with pytest.raises(InputFetchFailed) as caught:
        fetch_url(url, _policy(), field=FIELD, resolver=_resolver())
    err = caught.value
    assert err.code == "input_fetch_failed"
    assert "HTTP 404" in err.message
    assert f"{PUBLIC_NAME}:{public.port}/missing.png" in err.message
    assert err.message.startswith(f"{FIELD}: ")
    for secret in ("hunter2", "topsecret", "AKIA"):
        assert secret not in err.message
        assert secret not in str(err.details)
    assert err.details[0]["status"] == 404


def test_server_error_status(public: _Server) -> None:
    public.routes["/boom"] = lambda h: _reply(h, 503, b"later")
    with pytest.raises(InputFetchFailed) as caught:
        fetch_url(_public_url(public, "/boom"), _policy(), field=FIELD, resolver=_resolver())
    assert caught.value.details == [{
        "field": FIELD,
        "reason": "http_status",
        "status": 503,
        "url": _public_url(public, "/boom"),
    }]


def test_connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(InputFetchFailed) as caught:
        fetch_url(
            f"http://127.0.0.1:{closed_port}/", _policy(allow_private=True), field=FIELD
        )
    assert caught.value.details[0]["reason"] == "network_error"
    assert caught.value.message.startswith(f"{FIELD}: downloading http://127.0.0.1:")


# --- size and time ---------------------------------------------------------------------------


def _assert_stopped_near_the_cap(server: _Server, total: int) -> None:
    assert server.handler_done.wait(5), "the server never noticed the client leaving"
    # What the server managed to hand its socket is the cap plus whatever the kernel buffers
    # on loopback (about 4 MiB measured); far from the full body.
    assert server.sent < 16 * MB < total


def test_declared_oversize_is_refused_before_reading(public: _Server) -> None:
    total = 256 * MB
    public.routes["/big"] = _stream(total, chunked=False, declare_length=True)
    with pytest.raises(InputFetchFailed) as caught:
        fetch_url(
            _public_url(public, "/big"), _policy(max_bytes=MB), field=FIELD, resolver=_resolver()
        )
    err = caught.value
    assert "MAX_INPUT_BYTES" in err.message and str(MB) in err.message
    assert err.details[0]["reason"] == "too_large"
    assert err.details[0]["content_length"] == total
    _assert_stopped_near_the_cap(public, total)


def test_undeclared_oversize_stops_reading_at_the_cap(public: _Server) -> None:
    total = 256 * MB
    public.routes["/big"] = _stream(total, chunked=True)
    with pytest.raises(InputFetchFailed) as caught:
        fetch_url(
            _public_url(public, "/big"), _policy(max_bytes=MB), field=FIELD, resolver=_resolver()
        )
    assert caught.value.details[0]["reason"] == "too_large"
    assert caught.value.details[0]["content_length"] is None
    _assert_stopped_near_the_cap(public, total)


def test_body_exactly_at_the_cap_is_accepted(public: _Server) -> None:
    public.routes["/exact"] = _ok(b"y" * 1000)
    got = fetch_url(
        _public_url(public, "/exact"), _policy(max_bytes=1000), field=FIELD, resolver=_resolver()
    )
    assert len(got.data) == 1000


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """10 MiB of zeros, gzipped to about 10 KiB."""
    return gzip.compress(bytes(10 * MB), compresslevel=9)


def test_compressed_bomb_is_refused_without_being_expanded(
    public: _Server, gzip_bomb: bytes
) -> None:
    # The worker asks for identity; a hostile server answers gzip anyway. Decoding it while
    # streaming would put the whole 10 MiB in memory before the 1 MiB cap could say no.
    public.routes["/bomb.png"] = lambda h: _reply(
        h, 200, gzip_bomb, {"Content-Type": "image/png", "Content-Encoding": "gzip"}
    )
    url = _public_url(public, "/bomb.png")
    tracemalloc.start()
    try:
        with pytest.raises(InputFetchFailed) as caught:
            fetch_url(url, _policy(max_bytes=MB), field=FIELD, resolver=_resolver())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    err = caught.value
    assert err.details[0]["reason"] == "encoded_response", err.details
    assert err.details[0]["content_encoding"] == "gzip"
    assert err.message.startswith(f"{FIELD}: ") and "Content-Encoding gzip" in err.message
    assert peak < 3 * MB, f"peak traced memory {peak / MB:.1f} MiB"


@pytest.mark.parametrize("encoding", ["br", "deflate", "zstd", "x-gzip", "identity, gzip"])
def test_every_content_encoding_is_refused(public: _Server, encoding: str) -> None:
    public.routes["/x.png"] = lambda h: _reply(
        h, 200, b"\x89PNG not really compressed", {"Content-Encoding": encoding}
    )
    with pytest.raises(InputFetchFailed) as caught:
        fetch_url(_public_url(public, "/x.png"), _policy(), field=FIELD, resolver=_resolver())
    assert caught.value.details[0]["reason"] == "encoded_response"


@pytest.mark.parametrize("encoding", ["identity", "Identity", ""])
def test_identity_encoding_is_read_as_is(public: _Server, encoding: str) -> None:
    # Raw bytes are what is stored: a body that merely looks compressed is not inflated.
    body = gzip.compress(b"payload")
    public.routes["/x.gz"] = lambda h: _reply(h, 200, body, {"Content-Encoding": encoding})
    got = fetch_url(_public_url(public, "/x.gz"), _policy(), field=FIELD, resolver=_resolver())
    assert got.data == body


def test_slow_drip_hits_the_total_deadline(public: _Server) -> None:
    public.routes["/drip"] = _drip(0.05, 1000)  # 50 s at this pace; every read gets a byte
    started = time.monotonic()
    with pytest.raises(InputFetchFailed) as caught:
        fetch_url(
            _public_url(public, "/drip"), _policy(timeout_s=1.0), field=FIELD, resolver=_resolver()
        )
    elapsed = time.monotonic() - started
    assert caught.value.details[0]["reason"] == "timeout"
    assert "1 s" in caught.value.message and "INPUT_FETCH_TIMEOUT_S" in caught.value.message
    assert 0.9 < elapsed < 2.0


def test_stalled_server_hits_the_deadline(public: _Server) -> None:
    public.routes["/stall"] = _stall
    started = time.monotonic()
    with pytest.raises(InputFetchFailed) as caught:
        fetch_url(
            _public_url(public, "/stall"), _policy(timeout_s=0.5), field=FIELD, resolver=_resolver()
        )
    assert caught.value.details[0]["reason"] == "timeout"
    assert time.monotonic() - started < 1.5


# --- TLS: the socket goes to the IP, the certificate is checked against the name ------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", f"/CN={PUBLIC_NAME}",
            "-addext", f"subjectAltName=DNS:{PUBLIC_NAME}",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def public_tls(
    public: _Server, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> _Server:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    seen: list[str | None] = []

    def record_sni(_sock: ssl.SSLSocket, name: str | None, _ctx: ssl.SSLContext) -> None:
        seen.append(name)

    context.sni_callback = record_sni
    public.socket = context.wrap_socket(public.socket, server_side=True)
    public.sni_seen = seen  # type: ignore[attr-defined]
    # httpx verifies against certifi's bundle; make that bundle our one test certificate.
    import certifi

    monkeypatch.setattr(certifi, "where", lambda: str(cert))
    return public


def test_https_verifies_the_name_while_connecting_to_the_ip(public_tls: _Server) -> None:
    public_tls.routes["/secure.png"] = _ok(b"tls bytes")
    url = f"https://{PUBLIC_NAME}:{public_tls.port}/secure.png"
    got = fetch_url(url, _policy(), field=FIELD, resolver=_resolver())
    assert got.data == b"tls bytes"
    assert public_tls.sni_seen == [PUBLIC_NAME]  # type: ignore[attr-defined]
    assert public_tls.requests == [("/secure.png", f"{PUBLIC_NAME}:{public_tls.port}")]


def test_https_refuses_a_certificate_for_another_name(public_tls: _Server) -> None:
    public_tls.routes["/secure.png"] = _ok(b"tls bytes")
    resolver = _resolver({"other.example.test": [PUBLIC_IP]})
    url = f"https://other.example.test:{public_tls.port}/secure.png"
    with pytest.raises(InputFetchFailed) as caught:
        fetch_url(url, _policy(), field=FIELD, resolver=resolver)
    assert caught.value.details[0]["reason"] == "network_error"
    assert "certificate" in caught.value.message.lower()
    assert public_tls.requests == []


# --- one deadline for connect, headers and body (issue 22, defect 7) --------------------------


def test_slowly_sent_headers_hit_the_total_deadline() -> None:
    # One header byte every 0.2 s: every read gets something, so only a deadline that covers
    # the headers ends it.
    with header_drip_server(0.2) as (base, _):
        started = time.monotonic()
        with pytest.raises(InputFetchFailed) as caught:
            fetch_url(f"{base}/x.png", _policy(timeout_s=1.0, allow_private=True), field=FIELD)
    assert caught.value.details[0]["reason"] == "timeout"
    assert time.monotonic() - started < 2.0


def test_cancelling_stops_a_download_whose_headers_drip() -> None:
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    with header_drip_server(0.2) as (base, _):
        started = time.monotonic()
        with pytest.raises(JobCancelled):
            fetch_url(f"{base}/x.png", _policy(timeout_s=30.0, allow_private=True),
                      field=FIELD, cancel=cancel)
    assert time.monotonic() - started < 1.5


# --- hosts that are not valid names (issue 22, defect 11) -------------------------------------


@pytest.mark.parametrize("url", ["http://xn--zz.example.com/a.png", "https://xn--/a.png",
                                 "http://XN--ZZ.example.com:8080/b.png?sig=1"])
def test_an_invalid_internationalised_host_is_invalid_input(url: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        fetch_url(url, _policy(), field=FIELD, resolver=_refusing_resolver)
    assert caught.value.details[0]["field"] == FIELD
    assert caught.value.details[0]["reason"] == "invalid_url"
