"""Upload job outputs to an S3-compatible object store and hand back presigned GET URLs.

Configuration (worker-comfyui's variable names, plus a few of ours):

    BUCKET_ENDPOINT_URL       enables the store; see the derivation rules below
    BUCKET_ACCESS_KEY_ID      key id (unset: boto3's default credential chain)
    BUCKET_SECRET_ACCESS_KEY  secret key (unset: boto3's default credential chain)
    BUCKET_NAME               bucket; when unset it is derived from BUCKET_ENDPOINT_URL
    BUCKET_PREFIX             key prefix; objects are stored as {prefix}/{job_id}/{filename}
    BUCKET_REGION             SigV4 signing region ("auto" = derive it, see below)
    BUCKET_URL_EXPIRY_S       lifetime of the returned presigned URLs

How the endpoint URL becomes an endpoint, a bucket and a region: `bucket_location`.

The secret key and the access key id never appear in our error messages, error details or
log records. botocore's own DEBUG logs print request headers, whose SigV4 Authorization
header carries the access key id (never the secret): keep the ``botocore`` logger at INFO.
"""

from __future__ import annotations

import io
import logging
import mimetypes
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from ..errors import UploadFailed
from ..job_files import safe_filename
from ..settings import Settings
from .bucket import (
    AddressingStyle,
    BucketLocation,
    config_error,
    join_key_parts,
    resolve_location,
)

if TYPE_CHECKING:  # boto3 costs ~0.3 s to import; the worker's cold start only pays it on use
    from botocore.client import BaseClient

log = logging.getLogger(__name__)

# Store answers that say "try again later"; anything else (NoSuchBucket, AccessDenied,
# SignatureDoesNotMatch, ...) will not change on a retry and fails the upload at once.
_TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequests",
        "RequestLimitExceeded",
    }
)
_MAX_NAME_CHARS = 200  # S3 keys may be 1024 bytes; leave room for prefix and job id
# botocore asks every upload to wait for "100 Continue" before sending its body: one round
# trip more per output (4.5 ms of a 10 ms upload to moto on loopback, a whole network round
# trip to a real bucket). It pays only where a refused upload would otherwise send, and
# perhaps be cut off in, a large body: so small bodies go at once, large ones still ask.
EXPECT_CONTINUE_MIN_BYTES = 1 << 20
_REDACTED = "***"


@dataclass(frozen=True)
class StoredObject:
    key: str
    url: str
    size: int


def key_segment(name: str, *, fallback: str = "output") -> str:
    """One harmless, readable key segment for a file name or id (`job_files.safe_filename`
    keeping Unicode letters, which object stores allow, and longer names)."""
    return safe_filename(name, fallback=fallback, keep_unicode=True, max_chars=_MAX_NAME_CHARS)


class ObjectStore:
    """Uploads outputs to one bucket. Thread-safe; one boto3 client is built on first use."""

    def __init__(
        self,
        settings: Settings,
        *,
        max_attempts: int = 3,
        retry_backoff_s: float = 0.5,
        retry_backoff_max_s: float = 8.0,
        botocore_max_attempts: int = 2,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 60.0,
        addressing_style: AddressingStyle | None = None,
    ) -> None:
        """Read the configuration (no network, no boto3 import).

        Raises UploadFailed when BUCKET_ENDPOINT_URL is unset or no bucket can be derived,
        so a misconfigured deployment is noticed where the store is built.
        """
        if not settings.bucket_endpoint_url:
            raise config_error("BUCKET_ENDPOINT_URL is not set; the object store is disabled")
        if max_attempts < 1 or botocore_max_attempts < 1:
            raise ValueError("attempt counts must be at least 1")
        self._location = resolve_location(
            settings.bucket_endpoint_url,
            bucket_name=settings.bucket_name,
            bucket_prefix=settings.bucket_prefix,
            region=settings.bucket_region,
            addressing_style=addressing_style,
        )
        self._access_key_id = (
            settings.bucket_access_key_id.get_secret_value()
            if settings.bucket_access_key_id
            else None
        )
        self._secret_access_key = (
            settings.bucket_secret_access_key.get_secret_value()
            if settings.bucket_secret_access_key
            else None
        )
        self._expiry_s = settings.bucket_url_expiry_s
        self._max_attempts = max_attempts
        self._backoff_s = retry_backoff_s
        self._backoff_max_s = retry_backoff_max_s
        self._botocore_max_attempts = botocore_max_attempts
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._client: BaseClient | None = None
        self._client_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> ObjectStore | None:
        """The configured store, or None when BUCKET_ENDPOINT_URL is unset.

        `options` are the constructor's keyword arguments (retry and timeout knobs).
        """
        if not settings.bucket_endpoint_url:
            return None
        return cls(settings, **options)

    @property
    def location(self) -> BucketLocation:
        return self._location

    def __repr__(self) -> str:
        loc = self._location
        return f"ObjectStore(endpoint={loc.endpoint_url!r}, bucket={loc.bucket!r})"

    def key_for(self, job_id: str, filename: str) -> str:
        return join_key_parts(
            self._location.key_prefix,
            key_segment(job_id, fallback="job"),
            key_segment(filename),
        )

    # --- client ------------------------------------------------------------------------

    def _get_client(self) -> BaseClient:
        client = self._client
        if client is not None:
            return client
        with self._client_lock:
            if self._client is None:
                self._client = self._build_client()
            return self._client

    def _build_client(self) -> BaseClient:
        import boto3.session
        from botocore.config import Config

        loc = self._location
        config = Config(
            signature_version="s3v4",
            region_name=loc.region,
            s3={"addressing_style": loc.addressing_style},
            # R2, MinIO and B2 refuse the CRC checksums botocore >= 1.36 adds by default.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            connect_timeout=self._connect_timeout_s,
            read_timeout=self._read_timeout_s,
            retries={"max_attempts": self._botocore_max_attempts, "mode": "standard"},
        )
        # A private session: boto3's default session is shared module state and not
        # thread-safe, while a client built from it once is.
        session = boto3.session.Session(
            aws_access_key_id=self._access_key_id,
            aws_secret_access_key=self._secret_access_key,
            region_name=loc.region,
        )
        client = session.client("s3", endpoint_url=loc.endpoint_url, config=config)
        from botocore.handlers import add_expect_header

        # The client's own copy of the handlers: other clients in the process keep botocore's.
        client.meta.events.unregister("before-call.s3", add_expect_header)
        client.meta.events.register("before-call.s3", _expect_continue_for_large_bodies)
        return client

    # --- upload ------------------------------------------------------------------------

    def upload(
        self, *, job_id: str, filename: str, data: bytes | BinaryIO, content_type: str
    ) -> StoredObject:
        """Store one output and return its key, a presigned GET URL and its size.

        Transient failures (connection errors, timeouts, 5xx, throttling) are retried with
        exponential backoff; anything else, or the last transient one, raises UploadFailed.
        """
        key = self.key_for(job_id, filename)
        content_type = (
            content_type.strip()
            or mimetypes.guess_type(key)[0]
            or "application/octet-stream"
        )
        body, size, rewind = _prepare_body(data)
        self._put_with_retries(key, body, size, content_type, rewind)
        url = self._presign(key)
        # The URL itself carries the access key id in its query string: log the key only.
        log.info(
            "uploaded %s (%d bytes, %s) to bucket %s", key, size, content_type,
            self._location.bucket,
        )
        return StoredObject(key=key, url=url, size=size)

    def _put_with_retries(
        self, key: str, body: Any, size: int, content_type: str, rewind: Callable[[], object]
    ) -> None:
        bucket = self._location.bucket
        for attempt in range(1, self._max_attempts + 1):
            try:
                rewind()
                self._get_client().put_object(
                    Bucket=bucket, Key=key, Body=body, ContentType=content_type,
                    ContentLength=size,
                )
                return
            except Exception as exc:  # classified below; unknown ones are not retried
                code, message, transient = self._classify(exc)
                if not transient or attempt == self._max_attempts:
                    log.error(
                        "upload of %s to bucket %s failed after %d attempt(s): %s: %s",
                        key, bucket, attempt, code, message,
                    )
                    raise UploadFailed(
                        f"could not upload {key!r} to bucket {bucket!r}: {code}: {message}",
                        details={
                            "bucket": bucket,
                            "key": key,
                            "endpoint": self._location.endpoint_url,
                            "code": code,
                            "store_message": message,
                            "attempts": attempt,
                        },
                    ) from None  # the botocore chain can carry request dumps; keep it out
                delay = self._backoff_delay(attempt)
                log.warning(
                    "upload of %s to bucket %s failed (%s: %s), retry %d/%d in %.2fs",
                    key, bucket, code, message, attempt, self._max_attempts - 1, delay,
                )
                time.sleep(delay)

    def _presign(self, key: str) -> str:
        bucket = self._location.bucket
        try:
            return str(
                self._get_client().generate_presigned_url(
                    "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=self._expiry_s
                )
            )
        except Exception as exc:  # presigning is local; failing here means bad config
            code, message, _ = self._classify(exc)
            raise UploadFailed(
                f"uploaded {key!r} but could not presign its URL: {code}: {message}",
                details={"bucket": bucket, "key": key, "code": code},
            ) from None

    def _backoff_delay(self, attempt: int) -> float:
        ceiling = min(self._backoff_max_s, self._backoff_s * (2 ** (attempt - 1)))
        # Jitter keeps the outputs of one job, uploaded in parallel, from retrying in step.
        return ceiling * (0.5 + random.random() / 2)

    def _classify(self, exc: BaseException) -> tuple[str, str, bool]:
        """(code, message, transient) for an exception from boto3, with secrets removed."""
        from botocore import exceptions as bx

        transient = False
        if isinstance(exc, bx.ClientError):
            error = exc.response.get("Error", {}) or {}
            meta = exc.response.get("ResponseMetadata", {}) or {}
            status = int(meta.get("HTTPStatusCode") or 0)
            code = str(error.get("Code") or status or "ClientError")
            message = str(error.get("Message") or f"HTTP {status}")
            transient = code in _TRANSIENT_CODES or status >= 500 or status == 429
        elif isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
            code = type(exc).__name__
            message = (
                f"{exc}; set BUCKET_ACCESS_KEY_ID and BUCKET_SECRET_ACCESS_KEY"
            )
        elif isinstance(exc, bx.SSLError):
            code, message = "SSLError", str(exc)
        elif isinstance(exc, bx.ConnectionError | bx.HTTPClientError):
            code, message, transient = type(exc).__name__, str(exc), True
        else:
            code, message = type(exc).__name__, str(exc)
        return self._redact(code), self._redact(message), transient

    def _redact(self, text: str) -> str:
        for secret in (self._secret_access_key, self._access_key_id):
            if secret:
                text = text.replace(secret, _REDACTED)
        return text


def _expect_continue_for_large_bodies(model: Any, params: dict[str, Any], **_: Any) -> None:
    """botocore's `before-call` hook: ask for "100 Continue" only before a large body."""
    from botocore.utils import determine_content_length

    body = params.get("body")
    if model.http.get("method") not in ("PUT", "POST") or not hasattr(body, "read"):
        return
    size = determine_content_length(body)
    if size is None or size >= EXPECT_CONTINUE_MIN_BYTES:  # unknown: botocore's default
        params["headers"]["Expect"] = "100-continue"


def _prepare_body(
    data: bytes | bytearray | memoryview | BinaryIO,
) -> tuple[bytes | BinaryIO, int, Callable[[], object]]:
    """(body, size, rewind) where rewind() puts the body back at its start before a try.

    A seekable stream at position 0 is sent as is (no copy of a large video in memory);
    anything else is read into bytes, because botocore's own retries rewind streams to 0.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        payload = bytes(data)
        return payload, len(payload), lambda: None
    stream = data
    try:
        seekable = stream.seekable() and stream.tell() == 0
    except (AttributeError, OSError, ValueError):
        seekable = False
    if seekable:
        size = stream.seek(0, io.SEEK_END)
        stream.seek(0)
        return stream, size, lambda: stream.seek(0)
    payload = stream.read()
    return payload, len(payload), lambda: None
