"""ObjectStore against moto's real S3 server on loopback, plus the pure endpoint rules."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from comfy_runtime.errors import UploadFailed
from comfy_runtime.outputs.bucket import resolve_location
from comfy_runtime.outputs.store import (
    EXPECT_CONTINUE_MIN_BYTES,
    ObjectStore,
    StoredObject,
    key_segment,
)
from comfy_runtime.settings import Settings
from comfy_runtime.worker import Failed
from handler import respond
from tests.s3_server import (
    TEST_ACCESS_KEY_ID,
    TEST_SECRET_ACCESS_KEY,
    s3_client,
    start_moto_server,
    unique_bucket,
)

# Fast failure knobs: the dead-endpoint tests must not spend the default backoff.
FAST = {"retry_backoff_s": 0.01, "retry_backoff_max_s": 0.05, "connect_timeout_s": 2.0}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings reads the environment too, and botocore honours proxies and AWS config files;
    # none of the developer's own setup may leak into these tests.
    for name in ("BUCKET_ENDPOINT_URL", "BUCKET_ACCESS_KEY_ID", "BUCKET_SECRET_ACCESS_KEY",
                 "BUCKET_NAME", "BUCKET_PREFIX", "BUCKET_REGION", "BUCKET_URL_EXPIRY_S",
                 "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                 "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy",
                 "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    url, stop = start_moto_server()
    try:
        yield url
    finally:
        stop()


@pytest.fixture()
def bucket(endpoint: str) -> str:
    name = unique_bucket()
    s3_client(endpoint).create_bucket(Bucket=name)
    return name


def make_settings(endpoint_url: str | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "bucket_endpoint_url": endpoint_url,
        "bucket_access_key_id": TEST_ACCESS_KEY_ID,
        "bucket_secret_access_key": TEST_SECRET_ACCESS_KEY,
    }
    values.update(overrides)
    return Settings(**values)


def download(url: str) -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=10) as client:
        return client.get(url)


def free_closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- module surface ---------------------------------------------------------------------


def test_import_does_not_load_boto3() -> None:
    code = (
        "import sys, comfy_runtime.outputs.store; "
        "print('boto3' in sys.modules, 'botocore' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["False", "False"]


def test_from_settings_is_none_without_endpoint() -> None:
    assert ObjectStore.from_settings(make_settings(None)) is None


def test_construction_is_offline_and_lazy() -> None:
    store = ObjectStore(make_settings("http://127.0.0.1:9/bucket"))
    assert store._client is None  # no client (and no boto3 work) until the first upload


def test_repr_and_errors_hide_credentials() -> None:
    store = ObjectStore(make_settings("http://127.0.0.1:9/bucket"))
    assert TEST_SECRET_ACCESS_KEY not in repr(store)
    assert TEST_ACCESS_KEY_ID not in repr(store)


# --- endpoint rules (pure) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "bucket", "endpoint", "region", "style", "prefix"),
    [
        # AWS virtual-hosted forms: the bucket is the labels before "s3"
        ("https://my-bucket.s3.us-west-2.amazonaws.com", "my-bucket",
         "https://s3.us-west-2.amazonaws.com", "us-west-2", "auto", ""),
        ("https://my-bucket.s3.us-west-2.amazonaws.com/", "my-bucket",
         "https://s3.us-west-2.amazonaws.com", "us-west-2", "auto", ""),
        ("https://my.dotted.bucket.s3.eu-central-1.amazonaws.com", "my.dotted.bucket",
         "https://s3.eu-central-1.amazonaws.com", "eu-central-1", "auto", ""),
        ("https://b1.s3.amazonaws.com", "b1",
         "https://s3.amazonaws.com", "us-east-1", "auto", ""),
        ("https://b1.s3-us-west-2.amazonaws.com", "b1",
         "https://s3-us-west-2.amazonaws.com", "us-west-2", "auto", ""),
        ("https://b1.s3.dualstack.ap-south-1.amazonaws.com", "b1",
         "https://s3.dualstack.ap-south-1.amazonaws.com", "ap-south-1", "auto", ""),
        ("https://b1.s3.cn-north-1.amazonaws.com.cn", "b1",
         "https://s3.cn-north-1.amazonaws.com.cn", "cn-north-1", "auto", ""),
        ("https://B1.S3.US-EAST-2.AMAZONAWS.COM/renders", "b1",
         "https://s3.us-east-2.amazonaws.com", "us-east-2", "auto", "renders"),
        # AWS path-style form: first path segment
        ("https://s3.us-east-1.amazonaws.com/b2", "b2",
         "https://s3.us-east-1.amazonaws.com", "us-east-1", "auto", ""),
        # non-AWS: first path segment, path-style addressing
        ("https://acct123.r2.cloudflarestorage.com/outputs", "outputs",
         "https://acct123.r2.cloudflarestorage.com", "auto", "path", ""),
        ("https://acct123.r2.cloudflarestorage.com/outputs/renders/2024/", "outputs",
         "https://acct123.r2.cloudflarestorage.com", "auto", "path", "renders/2024"),
        ("http://127.0.0.1:9000/b3", "b3", "http://127.0.0.1:9000", "auto", "path", ""),
        ("http://[::1]:9000/b3", "b3", "http://[::1]:9000", "auto", "path", ""),
        ("s3.us-west-004.backblazeb2.com/b4", "b4",
         "https://s3.us-west-004.backblazeb2.com", "us-west-004", "path", ""),
        ("https://user:pw@minio.local:9000/b5", "b5",
         "https://minio.local:9000", "auto", "path", ""),
    ],
)
def test_endpoint_derivation(
    url: str, bucket: str, endpoint: str, region: str, style: str, prefix: str
) -> None:
    loc = resolve_location(url)
    assert (loc.bucket, loc.endpoint_url, loc.region, loc.addressing_style, loc.key_prefix) == (
        bucket, endpoint, region, style, prefix
    )


def test_bucket_name_wins_and_strips_matching_parts() -> None:
    r2 = resolve_location("https://acct.r2.cloudflarestorage.com", bucket_name="named")
    assert (r2.bucket, r2.endpoint_url) == ("named", "https://acct.r2.cloudflarestorage.com")

    same = resolve_location("https://acct.r2.cloudflarestorage.com/named/x", bucket_name="named")
    assert (same.bucket, same.endpoint_url, same.key_prefix) == (
        "named", "https://acct.r2.cloudflarestorage.com", "x"
    )

    # A path that is not the bucket stays on the endpoint (S3 API mounted below a path).
    proxied = resolve_location("https://proxy.example/s3api", bucket_name="named")
    assert (proxied.bucket, proxied.endpoint_url) == ("named", "https://proxy.example/s3api")

    # boto3 adds the bucket to the host itself, so the host's bucket must go either way.
    aws = resolve_location("https://other.s3.eu-west-1.amazonaws.com", bucket_name="named")
    assert (aws.bucket, aws.endpoint_url) == ("named", "https://s3.eu-west-1.amazonaws.com")


def test_region_and_addressing_overrides() -> None:
    loc = resolve_location("https://b.s3.us-west-2.amazonaws.com", region="eu-west-3")
    assert loc.region == "eu-west-3"
    forced = resolve_location("http://h:1/b", addressing_style="virtual")
    assert forced.addressing_style == "virtual"


def test_prefix_joins_endpoint_path_and_bucket_prefix() -> None:
    loc = resolve_location("https://h.example/b/from-url/", bucket_prefix="/from-env//x/")
    assert loc.key_prefix == "from-url/from-env/x"


@pytest.mark.parametrize(
    "url",
    [
        "https://acct.r2.cloudflarestorage.com",
        "https://acct.r2.cloudflarestorage.com/",
        "https://s3.us-east-1.amazonaws.com",
    ],
)
def test_no_bucket_is_a_configuration_error(url: str) -> None:
    with pytest.raises(UploadFailed, match="BUCKET_NAME"):
        resolve_location(url)
    with pytest.raises(UploadFailed, match="BUCKET_NAME") as info:
        ObjectStore(make_settings(url))
    assert info.value.code == "upload_failed"
    assert TEST_SECRET_ACCESS_KEY not in json.dumps(respond(Failed(info.value)))


@pytest.mark.parametrize("url", ["ftp://host/b", "https://host:notaport/b", "   "])
def test_malformed_endpoint_is_a_configuration_error(url: str) -> None:
    with pytest.raises(UploadFailed, match="BUCKET_ENDPOINT_URL"):
        resolve_location(url)


# --- key layout -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("", "job-1/image.png"),
        ("outputs", "outputs/job-1/image.png"),
        ("outputs/", "outputs/job-1/image.png"),
        ("/outputs//nested/", "outputs/nested/job-1/image.png"),
    ],
)
def test_key_layout(prefix: str, expected: str) -> None:
    store = ObjectStore(make_settings("http://127.0.0.1:9/b", bucket_prefix=prefix))
    assert store.key_for("job-1", "image.png") == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ComfyUI_00001_.png", "ComfyUI_00001_.png"),
        ("sub/dir/clip.mp4", "clip.mp4"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\win.png", "win.png"),
        ("a\x00b\r\n\x7f.png", "ab.png"),
        ("..", "output"),
        ("", "output"),
        ("dir/", "output"),
        ("über straße.webp", "über straße.webp"),
    ],
)
def test_key_segment(name: str, expected: str) -> None:
    assert key_segment(name) == expected


def test_key_segment_bounds_length_and_keeps_extension() -> None:
    name = key_segment("x" * 500 + ".png")
    assert len(name) <= 200 and name.endswith(".png")


def test_job_id_is_one_segment() -> None:
    store = ObjectStore(make_settings("http://127.0.0.1:9/b"))
    assert store.key_for("../evil/job", "a.png") == "job/a.png"


# --- uploads against moto -----------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "renders/"])
def test_upload_round_trip(endpoint: str, bucket: str, prefix: str) -> None:
    store = ObjectStore(make_settings(f"{endpoint}/{bucket}", bucket_prefix=prefix))
    payload = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40

    stored = store.upload(
        job_id="job-42", filename="ComfyUI_00001_.png", data=payload, content_type="image/png"
    )

    assert isinstance(stored, StoredObject)
    assert stored.key == f"{prefix}job-42/ComfyUI_00001_.png"
    assert stored.size == len(payload)
    listed = s3_client(endpoint).list_objects_v2(Bucket=bucket)["Contents"]
    assert [obj["Key"] for obj in listed] == [stored.key]

    response = download(stored.url)
    assert response.status_code == 200
    assert response.content == payload
    assert response.headers["content-type"] == "image/png"


def test_presigned_url_is_sigv4_with_configured_expiry(endpoint: str, bucket: str) -> None:
    store = ObjectStore(make_settings(f"{endpoint}/{bucket}", bucket_url_expiry_s=3600))
    stored = store.upload(job_id="j", filename="a.txt", data=b"x", content_type="text/plain")
    query = parse_qs(urlsplit(stored.url).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["3600"]
    assert urlsplit(stored.url).path == f"/{bucket}/j/a.txt"  # path-style on non-AWS hosts
    assert TEST_SECRET_ACCESS_KEY not in stored.url


@pytest.mark.parametrize("kind", ["seekable", "unseekable"])
def test_upload_from_stream(endpoint: str, bucket: str, kind: str) -> None:
    payload = b"RIFF....WEBPVP8 " + b"\x01" * 5000

    class OneShot(io.RawIOBase):
        """A pipe-like stream: readable once, no seek."""

        def __init__(self, data: bytes) -> None:
            self._buf = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b: Any) -> int:
            return self._buf.readinto(b)

    stream: Any = (
        io.BytesIO(payload) if kind == "seekable" else io.BufferedReader(OneShot(payload))
    )
    store = ObjectStore(make_settings(f"{endpoint}/{bucket}"))
    stored = store.upload(job_id="j", filename="out.webp", data=stream, content_type="image/webp")
    assert stored.size == len(payload)
    response = download(stored.url)
    assert response.content == payload
    assert response.headers["content-type"] == "image/webp"


def test_empty_content_type_is_guessed_from_name(endpoint: str, bucket: str) -> None:
    store = ObjectStore(make_settings(f"{endpoint}/{bucket}"))
    video = store.upload(job_id="j", filename="clip.mp4", data=b"\0" * 10, content_type="")
    blob = store.upload(job_id="j", filename="blob", data=b"\0", content_type="")
    assert download(video.url).headers["content-type"] == "video/mp4"
    assert download(blob.url).headers["content-type"] == "application/octet-stream"


def test_client_settings_and_no_default_checksums(endpoint: str, bucket: str) -> None:
    store = ObjectStore(make_settings(f"{endpoint}/{bucket}"))
    client = store._get_client()
    config = client.meta.config
    assert config.signature_version == "s3v4"
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"
    assert config.s3 == {"addressing_style": "path"}
    assert config.retries["mode"] == "standard"

    sent: list[dict[str, str]] = []
    client.meta.events.register(
        "before-send.s3.PutObject", lambda request, **_: sent.append(dict(request.headers))
    )
    store.upload(job_id="j", filename="c.bin", data=b"abc", content_type="application/x-test")
    headers = {k.lower(): v for k, v in sent[0].items()}
    checksum_headers = [
        h for h in headers
        if h.startswith("x-amz-checksum") or h == "x-amz-sdk-checksum-algorithm"
    ]
    assert checksum_headers == []
    assert "aws4-hmac-sha256" in str(headers["authorization"]).lower()


def test_only_a_large_body_waits_for_100_continue(endpoint: str, bucket: str) -> None:
    # Waiting for "100 Continue" costs every upload a round trip; it only pays off where a
    # refusal would come after a large body was sent.
    store = ObjectStore(make_settings(f"{endpoint}/{bucket}"))
    client = store._get_client()
    expect: dict[str, str | None] = {}
    client.meta.events.register(
        "before-send.s3.PutObject",
        lambda request, **_: expect.__setitem__(request.url.rsplit("/", 1)[1],
                                                request.headers.get("Expect")))
    large = os.urandom(EXPECT_CONTINUE_MIN_BYTES)
    for name, data in (("small.bin", b"abc"), ("large.bin", large)):
        stored = store.upload(job_id="j", filename=name, data=data, content_type="")
        assert httpx.get(stored.url).content == data
    assert expect["small.bin"] is None
    assert expect["large.bin"] in ("100-continue", b"100-continue")


def test_endpoint_without_bucket_uses_bucket_name(endpoint: str, bucket: str) -> None:
    store = ObjectStore(make_settings(endpoint, bucket_name=bucket, bucket_prefix="p"))
    stored = store.upload(job_id="j", filename="n.txt", data=b"named", content_type="text/plain")
    assert stored.key == "p/j/n.txt"
    assert download(stored.url).content == b"named"


def test_concurrent_uploads_share_one_client(
    endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ObjectStore(make_settings(f"{endpoint}/{bucket}"))
    builds: list[int] = []
    real_build = store._build_client

    def counting_build() -> Any:
        builds.append(threading.get_ident())
        time.sleep(0.05)  # widen the window in which a second build could sneak in
        return real_build()

    monkeypatch.setattr(store, "_build_client", counting_build)
    names = [f"frame_{i:03d}.png" for i in range(12)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(
            pool.map(
                lambda n: store.upload(
                    job_id="job-t", filename=n, data=n.encode(), content_type="image/png"
                ),
                names,
            )
        )
    assert len(builds) == 1
    assert sorted(r.key for r in results) == sorted(f"job-t/{n}" for n in names)
    for result, name in zip(results, names, strict=True):
        assert download(result.url).content == name.encode()


# --- failures ---------------------------------------------------------------------------


def assert_no_credentials_leak(err: UploadFailed, caplog: pytest.LogCaptureFixture,
                               secret: str, key_id: str) -> None:
    rendered = json.dumps(respond(Failed(err))) + str(err) + repr(err.details)
    assert secret not in rendered
    assert key_id not in rendered
    # Every logger at DEBUG (botocore included) must not print the secret...
    assert secret not in caplog.text
    # ...and ours must not print the key id either (botocore's DEBUG header dumps do).
    ours = "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith("comfy_runtime")
    )
    assert key_id not in ours


def test_missing_bucket(endpoint: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store = ObjectStore(make_settings(f"{endpoint}/{unique_bucket('absent')}"), **FAST)
    with pytest.raises(UploadFailed, match="NoSuchBucket") as info:
        store.upload(job_id="j", filename="x.png", data=b"x", content_type="image/png")
    assert info.value.details[0]["code"] == "NoSuchBucket"
    assert info.value.details[0]["attempts"] == 1  # not transient: no retries
    assert_no_credentials_leak(info.value, caplog, TEST_SECRET_ACCESS_KEY, TEST_ACCESS_KEY_ID)


@pytest.fixture()
def iam_user(endpoint: str, bucket: str) -> Iterator[tuple[str, str]]:
    """Real credentials in moto's IAM, then moto switched to checking every request."""
    import boto3.session
    from moto.core.authorization import enable_iam_authentication

    iam = boto3.session.Session(
        aws_access_key_id=TEST_ACCESS_KEY_ID,
        aws_secret_access_key=TEST_SECRET_ACCESS_KEY,
        region_name="us-east-1",
    ).client("iam", endpoint_url=endpoint)
    user = unique_bucket("uploader")
    iam.create_user(UserName=user)
    policy = {"Version": "2012-10-17",
              "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    with enable_iam_authentication():
        yield key["AccessKeyId"], key["SecretAccessKey"]


def test_valid_credentials_pass_moto_signature_check(
    endpoint: str, bucket: str, iam_user: tuple[str, str]
) -> None:
    key_id, secret = iam_user
    settings = make_settings(f"{endpoint}/{bucket}", bucket_access_key_id=key_id,
                             bucket_secret_access_key=secret)
    stored = ObjectStore(settings, **FAST).upload(
        job_id="j", filename="ok.txt", data=b"ok", content_type="text/plain"
    )
    # moto's IAM mode cannot serve presigned GETs, so check the object with the same keys.
    head = s3_client(endpoint, access_key_id=key_id, secret_access_key=secret).head_object(
        Bucket=bucket, Key=stored.key
    )
    assert head["ContentType"] == "text/plain"


@pytest.mark.parametrize("size", [1, 3 * EXPECT_CONTINUE_MIN_BYTES])
@pytest.mark.parametrize(
    ("which", "code"),
    [("unknown-key", "InvalidAccessKeyId"), ("wrong-secret", "SignatureDoesNotMatch")],
)
def test_bad_credentials(
    endpoint: str, bucket: str, iam_user: tuple[str, str], caplog: pytest.LogCaptureFixture,
    which: str, code: str, size: int,
) -> None:
    real_key_id, _ = iam_user
    key_id = real_key_id if which == "wrong-secret" else "AKIAUNKNOWNUNKNOWN00"
    secret = "wrong-secret-" + "s" * 27
    caplog.set_level(logging.DEBUG)
    settings = make_settings(f"{endpoint}/{bucket}", bucket_access_key_id=key_id,
                             bucket_secret_access_key=secret)
    with pytest.raises(UploadFailed, match=code) as info:
        ObjectStore(settings, **FAST).upload(
            job_id="j", filename="x.png", data=b"x" * size, content_type="image/png"
        )
    assert info.value.details[0]["code"] == code
    assert info.value.details[0]["attempts"] == 1
    assert_no_credentials_leak(info.value, caplog, secret, key_id)


def test_dead_endpoint_fails_after_bounded_retries(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_closed_port()
    store = ObjectStore(
        make_settings(f"http://127.0.0.1:{port}/bucket"),
        max_attempts=3,
        botocore_max_attempts=1,
        **FAST,
    )
    started = time.monotonic()
    with pytest.raises(UploadFailed, match="EndpointConnectionError") as info:
        store.upload(job_id="j", filename="x.png", data=b"x", content_type="image/png")
    assert time.monotonic() - started < 10
    assert info.value.details[0]["attempts"] == 3
    retries = [
        r for r in caplog.records
        if r.name == "comfy_runtime.outputs.store" and "retry" in r.getMessage()
    ]
    assert len(retries) == 2
    assert_no_credentials_leak(info.value, caplog, TEST_SECRET_ACCESS_KEY, TEST_ACCESS_KEY_ID)


def test_transient_store_error_is_retried(
    endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError

    store = ObjectStore(make_settings(f"{endpoint}/{bucket}"), **FAST)
    client = store._get_client()
    real_put = client.put_object
    calls: list[int] = []

    def flaky_put(**kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise ClientError(
                {"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."},
                 "ResponseMetadata": {"HTTPStatusCode": 503}},
                "PutObject",
            )
        return real_put(**kwargs)

    monkeypatch.setattr(client, "put_object", flaky_put)
    stream = io.BytesIO(b"retried body")
    stored = store.upload(job_id="j", filename="r.txt", data=stream, content_type="text/plain")
    assert len(calls) == 2
    assert download(stored.url).content == b"retried body"
