"""Download one model file to a partial file on disk: streamed, limited, resumable, verified.

A model is gigabytes, so unlike `url_fetch.fetch_url` (which holds an input in memory) this
streams the raw bytes into a file and hashes them as they pass. It reuses `url_fetch` for
what makes a URL safe to reach: the scheme check, one resolution with every address checked
against the address policy, and the connection pinned to a checked address, on every redirect.

What this module adds:

* tokens: a `TokenRule` sends `Authorization: Bearer` only over https, only to its domain (and
  subdomains), and only on hops that stay on the host the job named, so a redirect to a CDN
  or anywhere else never carries it;
* raw bytes only: `Accept-Encoding: identity`, and an answer with another Content-Encoding is
  refused (decompressing would make the size limit and the checksum meaningless);
* limits: a declared size over the limit is refused before a byte is read, an undeclared one is
  stopped as soon as it passes; each connect/read is bounded by the I/O timeout and the whole
  download by the caller's deadline and cancel event;
* retries: a dropped connection, a stall or a 5xx/429 is retried, resuming with a Range request
  (with If-Range, so a file that changed meanwhile is fetched whole again) when the server
  allows it; a failed download deletes its partial file.

Errors never contain the query string of the URL (signed URLs keep credentials there) nor a
token: every URL in a message goes through `url_fetch.redact_url`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx
from pydantic import SecretStr

from ..errors import InputFetchFailed, JobCancelled, JobError
from ..fetch import download as url_fetch
from ..fetch.address_policy import IPAddress, Resolver
from ..fetch.deadline import DownloadCancelled
from ..fetch.download import redact_url
from .part import PartFile, body_chunks, content_length, content_range

log = logging.getLogger(__name__)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Worth asking again: the server or something in front of it is overloaded or restarting.
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

ByteProgress = Callable[[int, "int | None"], None]
"""(bytes received, total size or None) after each chunk received."""


class ModelFetchFailed(JobError):
    """model_fetch_failed: a model could not be downloaded or did not verify. `details` holds
    `field`, `reason` (http_status, too_large, size_mismatch, checksum_mismatch, timeout,
    network_error, dns_failed, content_encoding, disk_error, cache_full, name_conflict,
    too_many_redirects), the redacted `url`
    and `host`, and `status` for HTTP errors."""

    code = "model_fetch_failed"


@dataclass(frozen=True)
class TokenRule:
    """Send `token` to hosts in `domain` (the domain itself and its subdomains)."""

    domain: str
    token: SecretStr
    require_https: bool = True  # only tests over plain loopback HTTP turn this off

    def applies_to(self, url: httpx.URL) -> bool:
        if self.require_https and url.scheme != "https":
            return False
        host = url.host.lower().rstrip(".")
        return host == self.domain or host.endswith("." + self.domain)


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int
    io_timeout_s: float
    allow_private: bool = False
    max_redirects: int = 5
    attempts: int = 3


@dataclass(frozen=True)
class Downloaded:
    size: int
    sha256: str | None  # computed only when there was a checksum to verify
    seconds: float
    attempts: int
    resumed: bool


class _Retry(Exception):
    """This attempt failed in a way another attempt may not; carries the error to raise if
    attempts run out."""

    def __init__(self, error: ModelFetchFailed) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(frozen=True)
class Download:
    """One model download: where from, where to, under which limits."""

    url: str
    part_path: Path
    limits: FetchLimits
    deadline: float
    field: str
    expected_sha256: str | None = None
    tokens: Sequence[TokenRule] = ()
    cancel: threading.Event | None = None
    on_bytes: ByteProgress | None = None
    on_total: Callable[[int], None] | None = None  # told the size before the body is read
    resolver: Resolver | None = None

    def run(self) -> Downloaded:
        """Download into `part_path` (created or truncated) and verify it; on any failure the
        partial file is deleted and the error raised."""
        started = time.monotonic()
        try:
            part = PartFile(self.part_path, hashing=self.expected_sha256 is not None)
            try:
                attempts = self._attempts(part)
            except DownloadCancelled:
                raise self._cancelled() from None
            finally:
                part.close()
            self._verify(part)
        except BaseException:
            self.part_path.unlink(missing_ok=True)
            raise
        seconds = time.monotonic() - started
        return Downloaded(part.written, part.digest(), seconds, attempts, part.resumed)

    # --- attempts and hops ---------------------------------------------------------------

    def _attempts(self, part: PartFile) -> int:
        for attempt in range(1, self.limits.attempts + 1):
            try:
                self._one_attempt(part)
                return attempt
            except _Retry as retry:
                if attempt == self.limits.attempts or self._remaining() <= 0:
                    raise retry.error from None
                log.warning(
                    "model download %s: attempt %d failed (%s), %d bytes kept, retrying",
                    redact_url(self.url), attempt, retry.error.message, part.written,
                )
                self._sleep(min(0.5 * attempt, self._remaining()))
        raise AssertionError("unreachable: attempts >= 1")

    def _one_attempt(self, part: PartFile) -> None:
        current, origin_host = self.url, None
        policy = url_fetch.UrlPolicy(
            max_bytes=self.limits.max_bytes,
            timeout_s=max(self._remaining(), 0.001),
            allow_private=self.limits.allow_private,
        )
        with url_fetch.new_client(self.deadline, self.cancel) as client:
            for hop in range(self.limits.max_redirects + 1):
                target, addresses = self._check(current, policy, via_redirect=hop > 0)
                origin_host = origin_host or target.host  # the host the job named
                headers = self._headers(target, part, same_host=target.host == origin_host)
                next_url = self._request(client, target, addresses, headers, part)
                if next_url is None:
                    return
                log.debug("model %s redirected to %s", redact_url(current), redact_url(next_url))
                current = next_url
        raise self._fail("too_many_redirects", f"more than {self.limits.max_redirects} redirects")

    def _check(
        self, url: str, policy: url_fetch.UrlPolicy, *, via_redirect: bool
    ) -> tuple[httpx.URL, list[IPAddress]]:
        # A refused address stays InvalidInput, as for input URLs: the job named a URL the
        # worker may not reach. A name that does not resolve is a fetch failure.
        try:
            return url_fetch.check_hop(
                url, policy, field=self.field, resolver=self.resolver, via_redirect=via_redirect
            )
        except InputFetchFailed as exc:
            raise ModelFetchFailed(exc.message, exc.details) from None

    def _headers(self, url: httpx.URL, part: PartFile, *, same_host: bool) -> dict[str, str]:
        headers: dict[str, str] = {}
        if part.written:
            headers["Range"] = f"bytes={part.written}-"
            if part.validator:
                headers["If-Range"] = part.validator
        # Never across a redirect to another host: the hop must still be on the job's host.
        for rule in self.tokens:
            if same_host and rule.applies_to(url):
                headers["Authorization"] = f"Bearer {rule.token.get_secret_value()}"
                break
        return headers

    def _request(
        self,
        client: httpx.Client,
        url: httpx.URL,
        addresses: list[IPAddress],
        headers: dict[str, str],
        part: PartFile,
    ) -> str | None:
        """One request; returns the redirect target, or None once the body is on disk."""
        last: Exception = httpx.ConnectError("no address")
        for address in addresses:
            try:
                with url_fetch.pinned_response(
                    client, url, address, self.deadline, extra_headers=headers,
                    io_timeout_s=self.limits.io_timeout_s,
                ) as response:
                    return self._handle(url, response, part)
            except httpx.ConnectError as exc:
                last = exc  # nothing was sent: the next address may answer
            except httpx.TimeoutException:
                raise _Retry(self._timeout()) from None
            except httpx.TransportError as exc:
                raise _Retry(self._network(exc)) from None
        raise _Retry(self._network(last))

    # --- one response --------------------------------------------------------------------

    def _handle(self, url: httpx.URL, response: httpx.Response, part: PartFile) -> str | None:
        status = response.status_code
        if status in _REDIRECTS:
            location = response.headers.get("location")
            if not location:
                raise self._fail("http_status", "a redirect without a Location", status=status)
            return urljoin(str(url), location)
        if status == 416 and part.written:
            part.restart()  # our offset is past what the server has now: start over
            raise _Retry(self._fail("http_status", "HTTP 416 on resume", status=status))
        if status in _RETRY_STATUSES:
            raise _Retry(self._fail("http_status", f"HTTP {status}", status=status))
        if status not in (200, 206):
            raise self._fail("http_status", f"HTTP {status}", status=status)
        self._check_encoding(response)
        self._position(response, part)
        self._stream(response, part)
        return None

    def _check_encoding(self, response: httpx.Response) -> None:
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise self._fail(
                "content_encoding",
                f"the server sent Content-Encoding '{encoding[:40]}'; models are fetched as "
                "raw bytes only",
            )

    def _position(self, response: httpx.Response, part: PartFile) -> None:
        """Line the partial file up with the body about to arrive, and learn the total."""
        if response.status_code == 206:
            start, total = content_range(response.headers.get("content-range"))
            if start != part.written:
                # Not the bytes we asked for: drop the body and ask again from zero.
                part.restart()
                raise _Retry(self._fail("network_error", "the server resumed at a wrong offset"))
            part.resumed = True
        else:
            if part.written:
                log.info("model %s: server ignored Range, restarting", redact_url(self.url))
            part.restart()
            total = content_length(response.headers.get("content-length"))
            part.validator = response.headers.get("etag") or response.headers.get(
                "last-modified"
            )
        if total is not None:
            if total > self.limits.max_bytes:
                raise self._too_large(total)
            if part.total is None and self.on_total is not None:
                self.on_total(total)
            part.total = total

    def _stream(self, response: httpx.Response, part: PartFile) -> None:
        try:
            for chunk in body_chunks(response, self._read_timeout):
                try:
                    part.append(chunk)
                except OSError as exc:
                    raise self._disk_error(exc) from None
                if part.written > self.limits.max_bytes:
                    raise self._too_large(None)
                self._check_time_and_cancel()
                if self.on_bytes is not None:
                    self.on_bytes(part.written, part.total)
        finally:
            # What arrived before a failure is kept, so that a retry resumes after it.
            try:
                part.flush()
            except OSError as exc:
                raise self._disk_error(exc) from None

    def _verify(self, part: PartFile) -> None:
        if part.total is not None and part.written != part.total:
            raise self._fail(
                "size_mismatch", f"got {part.written} bytes, the server announced {part.total}"
            )
        digest = part.digest()
        if self.expected_sha256 is not None and digest != self.expected_sha256:
            raise self._fail(
                "checksum_mismatch",
                f"sha256 is {digest}, expected {self.expected_sha256}",
                sha256=digest,
                expected_sha256=self.expected_sha256,
            )

    # --- time ----------------------------------------------------------------------------

    def _remaining(self) -> float:
        return self.deadline - time.monotonic()

    def _read_timeout(self) -> float:
        return max(min(self._remaining(), self.limits.io_timeout_s), 0.001)

    def _check_time_and_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise self._cancelled()
        if self._remaining() <= 0:
            raise self._fail("timeout", "the job's time limit passed during the download")

    def _sleep(self, seconds: float) -> None:
        if self.cancel is not None:
            self.cancel.wait(seconds)
        else:
            time.sleep(seconds)
        self._check_time_and_cancel()

    # --- errors --------------------------------------------------------------------------

    def _fail(self, reason: str, what: str, **extra: object) -> ModelFetchFailed:
        safe = redact_url(self.url)
        details: dict[str, object] = {
            "field": self.field, "reason": reason, "url": safe, "host": _host(self.url)
        }
        details.update(extra)
        return ModelFetchFailed(f"{self.field}: downloading {safe} failed: {what}", details)

    def _cancelled(self) -> JobCancelled:
        return JobCancelled(f"{self.field}: model download cancelled", {"field": self.field})

    def _disk_error(self, exc: OSError) -> ModelFetchFailed:
        # A full disk or a lost volume: another attempt would not help.
        return self._fail("disk_error", f"writing the file failed ({exc.strerror})",
                          errno=exc.errno)

    def _too_large(self, declared: int | None) -> ModelFetchFailed:
        size = f"{declared} bytes" if declared is not None else "the body"
        return self._fail(
            "too_large",
            f"{size} is over the limit of {self.limits.max_bytes} bytes (MAX_MODEL_BYTES or "
            "MODEL_CACHE_MAX_BYTES)",
            max_bytes=self.limits.max_bytes,
            content_length=declared,
        )

    def _timeout(self) -> ModelFetchFailed:
        if self._remaining() <= 0:
            return self._fail("timeout", "the job's time limit passed during the download")
        return self._fail(
            "timeout",
            f"no data for {self.limits.io_timeout_s:g} s (MODEL_FETCH_TIMEOUT_S)",
            timeout_s=self.limits.io_timeout_s,
        )

    def _network(self, exc: Exception) -> ModelFetchFailed:
        # The exception text of httpx can quote the URL; only its type is safe to repeat.
        return self._fail("network_error", f"{type(exc).__name__}", error=type(exc).__name__)


def _host(url: str) -> str:
    try:
        return httpx.URL(url).host
    except (httpx.InvalidURL, TypeError, ValueError):  # ValueError: not a valid IDNA name
        return ""
