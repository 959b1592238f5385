"""Property tests of the URL parsing every download starts with: whatever a client writes in a
URL field, the address policy answers with a checked target or a clear job error
(InvalidInput, InputFetchFailed), never another exception, and fast (issue 22)."""

from __future__ import annotations

import ipaddress
import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comfy_runtime.errors import InputFetchFailed, InvalidInput
from comfy_runtime.fetch.address_policy import checked_target, redact_url, refusal_reason

FUZZ = settings(max_examples=300, deadline=200, suppress_health_check=[HealthCheck.too_slow])

_LABEL = st.one_of(
    st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True),
    st.from_regex(r"xn--[a-z0-9-]{0,10}", fullmatch=True),  # punycode, valid or not
    st.text(min_size=1, max_size=8),  # anything, unicode included
)
_HOST = st.one_of(
    st.lists(_LABEL, min_size=1, max_size=4).map(".".join),
    st.ip_addresses().map(lambda a: f"[{a}]" if a.version == 6 else str(a)),
    st.text(max_size=30),
)
_URL = st.one_of(
    st.builds(
        lambda scheme, user, host, port, path: f"{scheme}://{user}{host}{port}{path}",
        st.sampled_from(["http", "https", "HTTP", "ftp", "file", "", "javascript"]),
        st.sampled_from(["", "user:pw@", "@", "a@b@"]),
        _HOST,
        st.one_of(st.just(""), st.integers(-5, 70000).map(lambda p: f":{p}"),
                  st.text(max_size=6).map(lambda t: f":{t}")),
        st.text(max_size=20).map(lambda t: "/" + t),
    ),
    st.text(max_size=80),
)


def _public_resolver(host: str, port: int) -> list[str]:
    if host.endswith(".invalid"):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return ["93.184.215.14"]  # a public address; nothing connects to it here


@FUZZ
@given(url=_URL, via_redirect=st.booleans())
def test_any_url_is_a_checked_target_or_a_job_error(url: str, via_redirect: bool) -> None:
    try:
        target, addresses = checked_target(url, allow_private=False, field="images[0].image",
                                           resolve=_public_resolver, via_redirect=via_redirect,
                                           lookup_timeout_s=1.0)
    except (InvalidInput, InputFetchFailed) as exc:
        assert exc.details[0]["field"] == "images[0].image"
        return
    assert target.scheme in ("http", "https") and target.host
    assert addresses and all(refusal_reason(a) is None for a in addresses)


@FUZZ
@given(url=_URL)
def test_redacting_any_url_never_fails_and_drops_the_query(url: str) -> None:
    shown = redact_url(url + "?X-Amz-Signature=SECRET")
    assert "SECRET" not in shown


@FUZZ
@given(address=st.ip_addresses())
def test_every_address_is_judged(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    reason = refusal_reason(address)
    assert reason is None or reason.startswith("a")
