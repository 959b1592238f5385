"""Where outputs go: the endpoint, bucket, key prefix, region and addressing style that a
BUCKET_ENDPOINT_URL (worker-comfyui's variable) and our BUCKET_* settings add up to.

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
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from ..errors import UploadFailed

log = logging.getLogger(__name__)

AddressingStyle = Literal["path", "virtual", "auto"]


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
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn"))


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
    region = labels[1] if len(labels) >= 4 and labels[0] == "s3" else ""
    if "-" in region and any(ch.isdigit() for ch in region):
        return region
    return None


def join_key_parts(*parts: str) -> str:
    """Join key pieces with single slashes, dropping empty pieces and stray slashes."""
    segments: list[str] = []
    for part in parts:
        segments.extend(s for s in part.split("/") if s)
    return "/".join(segments)


def config_error(message: str) -> UploadFailed:
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
    scheme, host, port, path_segments = _parse_endpoint(endpoint_url)
    wanted = (bucket_name or "").strip() or None
    is_aws = _is_aws_host(host)
    host, host_bucket, derived_region = (
        _split_aws_host(host, wanted) if is_aws else (host, None, _generic_region(host))
    )
    bucket, path_prefix, endpoint_path = _bucket_and_path(wanted, host_bucket, path_segments)
    if not bucket:
        raise config_error(
            "no bucket configured: set BUCKET_NAME, or put the bucket in BUCKET_ENDPOINT_URL "
            "(https://<bucket>.s3.<region>.amazonaws.com or https://<host>/<bucket>)"
        )
    explicit_region = region.strip()
    auto_region = explicit_region.lower() in ("", "auto")
    return BucketLocation(
        endpoint_url=urlunsplit((scheme, _netloc(host, port), endpoint_path, "", "")),
        bucket=bucket,
        key_prefix=join_key_parts(path_prefix, bucket_prefix),
        region=(derived_region or "auto") if auto_region else explicit_region,
        addressing_style=addressing_style or ("auto" if is_aws else "path"),
        is_aws=is_aws,
    )


def _parse_endpoint(endpoint_url: str) -> tuple[str, str, int | None, list[str]]:
    """(scheme, lower-case host, port, path segments) of BUCKET_ENDPOINT_URL."""
    raw = endpoint_url.strip()
    if not raw:
        raise config_error("BUCKET_ENDPOINT_URL is empty")
    if "://" not in raw:
        raw = "https://" + raw
    parts = urlsplit(raw)
    try:
        port = parts.port
    except ValueError:
        raise config_error("BUCKET_ENDPOINT_URL has an invalid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise config_error(
            f"BUCKET_ENDPOINT_URL must be an http(s) URL with a host, got scheme "
            f"{parts.scheme!r}"
        )
    # hostname drops any user:password@ part: credentials in the URL are not a supported
    # way in, and this keeps them out of every message that names the endpoint.
    segments = [segment for segment in parts.path.split("/") if segment]
    return parts.scheme, parts.hostname.lower(), port, segments


def _split_aws_host(host: str, wanted: str | None) -> tuple[str, str | None, str | None]:
    """(host without a bucket, the bucket the host named, the host's region) for AWS."""
    labels = host.split(".")
    index = _s3_label_index(labels)
    if index is None:
        return host, None, None
    if index == 0:
        return host, None, _aws_region(labels)
    host_bucket = ".".join(labels[:index])
    if wanted is not None and wanted != host_bucket:
        log.warning(
            "BUCKET_NAME %r differs from the bucket %r in BUCKET_ENDPOINT_URL; using BUCKET_NAME",
            wanted,
            host_bucket,
        )
    service = labels[index:]
    return ".".join(service), host_bucket, _aws_region(service)


def _bucket_and_path(
    wanted: str | None, host_bucket: str | None, segments: list[str]
) -> tuple[str | None, str, str]:
    """(bucket, key prefix from the path, path left on the endpoint)."""
    if host_bucket is not None:
        # The host named the bucket: the whole path is a key prefix.
        return wanted or host_bucket, "/".join(segments), ""
    if not segments:
        return wanted, "", ""
    if wanted is None:
        return segments[0], "/".join(segments[1:]), ""
    if segments[0] == wanted:
        return wanted, "/".join(segments[1:]), ""
    # BUCKET_NAME differs from the first segment: an S3 API mounted below a path.
    return wanted, "", "/" + "/".join(segments)
