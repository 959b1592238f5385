"""Serve RunPod's public URL layout in front of the SDK's local API, for trying clients locally.

`python handler.py --rp_serve_api` (the runpod SDK's development server) answers `/run`,
`/runsync`, and `POST /status/{id}` and `POST /stream/{id}` at the root. A RunPod endpoint
answers `https://api.runpod.ai/v2/{endpoint_id}/run`, ... with `GET` for status and stream.
This proxy translates the one into the other, so the examples here (and your own client)
run unchanged against a local worker:

    python handler.py --rp_serve_api --rp_api_port 8000            # the worker
    python examples/local_gateway.py --upstream http://127.0.0.1:8000 --port 8080
    export RUNPOD_ENDPOINT_BASE_URL=http://127.0.0.1:8080/v2 ENDPOINT_ID=local RUNPOD_API_KEY=x
    python examples/client.py runsync test_input.json --out outputs/

What it changes: the `/v2/{endpoint_id}` prefix is removed, and `GET` on status and stream
becomes the local server's `POST`. Nothing else is made up: the local server has no
`/cancel`, `/health` or `/purge-queue`, so those answer 404; it runs a `/run` job inside the
first status request for it (the SDK waits 10 s for a status answer: use `runsync` for longer
local jobs); and it forgets a job once it has reported its result. The API key is not checked.
"""

from __future__ import annotations

import argparse
import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# The local server takes POST where the platform takes GET.
_POST_UPSTREAM = {"status", "stream"}
# A /runsync job runs inside the request; the platform's own limit is far below this.
UPSTREAM_TIMEOUT_S = 3600.0


@dataclass
class Seen:
    """One request as the gateway received it (tests read these)."""

    method: str
    path: str
    authorization: str | None


@dataclass
class Gateway:
    server: ThreadingHTTPServer
    upstream: str
    seen: list[Seen] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        """What `RUNPOD_ENDPOINT_BASE_URL` (runpod.endpoint_url_base) should be."""
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/v2"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _local_path(path: str) -> str | None:
    """`/v2/{endpoint_id}/status/ID` -> `/status/ID`; None for paths outside the layout."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    if len(parts) < 3 or parts[0] != "v2":
        return None
    return "/" + "/".join(parts[2:])


def _make_handler(gateway: Gateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._forward()

        def do_POST(self) -> None:
            self._forward()

        def _forward(self) -> None:
            gateway.seen.append(Seen(self.command, self.path, self.headers.get("Authorization")))
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            local = _local_path(self.path)
            if local is None:
                self._reply(404, {"error": f"not a /v2/{{endpoint_id}}/... path: {self.path}"})
                return
            operation = local.strip("/").split("/")[0]
            method = "POST" if operation in _POST_UPSTREAM else self.command
            request = urllib.request.Request(
                gateway.upstream.rstrip("/") + local,
                data=body if method == "POST" else None,
                method=method,
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=UPSTREAM_TIMEOUT_S) as response:
                    self._reply_raw(response.status, response.read())
            except urllib.error.HTTPError as exc:
                self._reply_raw(exc.code, exc.read())
            except OSError as exc:
                self._reply(502, {"error": f"local API at {gateway.upstream} unreachable: {exc}"})

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            self._reply_raw(status, json.dumps(payload).encode())

        def _reply_raw(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the worker logs every job already

    return Handler


def serve(upstream: str, host: str = "127.0.0.1", port: int = 0) -> Gateway:
    """Start the gateway in a background thread; port 0 picks a free one."""
    server = ThreadingHTTPServer((host, port), BaseHTTPRequestHandler)
    gateway = Gateway(server=server, upstream=upstream)
    server.RequestHandlerClass = _make_handler(gateway)
    threading.Thread(target=server.serve_forever, name="local-gateway", daemon=True).start()
    return gateway


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", default="http://127.0.0.1:8000",
                        help="the worker's --rp_serve_api address")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    gateway = serve(args.upstream, args.host, args.port)
    print(f"RUNPOD_ENDPOINT_BASE_URL={gateway.base_url}  ->  {args.upstream}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        gateway.close()


if __name__ == "__main__":
    main()
