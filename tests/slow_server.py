"""A loopback HTTP server that answers after a delay: a slow object store or input URL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def slow_server(body: bytes, delay_s: float, content_type: str = "image/png") -> Iterator[str]:
    """Serves `body` at every path, `delay_s` after each request arrives; yields the base URL."""
    stopping = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            stopping.wait(delay_s)
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        stopping.set()
        server.shutdown()
        server.server_close()


@contextmanager
def header_drip_server(interval_s: float = 0.2, content_length: int | None = None
                       ) -> Iterator[tuple[str, list[str]]]:
    """A server that sends its status line, then its headers one byte every `interval_s`, for
    as long as the client listens: each read gets a byte, so no per-read timeout ever fires.
    With `content_length`, once the headers are done it declares that length and closes
    without sending a byte. Yields the base URL and the paths it was asked for."""
    stopping = threading.Event()
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            asked.append(self.path)
            try:
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                if content_length is not None:
                    self.wfile.write(b"Content-Length: %d\r\n\r\n" % content_length)
                    self.wfile.flush()
                    return
                self.wfile.write(b"X-Slow: ")
                while not stopping.wait(interval_s):
                    self.wfile.write(b"a")
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        stopping.set()
        server.shutdown()
        server.server_close()
