"""Download a job's URL input without letting the caller aim the worker at its own neighbours.

Whoever can call the endpoint chooses the URL, and the worker sits next to ComfyUI's
unauthenticated API on 127.0.0.1 and, in cloud networks, next to metadata services. So every
hop of a download is:

1. checked for scheme (http and https only);
2. resolved exactly once, within the time the download has left, and refused if *any*
   resolved address is not globally routable (loopback, private, link-local, shared,
   multicast, reserved, and the IPv6 forms that embed one of those);
3. connected to one of the addresses that were just checked, with the original name kept in
   the Host header and in TLS (SNI and certificate verification), so a DNS answer that
   changes between check and connect (rebinding) cannot move the connection. An address
   that refuses or does not answer the connection is passed over for the next one; each gets
   an equal share of the time left, so one dead address cannot use up the deadline.

Redirects are followed by hand so each hop goes through the same three steps. The body is
streamed and counted as it arrives, so an oversized answer is dropped near the limit instead of
being held in memory, and the whole download runs under one deadline. The body is read as the
bytes that crossed the wire: a response with a Content-Encoding (gzip, br, deflate, zstd, ...)
is refused, never decoded, since a few kilobytes of gzip can inflate to gigabytes in memory
before a size check sees them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx

from ..errors import InputFetchFailed, JobCancelled
from .address_policy import IPAddress, Resolver, checked_target, redact_url, system_resolver
from .deadline import DownloadCancelled, new_client

__all__ = ["FetchedInput", "UrlPolicy", "check_hop", "fetch_url", "new_client",
           "pinned_response", "redact_url"]

log = logging.getLogger(__name__)

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Connecting should never need the whole budget; a dead address should fail fast so the next
# resolved address still has time (see `_fetch_one_hop` for the share each address gets).
_MAX_CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class FetchedInput:
    """A downloaded input. `final_url` is the URL after redirects, unredacted: it may carry
    credentials in its query string, so log it through `redact_url`."""

    data: bytes
    content_type: str | None
    final_url: str


@dataclass(frozen=True)
class UrlPolicy:
    """What a download may do. `timeout_s` bounds the whole download, redirects included."""

    max_bytes: int
    timeout_s: float
    allow_private: bool = False
    max_redirects: int = 5

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.timeout_s <= 0 or self.max_redirects < 0:
            raise ValueError(f"UrlPolicy limits must be positive: {self!r}")


default_resolver: Resolver = system_resolver
"""What `fetch_url` asks when it is given no resolver. This is the DNS seam: tests replace it
(pytest's monkeypatch) to map made-up names to chosen addresses, with every check left on."""


def fetch_url(
    url: str,
    policy: UrlPolicy,
    *,
    field: str,
    resolver: Resolver | None = None,
    cancel: threading.Event | None = None,
) -> FetchedInput:
    """Download `url` under `policy`; `field` names the job input in error messages.

    Raises InvalidInput when the URL (or a redirect) is refused by policy, InputFetchFailed
    when the download itself fails (network, timeout, status, size), and JobCancelled soon
    after `cancel` is set, wherever the download waits.
    """
    try:
        return _fetch(url, policy, field=field, resolver=resolver, cancel=cancel)
    except DownloadCancelled:
        raise JobCancelled(f"{field}: download cancelled", {"field": field}) from None


def _fetch(
    url: str, policy: UrlPolicy, *, field: str, resolver: Resolver | None,
    cancel: threading.Event | None,
) -> FetchedInput:
    # Looked up at call time, so a replaced `default_resolver` is seen by every caller.
    resolve = resolver or default_resolver
    deadline = time.monotonic() + policy.timeout_s
    current = url
    with new_client(deadline, cancel) as client:
        for hop in range(policy.max_redirects + 1):
            via_redirect = hop > 0
            target, addresses = checked_target(
                current,
                allow_private=policy.allow_private,
                field=field,
                resolve=resolve,
                via_redirect=via_redirect,
                lookup_timeout_s=_remaining(deadline),
            )
            log.debug(
                "fetching %s for %s (hop %d) via %s", redact_url(current), field, hop, addresses
            )
            outcome = _fetch_one_hop(client, target, addresses, policy, deadline, field=field)
            if isinstance(outcome, FetchedInput):
                return outcome
            current = outcome
    raise InputFetchFailed(
        f"{field}: URL {redact_url(url)} redirected more than {policy.max_redirects} times",
        {
            "field": field,
            "reason": "too_many_redirects",
            "url": redact_url(url),
            "max_redirects": policy.max_redirects,
        },
    )


def check_hop(
    url: str,
    policy: UrlPolicy,
    *,
    field: str,
    resolver: Resolver | None = None,
    via_redirect: bool = False,
    lookup_timeout_s: float | None = None,
) -> tuple[httpx.URL, list[IPAddress]]:
    """Steps 1 and 2 for one hop, for callers that stream the body themselves (model_fetch):
    the parsed URL and the checked addresses to hand to `pinned_response`. Raises what
    `fetch_url` raises for a refused or unresolvable URL."""
    return checked_target(
        url,
        allow_private=policy.allow_private,
        field=field,
        resolve=resolver or default_resolver,
        via_redirect=via_redirect,
        lookup_timeout_s=policy.timeout_s if lookup_timeout_s is None else lookup_timeout_s,
    )


# --- step 3: connect to a checked address and stream the body -----------------------------


def _fetch_one_hop(
    client: httpx.Client,
    url: httpx.URL,
    addresses: list[IPAddress],
    policy: UrlPolicy,
    deadline: float,
    *,
    field: str,
) -> FetchedInput | str:
    """One request to one of `addresses`. Returns the download, or the next URL to try."""
    last_error: httpx.TransportError = httpx.ConnectError("no address to connect to")
    for index, address in enumerate(addresses):
        # An equal share of what is left for each address not yet tried: the last one gets
        # all of it, and a dead first address cannot starve a live second one.
        connect_s = _remaining(deadline) / (len(addresses) - index)
        try:
            with pinned_response(client, url, address, deadline,
                                 connect_s=connect_s) as response:
                return _handle_response(url, response, policy, deadline, field=field)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # Only connecting is retried on the next address: once a server has answered,
            # asking another one could repeat a request the first one acted on.
            log.debug("connect to %s for %s failed: %r", address, redact_url(url), exc)
            last_error = exc
        except httpx.TimeoutException:
            raise _timeout_error(url, policy, field=field) from None
        except httpx.TransportError as exc:
            raise _network_error(url, exc, field=field) from None
    if isinstance(last_error, httpx.TimeoutException):
        raise _timeout_error(url, policy, field=field)
    raise _network_error(url, last_error, field=field)


@contextmanager
def pinned_response(
    client: httpx.Client,
    url: httpx.URL,
    address: IPAddress,
    deadline: float,
    *,
    extra_headers: dict[str, str] | None = None,
    io_timeout_s: float | None = None,
    connect_s: float | None = None,
) -> Iterator[httpx.Response]:
    """GET `url` over a connection to `address` (checked by `check_hop`), streamed.

    `extra_headers` (e.g. Range, Authorization) are added to the pinned Host and identity
    encoding; `io_timeout_s` caps each connect and read below the time left to `deadline`;
    `connect_s` caps connecting further (this address's share of the time left)."""
    remaining = _remaining(deadline)
    if remaining <= 0:
        raise httpx.ReadTimeout("deadline passed before connecting")
    host = url.raw_host.decode("ascii")
    # Each wait is capped here at the I/O timeout; the client's sockets (`deadline.new_client`)
    # end every wait, headers included, at the download's deadline whatever it is given.
    per_read = min(remaining, io_timeout_s) if io_timeout_s is not None else remaining
    connect = min(per_read, connect_s) if connect_s is not None else per_read
    timeout = httpx.Timeout(per_read, connect=min(connect, _MAX_CONNECT_TIMEOUT_S))
    pinned = url.copy_with(host=str(address))
    headers = {
        **(extra_headers or {}),
        "Host": url.netloc.decode("ascii"),
        # Encoded answers are refused (see `_refuse_content_encoding`); asking for identity
        # keeps honest servers from sending one.
        "Accept-Encoding": "identity",
    }
    extensions: dict[str, Any] = {}
    if url.scheme == "https":
        # TLS names and verifies the original host even though the socket goes to the IP.
        extensions["sni_hostname"] = host
    with client.stream(
        "GET", pinned, headers=headers, extensions=extensions, timeout=timeout
    ) as response:
        yield response


def _handle_response(
    url: httpx.URL,
    response: httpx.Response,
    policy: UrlPolicy,
    deadline: float,
    *,
    field: str,
) -> FetchedInput | str:
    status = response.status_code
    if status in _REDIRECT_STATUSES:
        location = response.headers.get("location")
        if not location:
            raise _status_error(url, status, field=field, note="a redirect without a Location")
        next_url = urljoin(str(url), location)
        log.debug("%s redirected (%d) to %s", redact_url(url), status, redact_url(next_url))
        return next_url
    if not 200 <= status < 300:
        raise _status_error(url, status, field=field)
    _refuse_content_encoding(url, response, field=field)

    declared = _declared_length(response)
    if declared is not None and declared > policy.max_bytes:
        raise _too_large_error(url, policy, field=field, declared=declared)

    body = bytearray()
    # iter_raw: the bytes as sent, so the cap counts what is held. (iter_bytes would decode a
    # content encoding, one inflated chunk at a time; refused above, but never decoded here.)
    for chunk in response.iter_raw():
        body += chunk
        if len(body) > policy.max_bytes:
            raise _too_large_error(url, policy, field=field, declared=declared)
        if time.monotonic() > deadline:
            raise _timeout_error(url, policy, field=field)
    log.info(
        "fetched %s for %s: %d bytes, %s",
        redact_url(url),
        field,
        len(body),
        response.headers.get("content-type"),
    )
    return FetchedInput(
        data=bytes(body),
        content_type=response.headers.get("content-type"),
        final_url=str(url),
    )


def _refuse_content_encoding(url: httpx.URL, response: httpx.Response, *, field: str) -> None:
    codings = [
        coding.strip().lower()
        for coding in response.headers.get("content-encoding", "").split(",")
        if coding.strip().lower() not in ("", "identity")
    ]
    if codings:
        encoding = ", ".join(codings)
        raise InputFetchFailed(
            f"{field}: {redact_url(url)} was sent with Content-Encoding {encoding}; inputs are "
            "read only as sent (identity), so serve the file without compression",
            {
                "field": field,
                "reason": "encoded_response",
                "url": redact_url(url),
                "content_encoding": encoding,
            },
        )


def _declared_length(response: httpx.Response) -> int | None:
    try:
        return int(response.headers["content-length"])
    except (KeyError, ValueError):
        return None


def _remaining(deadline: float) -> float:
    return deadline - time.monotonic()


# --- errors ------------------------------------------------------------------------------


def _status_error(
    url: httpx.URL, status: int, *, field: str, note: str | None = None
) -> InputFetchFailed:
    what = note or f"HTTP {status}"
    return InputFetchFailed(
        f"{field}: downloading {redact_url(url)} failed: {what}",
        {"field": field, "reason": "http_status", "status": status, "url": redact_url(url)},
    )


def _too_large_error(
    url: httpx.URL, policy: UrlPolicy, *, field: str, declared: int | None
) -> InputFetchFailed:
    size = f"{declared} bytes" if declared is not None else "the body"
    return InputFetchFailed(
        f"{field}: {redact_url(url)} is larger than MAX_INPUT_BYTES ({policy.max_bytes} bytes);"
        f" {size} refused",
        {
            "field": field,
            "reason": "too_large",
            "url": redact_url(url),
            "max_bytes": policy.max_bytes,
            "content_length": declared,
        },
    )


def _timeout_error(url: httpx.URL, policy: UrlPolicy, *, field: str) -> InputFetchFailed:
    return InputFetchFailed(
        f"{field}: downloading {redact_url(url)} took longer than {policy.timeout_s:g} s "
        "(INPUT_FETCH_TIMEOUT_S)",
        {
            "field": field,
            "reason": "timeout",
            "url": redact_url(url),
            "timeout_s": policy.timeout_s,
        },
    )


def _network_error(url: httpx.URL, exc: Exception, *, field: str) -> InputFetchFailed:
    return InputFetchFailed(
        f"{field}: downloading {redact_url(url)} failed: {type(exc).__name__}: {exc}",
        {
            "field": field,
            "reason": "network_error",
            "url": redact_url(url),
            "error": type(exc).__name__,
        },
    )
