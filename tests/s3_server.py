"""A real S3 API on loopback for tests: moto's server in a thread of the test process.

moto keeps its buckets in process-wide state, so every server started here sees the same
buckets; tests should use their own bucket names (see `unique_bucket`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

TEST_REGION = "us-east-1"
TEST_ACCESS_KEY_ID = "AKIATESTTESTTESTTEST"
TEST_SECRET_ACCESS_KEY = "test-secret-DO-NOT-LEAK-0123456789abcdef"


def start_moto_server(latency_s: float = 0.0) -> tuple[str, Callable[[], None]]:
    """Start moto's S3 server on 127.0.0.1 at a free port; return (endpoint_url, stop).

    `latency_s` holds every request that long before moto sees it, as a store across a
    network would (the concurrency benchmark's remote store); 0 runs moto's own server as is.
    """
    from moto.server import ThreadedMotoServer

    if latency_s <= 0:
        # Port 0 lets the OS pick a free port atomically; get_host_and_port reports it.
        plain = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        plain.start()
        host, port = plain.get_host_and_port()
        return f"http://{host}:{port}", plain.stop
    return _start_delayed_moto(latency_s)


def _start_delayed_moto(latency_s: float) -> tuple[str, Callable[[], None]]:
    import threading
    import time

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    app = DomainDispatcherApplication(create_backend_app)

    def delayed(environ: Any, start_response: Any) -> Any:
        time.sleep(latency_s)  # each request in its own thread: a wait, not a queue
        return app(environ, start_response)

    server = make_server("127.0.0.1", 0, delayed, threaded=True,
                         request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        thread.join()

    return f"http://127.0.0.1:{server.server_address[1]}", stop


@contextmanager
def moto_server() -> Iterator[str]:
    endpoint, stop = start_moto_server()
    try:
        yield endpoint
    finally:
        stop()


def unique_bucket(stem: str = "test") -> str:
    return f"{stem}-{uuid.uuid4().hex[:12]}"


def s3_client(
    endpoint_url: str,
    *,
    access_key_id: str = TEST_ACCESS_KEY_ID,
    secret_access_key: str = TEST_SECRET_ACCESS_KEY,
) -> Any:
    """A plain boto3 client for arranging and inspecting the store from a test."""
    import boto3.session
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        region_name=TEST_REGION,
    )
    return session.client(
        "s3",
        endpoint_url=endpoint_url,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
