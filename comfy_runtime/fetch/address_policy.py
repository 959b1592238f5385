"""Which URLs the worker may fetch: http(s) to globally routable addresses only.

Loopback, private, link-local (cloud metadata lives at 169.254.169.254), shared, multicast,
reserved and unspecified addresses are refused, and so are IPv6 addresses that carry one of
those inside (IPv4-mapped, 6to4, NAT64). `checked_target` judges one URL (a hop): its scheme,
then every address its host resolves to, resolved once; `url_fetch` asks it on every hop and
connects only to the addresses it returned. The lookup runs in a thread of its own and is
waited for at most the time the download has left: `getaddrinfo` has no timeout, and a slow
DNS server must not hold a job past its deadline.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as wait_for

import httpx

from ..errors import InputFetchFailed, InvalidInput

Resolver = Callable[[str, int], list[str]]
"""(host, port) -> the IP addresses, as strings, that a connection to host may use."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_ALLOWED_SCHEMES = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PRIVATE_HINT = (
    "private and local addresses are refused (ALLOW_PRIVATE_URLS=true lifts this for local "
    "testing)"
)
_SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
_NAT64_PREFIXES = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
)


def system_resolver(host: str, port: int) -> list[str]:
    """The system's answer for `host` (getaddrinfo), each address once, in its order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in seen:
            seen.append(address)
    return seen


def parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def refusal_reason(address: IPAddress) -> str | None:
    """Why `address` must not be reached from the worker ("a loopback address"), or None.

    Addresses that carry an IPv4 address inside an IPv6 one are judged by what they carry,
    since the network may well deliver them there.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = refusal_reason(embedded)
            if inner is not None:
                return f"{inner} (embedded in an IPv6 address)"
            if address.ipv4_mapped is not None:
                return None
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED_ADDRESS_SPACE:
        return "a shared address space (carrier-grade NAT) address"
    if isinstance(address, ipaddress.IPv6Address) and address in _UNIQUE_LOCAL:
        return "a unique-local address"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "a site-local address"
    if not address.is_global:
        # The catch-all: documentation, benchmarking and protocol ranges, and whatever
        # future Python versions add to their special-purpose tables.
        return "a non-global address"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in prefix for prefix in _NAT64_PREFIXES):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def redact_url(url: str | httpx.URL) -> str:
    """The URL without userinfo, query or fragment, which is where presigned URLs and
    basic-auth URLs keep their credentials."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        text = f"{parsed.scheme}://{parsed.netloc.decode('ascii')}{parsed.path}"
        if parsed.query:
            text += "?<redacted>"
        return text
    except (httpx.InvalidURL, UnicodeDecodeError, TypeError):
        # An unparsable URL cannot be redacted piecewise; show only its harmless prefix.
        return str(url).split("?", 1)[0].split("#", 1)[0].rsplit("@", 1)[-1][:200]


# --- a URL: its scheme, then every address its host resolves to ---------------------------
def checked_target(
    url: str,
    *,
    allow_private: bool,
    field: str,
    resolve: Resolver,
    via_redirect: bool,
    lookup_timeout_s: float,
) -> tuple[httpx.URL, list[IPAddress]]:
    """The parsed URL and the addresses it may be fetched from, all of them checked.

    Raises InvalidInput when the URL or an address is refused by policy, InputFetchFailed
    when its host cannot be resolved, or not within `lookup_timeout_s` (reason `timeout`).
    """
    target = _parse_and_check_scheme(url, field=field, via_redirect=via_redirect)
    lookup = _Lookup(resolve, lookup_timeout_s, field)
    addresses = _resolve_and_check(target, allow_private, lookup, via_redirect=via_redirect)
    return target, addresses


def _parse_and_check_scheme(url: str, *, field: str, via_redirect: bool) -> httpx.URL:
    where = "redirect to " if via_redirect else ""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise InvalidInput(
            f"{field}: {where}invalid URL ({exc})",
            {"field": field, "reason": "invalid_url", "url": redact_url(url)},
        ) from None
    if parsed.scheme not in _ALLOWED_SCHEMES:
        scheme = parsed.scheme or "(none)"
        raise InvalidInput(
            f"{field}: {where}URL scheme '{scheme}' is not allowed; only http and https URLs "
            "are fetched",
            {
                "field": field,
                "reason": "scheme_not_allowed",
                "scheme": scheme,
                "url": redact_url(url),
                "via_redirect": via_redirect,
            },
        )
    try:
        # httpx decodes an internationalised name (xn--...) only when asked for `host`.
        host = parsed.host
    except ValueError as exc:  # idna's errors are UnicodeErrors, which are ValueErrors
        raise InvalidInput(
            f"{field}: {where}URL {redact_url(url)} has a host that is not a valid "
            f"internationalised domain name ({exc})",
            {"field": field, "reason": "invalid_url", "url": redact_url(url)},
        ) from None
    if not host:
        raise InvalidInput(
            f"{field}: {where}URL {redact_url(url)} has no host",
            {"field": field, "reason": "invalid_url", "url": redact_url(url)},
        )
    return parsed


def _resolve_and_check(
    url: httpx.URL, allow_private: bool, lookup: _Lookup, *, via_redirect: bool
) -> list[IPAddress]:
    field = lookup.field
    host = url.raw_host.decode("ascii")
    port = url.port or _DEFAULT_PORTS[url.scheme]
    literal = parse_ip(host)
    if literal is not None:
        # An IP literal needs no lookup; going through the resolver would only let a test
        # resolver or a strange system resolver map it elsewhere.
        addresses = [literal]
    else:
        addresses = lookup(host, port, url)

    if not allow_private:
        for address in addresses:
            reason = refusal_reason(address)
            if reason is not None:
                _refuse_address(url, host, address, reason, field=field, via_redirect=via_redirect)
    return addresses


class _Lookup:
    """One hop's DNS lookup: `resolve` under a time limit, its answer parsed and checked."""

    def __init__(self, resolve: Resolver, timeout_s: float, field: str) -> None:
        self.resolve, self.timeout_s, self.field = resolve, timeout_s, field

    def __call__(self, host: str, port: int, url: httpx.URL) -> list[IPAddress]:
        return _parsed_answer(self._answer(host, port, url), host, url, field=self.field)

    def _answer(self, host: str, port: int, url: httpx.URL) -> list[str]:
        answer: Future[list[str]] = Future()

        def run() -> None:
            try:
                answer.set_result(self.resolve(host, port))
            except BaseException as exc:  # noqa: BLE001 (handed to the waiting caller)
                answer.set_exception(exc)

        # A daemon thread, not a pool: getaddrinfo cannot be cancelled, so a lookup that
        # outlives the wait is left to finish on its own, and must not hold the process at
        # exit or a pool's worker.
        if self.timeout_s > 0:
            threading.Thread(target=run, name=f"resolve {host}", daemon=True).start()
            wait_for([answer], timeout=self.timeout_s)
        if not answer.done():
            raise InputFetchFailed(
                f"{self.field}: looking up the host of {redact_url(url)} took longer than the "
                f"{max(self.timeout_s, 0):.3g} s left to the download (INPUT_FETCH_TIMEOUT_S)",
                {
                    "field": self.field,
                    "reason": "timeout",
                    "url": redact_url(url),
                    "host": host,
                    "timeout_s": round(max(self.timeout_s, 0), 3),
                },
            )
        try:
            return answer.result()
        except (OSError, UnicodeError) as exc:
            raise _dns_failed(host, url, exc, field=self.field) from None


def _dns_failed(host: str, url: httpx.URL, exc: Exception, *, field: str) -> InputFetchFailed:
    return InputFetchFailed(
        f"{field}: could not resolve the host of {redact_url(url)} ({exc})",
        {"field": field, "reason": "dns_failed", "url": redact_url(url), "host": host},
    )


def _parsed_answer(
    raw: list[str], host: str, url: httpx.URL, *, field: str
) -> list[IPAddress]:
    addresses: list[IPAddress] = []
    for text in raw:
        parsed = parse_ip(text)
        if parsed is None:
            # A resolver answer we cannot classify cannot be proven safe.
            raise InputFetchFailed(
                f"{field}: the host of {redact_url(url)} resolved to {text!r}, which is not "
                "an IP address",
                {"field": field, "reason": "dns_failed", "url": redact_url(url), "host": host},
            )
        addresses.append(parsed)
    if not addresses:
        raise InputFetchFailed(
            f"{field}: the host of {redact_url(url)} resolved to no address",
            {"field": field, "reason": "dns_failed", "url": redact_url(url), "host": host},
        )
    return addresses


def _refuse_address(
    url: httpx.URL,
    host: str,
    address: IPAddress,
    reason: str,
    *,
    field: str,
    via_redirect: bool,
) -> None:
    where = "redirect target " if via_redirect else ""
    if parse_ip(host) == address:
        what = f"URL {where}host {host} is {reason}"
    else:
        what = f"URL {where}host '{host}' resolves to {address}, {reason}"
    raise InvalidInput(
        f"{field}: {what}; {_PRIVATE_HINT}",
        {
            "field": field,
            "reason": "address_not_allowed",
            "url": redact_url(url),
            "host": host,
            "address": str(address),
            "address_kind": reason,
            "via_redirect": via_redirect,
        },
    )
