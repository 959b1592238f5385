"""Run a test's own HTTP server on a thread for the length of a fixture, and let one loopback
address stand for a public host."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import TypeVar

import pytest

from comfy_runtime.fetch import address_policy

S = TypeVar("S", bound=ThreadingHTTPServer)
PUBLIC_IP = "127.0.0.2"  # a loopback address the tests' servers bind, judged public


def judge_public(monkeypatch: pytest.MonkeyPatch, address: str = PUBLIC_IP) -> None:
    """The address policy treats `address` as public; every other address is judged as usual."""
    real = address_policy.refusal_reason
    public = ipaddress.ip_address(address)
    monkeypatch.setattr(address_policy, "refusal_reason",
                        lambda candidate: None if candidate == public else real(candidate))


def serve(server: S) -> Iterator[S]:
    """Serve until the fixture ends; handlers see `server.stop` set first, then it closes."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server
    finally:
        stop = getattr(server, "stop", None)
        if isinstance(stop, threading.Event):
            stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
