"""One wall-clock deadline over every wait of a download: connect, TLS, headers and body.

httpx's timeouts are per operation. A server that sends one header byte every 0.2 s never trips
a read timeout, and httpx reads the headers before it hands back a response, out of reach of
any deadline check the caller makes while reading the body. So the client of a download
(`new_client`) runs on a network backend of our own whose sockets wait in short slices: every
wait (the connect, each TLS handshake step, each read of the status line, the headers and the
body, each write) ends at the deadline at the latest, and the cancel event is looked at
between slices, so a cancelled job stops its download within `SLICE_S` wherever it waits.

Only IP literals are connected to (`AI_NUMERICHOST`): the address policy resolved and checked
the name already, and a lookup here would be a second, unchecked one.
"""

from __future__ import annotations

import errno
import functools
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

import certifi
import httpcore
import httpx

SLICE_S = 0.1
"""The longest single wait: how late a cancellation may be noticed."""


class DownloadCancelled(Exception):
    """The download's cancel event was set while it waited; callers raise JobCancelled."""


@dataclass(frozen=True)
class Watch:
    """The deadline (a time.monotonic() value) and cancel event one download obeys."""

    deadline: float
    cancel: threading.Event | None = None

    def limit(self, timeout: float | None, what: type[Exception]) -> float:
        """The wait allowed now: `timeout` capped at the time left; raises `what` (an httpcore
        timeout) once the deadline has passed."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise what("the download's deadline passed")
        return left if timeout is None else min(timeout, left)

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise DownloadCancelled("cancelled")


class _Stream(httpcore.NetworkStream):
    """A connected socket whose every wait is sliced and bounded by the watch."""

    def __init__(self, sock: socket.socket | ssl.SSLSocket, watch: Watch) -> None:
        self._sock, self._watch = sock, watch

    def _sliced(self, timeout: float | None, what: type[Exception], step: Any,
                sock: socket.socket | None = None) -> Any:
        sock = sock or self._sock
        end = time.monotonic() + self._watch.limit(timeout, what)
        while True:
            self._watch.check_cancel()
            left = end - time.monotonic()
            if left <= 0:
                raise what("timed out")
            sock.settimeout(min(SLICE_S, left))
            try:
                return step()
            except (TimeoutError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                continue  # a slice without progress: look at the clock and the event again
            except OSError as exc:
                if what is httpcore.ReadTimeout:
                    raise httpcore.ReadError(str(exc)) from None
                if what is httpcore.WriteTimeout:
                    raise httpcore.WriteError(str(exc)) from None
                raise httpcore.ConnectError(str(exc)) from None

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return bytes(self._sliced(timeout, httpcore.ReadTimeout,
                                  lambda: self._sock.recv(max_bytes)))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        view = memoryview(buffer)
        while view:
            sent = self._sliced(timeout, httpcore.WriteTimeout,
                                lambda rest=view: self._sock.send(rest))
            view = view[sent:]

    def close(self) -> None:
        self._sock.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        wrapped = ssl_context.wrap_socket(self._sock, server_hostname=server_hostname,
                                          do_handshake_on_connect=False)
        try:
            self._sliced(timeout, httpcore.ConnectTimeout, wrapped.do_handshake, wrapped)
        except BaseException:
            wrapped.close()
            raise
        return _Stream(wrapped, self._watch)

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object" and isinstance(self._sock, ssl.SSLSocket):
            return self._sock  # answers what httpcore asks of it (the ALPN protocol)
        if info == "client_addr":
            return self._sock.getsockname()
        if info == "server_addr":
            return self._sock.getpeername()
        if info == "socket":
            return self._sock
        if info == "is_readable":
            readable, _, _ = select.select([self._sock], [], [], 0)
            return bool(readable)
        return None


class _Backend(httpcore.NetworkBackend):
    def __init__(self, watch: Watch) -> None:
        self._watch = watch

    def connect_tcp(
        self, host: str, port: int, timeout: float | None = None,
        local_address: str | None = None, socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        try:
            [(family, kind, proto, _, address)] = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)[:1]
        except (OSError, ValueError) as exc:
            raise httpcore.ConnectError(f"not an address: {host!r} ({exc})") from None
        sock = socket.socket(family, kind, proto)
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._connect(sock, address, timeout)
        except BaseException:
            sock.close()
            raise
        return _Stream(sock, self._watch)

    def _connect(self, sock: socket.socket, address: Any, timeout: float | None) -> None:
        end = time.monotonic() + self._watch.limit(timeout, httpcore.ConnectTimeout)
        sock.setblocking(False)
        code = sock.connect_ex(address)
        while code in (errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK):
            self._watch.check_cancel()
            left = end - time.monotonic()
            if left <= 0:
                raise httpcore.ConnectTimeout("connecting timed out")
            _, writable, _ = select.select([], [sock], [], min(SLICE_S, left))
            if writable:
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code != 0:
            raise httpcore.ConnectError(errno.errorcode.get(code, str(code)))
        sock.setblocking(True)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not used for downloads")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _Transport(httpx.HTTPTransport):
    def __init__(self, watch: Watch) -> None:
        context = _tls_context(certifi.where())
        super().__init__(verify=context, trust_env=False,
                         limits=httpx.Limits(max_keepalive_connections=0))
        # httpx takes no network backend, so the pool it built is replaced by one with the
        # same TLS context (certificates verified, as httpx's default) and ours.
        self._pool = httpcore.ConnectionPool(
            ssl_context=context, max_keepalive_connections=0, network_backend=_Backend(watch))


@functools.lru_cache(maxsize=4)
def _tls_context(bundle: str) -> ssl.SSLContext:
    """httpx's default context, built once per CA bundle: loading the bundle costs some
    80 ms, which every download used to pay. (Keyed by the bundle's path, so a test that
    points certifi elsewhere gets a context of its own.)"""
    return ssl.create_default_context(cafile=bundle)


def new_client(deadline: float, cancel: threading.Event | None = None) -> httpx.Client:
    """A client whose every wait ends by `deadline` and stops soon after `cancel` is set
    (raising `DownloadCancelled`).

    No kept-alive connections: a pooled connection opened for one name must never carry a
    request for another name on the same address (its TLS session was verified for the
    first). trust_env=False keeps proxy variables from re-routing the connection past the
    address check."""
    return httpx.Client(transport=_Transport(Watch(deadline, cancel)), trust_env=False,
                        follow_redirects=False)
