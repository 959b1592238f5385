"""Upload job outputs to an S3-compatible object store and hand back presigned GET URLs.

Configuration (worker-comfyui's variable names, plus a few of ours):

    BUCKET_ENDPOINT_URL       enables the store; see the derivation rules below
    BUCKET_ACCESS_KEY_ID      key id (unset: boto3's default credential chain)
    BUCKET_SECRET_ACCESS_KEY  secret key (unset: boto3's default credential chain)
    BUCKET_NAME               bucket; when unset it is derived from BUCKET_ENDPOINT_URL
    BUCKET_PREFIX             key prefix; objects are stored as {prefix}/{job_id}/{filename}
    BUCKET_REGION             SigV4 signing region ("auto" = derive it, see below)
    BUCKET_URL_EXPIRY_S       lifetime of the returned presigned URLs

How the endpoint URL is read (`resolve_location` implements this):

1. A URL without a scheme gets ``https://``.
2. AWS virtual-hosted form, ``https://<bucket>.s3[.<region>].amazonaws.com[/...]`` (also the
   legacy ``s3-<region>`` and ``s3.dualstack.<region>`` hosts and ``amazonaws.com.cn``): the
   labels before the ``s3`` label are the bucket. boto3 is given the URL without them
   (``https://s3.<region>.amazonaws.com``); a path after the host becomes a key prefix placed
   before BUCKET_PREFIX. When BUCKET_NAME is set it wins; the host's bucket is still
   removed, because boto3 puts the bucket in front of the host itself. The path-style AWS
   form (``https://s3.<region>.amazonaws.com/<bucket>``) follows rule 3.
3. Any other URL with a path, e.g. ``https://<account>.r2.cloudflarestorage.com/<bucket>`` or
   ``http://127.0.0.1:9000/<bucket>``: the first path segment is the bucket and boto3 is given
   ``scheme://host[:port]``. Path segments after the bucket become a key prefix placed before
   BUCKET_PREFIX (``.../<bucket>/renders`` stores under ``renders/{job_id}/...``). When
   BUCKET_NAME is set, the first segment is removed only if it equals BUCKET_NAME; otherwise
   the path is left on the endpoint (an S3 API mounted below a path on a proxy).
4. No bucket from BUCKET_NAME nor from the URL (e.g. ``https://s3.us-east-1.amazonaws.com``
   with no path): configuration error, `UploadFailed` naming BUCKET_NAME.

Region: an explicit BUCKET_REGION is used as is. With the default "auto", AWS hosts sign
with the region in the host name (``us-east-1`` for the global ``s3.amazonaws.com``), and
other hosts shaped ``s3.<region>.<domain>`` (Backblaze B2, Wasabi) with that region; anything
else signs with "auto", which is what Cloudflare R2 expects and MinIO accepts.

Addressing: path-style (``host/bucket/key``) for every non-AWS endpoint, since MinIO, R2 and
most self-hosted stores do not serve bucket sub-domains; boto3's "auto" for AWS, which uses
virtual-hosted style where the bucket name allows it.

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
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Literal
from urllib.parse import urlsplit, urlunsplit

from comfy_runtime.errors import UploadFailed
from comfy_runtime.settings import Settings

if TYPE_CHECKING:  # boto3 costs ~0.3 s to import; the worker's cold start only pays it on use
    from botocore.client import BaseClient

log = logging.getLogger(__name__)

AddressingStyle = Literal["path", "virtual", "auto"]

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
_REDACTED = "***"


@dataclass(frozen=True)
class StoredObject:
    key: str
    url: str
    size: int


@dataclass(frozen=True)
class BucketLocation:
    """Where objects go, after reading BUCKET_ENDPOINT_URL and friends."""

    endpoint_url: str
    bucket: str
    key_prefix: str
    region: str
    addressing_style: AddressingStyle
    is_aws: bool


def _is_aws_host(host: str) -> bool:
    return host.endswith(".amazonaws.com") or host.endswith(".amazonaws.com.cn")


def _s3_label_index(labels: list[str]) -> int | None:
    """Index of the label that starts the S3 service part of an AWS host, if any."""
    for i, label in enumerate(labels):
        if label == "s3" or label.startswith("s3-"):
            return i
    return None


def _aws_region(service_labels: list[str]) -> str:
    """Region named in an AWS S3 host such as s3.eu-west-1.amazonaws.com (sans bucket)."""
    first = service_labels[0]
    if first.startswith("s3-") and first not in ("s3-external-1", "s3-accelerate"):
        return first[len("s3-") :]  # legacy dash form: s3-us-west-2.amazonaws.com
    for label in service_labels[1:]:
        if label == "amazonaws":
            break
        if label != "dualstack":
            return label
    # The global endpoint (s3.amazonaws.com) and accelerate hosts sign as us-east-1.
    return "us-east-1"


def _netloc(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host  # IPv6 literal
    return shown if port is None else f"{shown}:{port}"


def _generic_region(host: str) -> str | None:
    """Region of hosts shaped s3.<region>.<domain> (Backblaze B2, Wasabi, ...)."""
    labels = host.split(".")
    if len(labels) >= 4 and labels[0] == "s3" and "-" in labels[1]:
        if any(ch.isdigit() for ch in labels[1]):
            return labels[1]
    return None


def _join_key_parts(*parts: str) -> str:
    """Join key pieces with single slashes, dropping empty pieces and stray slashes."""
    segments: list[str] = []
    for part in parts:
        segments.extend(s for s in part.split("/") if s)
    return "/".join(segments)


def _config_error(message: str) -> UploadFailed:
    return UploadFailed(message, details={"reason": "configuration"})


def resolve_location(
    endpoint_url: str,
    *,
    bucket_name: str | None = None,
    bucket_prefix: str = "",
    region: str = "auto",
    addressing_style: AddressingStyle | None = None,
) -> BucketLocation:
    """Apply the module docstring's rules; raise UploadFailed when no bucket can be found."""
    raw = endpoint_url.strip()
    if not raw:
        raise _config_error("BUCKET_ENDPOINT_URL is empty")
    if "://" not in raw:
        raw = "https://" + raw
    parts = urlsplit(raw)
    try:
        port = parts.port
    except ValueError:
        raise _config_error("BUCKET_ENDPOINT_URL has an invalid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _config_error(
            f"BUCKET_ENDPOINT_URL must be an http(s) URL with a host, got scheme "
            f"{parts.scheme!r}"
        )
    # hostname drops any user:password@ part: credentials in the URL are not a supported
    # way in, and this keeps them out of every message that names the endpoint.
    host = parts.hostname.lower()
    path_segments = [s for s in parts.path.split("/") if s]
    wanted = (bucket_name or "").strip() or None

    is_aws = _is_aws_host(host)
    bucket: str | None = wanted
    bucket_from_host = False
    path_prefix = ""
    derived_region: str | None = None

    if is_aws:
        labels = host.split(".")
        idx = _s3_label_index(labels)
        if idx is not None:
            if idx > 0:
                host_bucket = ".".join(labels[:idx])
                if wanted is not None and wanted != host_bucket:
                    log.warning(
                        "BUCKET_NAME %r differs from the bucket %r in BUCKET_ENDPOINT_URL; "
                        "using BUCKET_NAME",
                        wanted,
                        host_bucket,
                    )
                bucket_from_host = True
                bucket = bucket or host_bucket
                labels = labels[idx:]
                host = ".".join(labels)
            derived_region = _aws_region(labels)
    else:
        derived_region = _generic_region(host)

    endpoint_path = ""
    if bucket_from_host:
        path_prefix = "/".join(path_segments)  # the host named the bucket: the path is a prefix
    elif path_segments:
        if bucket is None:
            bucket = path_segments[0]
            path_prefix = "/".join(path_segments[1:])
        elif path_segments[0] == bucket:
            path_prefix = "/".join(path_segments[1:])
        else:
            endpoint_path = "/" + "/".join(path_segments)

    if not bucket:
        raise _config_error(
            "no bucket configured: set BUCKET_NAME, or put the bucket in BUCKET_ENDPOINT_URL "
            "(https://<bucket>.s3.<region>.amazonaws.com or https://<host>/<bucket>)"
        )

    if region.strip().lower() in ("", "auto"):
        signing_region = derived_region or "auto"
    else:
        signing_region = region.strip()

    style: AddressingStyle = addressing_style or ("auto" if is_aws else "path")
    return BucketLocation(
        endpoint_url=urlunsplit((parts.scheme, _netloc(host, port), endpoint_path, "", "")),
        bucket=bucket,
        key_prefix=_join_key_parts(path_prefix, bucket_prefix),
        region=signing_region,
        addressing_style=style,
        is_aws=is_aws,
    )


def safe_name(name: str, *, fallback: str = "output") -> str:
    """Reduce a file name (or id) to one harmless key segment, keeping it readable.

    Only the last path component survives, control characters go, and names that mean
    something to path resolvers ("", ".", "..") are replaced.
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    if base in ("", ".", ".."):
        return fallback
    if len(base) > _MAX_NAME_CHARS:
        stem, dot, ext = base.rpartition(".")
        if dot and 0 < len(ext) <= 16 and stem:
            base = stem[: _MAX_NAME_CHARS - len(ext) - 1] + "." + ext
        else:
            base = base[:_MAX_NAME_CHARS]
    return base


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
            raise _config_error("BUCKET_ENDPOINT_URL is not set; the object store is disabled")
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
        return _join_key_parts(
            self._location.key_prefix,
            safe_name(job_id, fallback="job"),
            safe_name(filename),
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
        return session.client("s3", endpoint_url=loc.endpoint_url, config=config)

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
        bucket = self._location.bucket

        attempt = 0
        while True:
            attempt += 1
            try:
                client = self._get_client()
                rewind()
                client.put_object(
                    Bucket=bucket,
                    Key=key,
                    Body=body,
                    ContentType=content_type,
                    ContentLength=size,
                )
                break
            except Exception as exc:  # classified below; unknown ones are not retried
                code, message, transient = self._classify(exc)
                if transient and attempt < self._max_attempts:
                    delay = self._backoff_delay(attempt)
                    log.warning(
                        "upload of %s to bucket %s failed (%s: %s), retry %d/%d in %.2fs",
                        key,
                        bucket,
                        code,
                        message,
                        attempt,
                        self._max_attempts - 1,
                        delay,
                    )
                    time.sleep(delay)
                    continue
                log.error(
                    "upload of %s to bucket %s failed after %d attempt(s): %s: %s",
                    key,
                    bucket,
                    attempt,
                    code,
                    message,
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

        try:
            url = self._get_client().generate_presigned_url(
                "get_object",
                Params={"Bucket": bucket, "Key": key},
                ExpiresIn=self._expiry_s,
            )
        except Exception as exc:  # presigning is local; failing here means bad config
            code, message, _ = self._classify(exc)
            raise UploadFailed(
                f"uploaded {key!r} but could not presign its URL: {code}: {message}",
                details={"bucket": bucket, "key": key, "code": code},
            ) from None
        # The URL itself carries the access key id in its query string: log the key only.
        log.info("uploaded %s (%d bytes, %s) to bucket %s", key, size, content_type, bucket)
        return StoredObject(key=key, url=url, size=size)

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
