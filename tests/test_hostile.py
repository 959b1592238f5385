"""Hostile job inputs and ComfyUI faults, through the real worker and the ComfyUI double.

Every case in `CASES` runs the same way (`test_hostile_case`): snapshot every file under the
test's folder (ComfyUI's input/output/temp, a canary folder, and the working directory the
worker runs in), run the job, check its `error_code` and that the message names the problem,
check that nothing was written or changed anywhere, then run a normal job on the same worker
and check that it works and leaves nothing behind.

URL inputs: the worker's own download path (`media` -> `url_fetch.fetch_url`) runs with its
default policy. Two seams, both at the network's edge and none in our logic:

* `url_fetch.default_resolver` is replaced by a table, so made-up names resolve to chosen
  addresses (`intranet.example.test` -> 10.0.0.1) without real DNS;
* the test web server listens on 127.0.0.2, and the address check is told that this one
  address is public (`tests.loopback.judge_public`). Every other address,
  127.0.0.1, ::1 and 169.254.169.254 included, is judged by the real policy, so a redirect from
  that server to any of them goes through the same check as a first URL would.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import io
import socket
import struct
import threading
import tracemalloc
import wave
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from comfy_runtime.contract import InputFile
from comfy_runtime.errors import InvalidInput
from comfy_runtime.fetch import download as url_fetch
from comfy_runtime.graph_checks import MAX_VALUE_DEPTH, check_graph, check_nesting
from comfy_runtime.inputs.decode import InputLimits, decode_inputs
from comfy_runtime.settings import Settings
from tests.comfy_double import ComfyDouble
from tests.comfy_double.faults import Faults
from tests.harness import WorkerHarness
from tests.images import open_image, png_b64, png_bytes
from tests.loopback import PUBLIC_IP, judge_public

pytestmark = pytest.mark.timeout(60)

MB = 1024 * 1024
PUBLIC_NAME = "images.example.test"
RESOLVER_TABLE = {
    PUBLIC_NAME: [PUBLIC_IP],
    "intranet.example.test": ["10.0.0.1"],
    "metadata.example.test": ["169.254.169.254"],
}
# Small limits, so every limit is reached with small inputs; the defaults are checked apart.
LIMITS: dict[str, Any] = {
    "max_input_bytes": 1 * MB,
    "max_inputs": 4,
    "max_graph_nodes": 50,
    "max_pixels": 4096 * 4096,
    "input_fetch_timeout_s": 1.0,
}


# --- graphs and inputs ---------------------------------------------------------------------------


def load_save(*names: str, prefix: str = "out") -> dict[str, Any]:
    """LoadImage -> SaveImage for each name: the output shows which file ComfyUI read."""
    graph: dict[str, Any] = {}
    for index, name in enumerate(names):
        load, save = str(2 * index + 1), str(2 * index + 2)
        graph[load] = {"class_type": "LoadImage", "inputs": {"image": name}}
        graph[save] = {
            "class_type": "SaveImage",
            "inputs": {"images": [load, 0], "filename_prefix": f"{prefix}{index}"},
        }
    return graph


RED, BLUE, GREEN = (200, 20, 20), (20, 20, 200), (10, 200, 30)
PHOTO = {"name": "photo.png", "image": png_b64(color=GREEN)}
NORMAL_JOB = {"workflow": load_save("photo.png"), "images": [PHOTO]}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png_header(width: int, height: int) -> bytes:
    """A valid PNG claiming width x height, with a tiny body: costly only if decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + chunk(b"IEND", b"")
    )


def jpeg_bytes(color: tuple[int, int, int] = (200, 20, 20)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(buffer, "JPEG")
    return buffer.getvalue()


def wav_bytes() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * 800)
    return buffer.getvalue()


MP4_HEAD = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2mp41" + b"\x00" * 64
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\nshowpage\n"


def animation(fmt: str, frames: int, size: tuple[int, int]) -> Callable[[Env], str]:
    """Built when the case runs (a 3000x3000 frame takes a moment to encode)."""

    def build(env: Env) -> str:
        images = [Image.new("RGB", size, (60 * i, 255 - 60 * i, 9)) for i in range(frames)]
        buffer = io.BytesIO()
        images[0].save(buffer, format=fmt, save_all=True, append_images=images[1:])
        return b64(buffer.getvalue())

    return build


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


# --- a web server on an address the policy is told is public --------------------------------


Route = Callable[["_Handler"], None]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__((PUBLIC_IP, 0), _Handler)
        self.routes: dict[str, Route] = {}
        self.stop = threading.Event()

    def url(self, path: str) -> str:
        return f"http://{PUBLIC_NAME}:{self.server_address[1]}{path}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self.close_connection = True
        route = self.server.routes.get(self.path)
        if route is None:
            _reply(self, 404, b"not here")
        else:
            route(self)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _reply(handler: _Handler, status: int, body: bytes = b"", **headers: str) -> None:
    try:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the worker gave up first, as it should


def _drip(handler: _Handler) -> None:
    try:
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        for _ in range(1000):
            handler.wfile.write(b"x")
            handler.wfile.flush()
            if handler.server.stop.wait(0.1):
                return
    except (BrokenPipeError, ConnectionResetError):
        pass


def _oversize(handler: _Handler) -> None:
    # No Content-Length: the cap must be enforced while reading, not from the header.
    try:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        handler.end_headers()
        piece = b"x" * 65536
        for _ in range(64):  # 4 MB against a 1 MB cap
            handler.wfile.write(piece)
    except (BrokenPipeError, ConnectionResetError):
        pass


@functools.cache
def _gzip_bomb() -> bytes:
    return gzip.compress(bytes(10 * MB), compresslevel=9)  # 10 MiB of zeros in about 10 KiB


ROUTES: dict[str, Route] = {
    "/photo.png": lambda h: _reply(h, 200, png_bytes(color=GREEN), Content_Type="image/png"),
    "/page.png": lambda h: _reply(h, 200, b"<!doctype html>hi", Content_Type="text/html"),
    "/drip.png": _drip,
    "/big.png": _oversize,
    "/bomb.png": lambda h: _reply(
        h, 200, _gzip_bomb(), Content_Type="image/png", Content_Encoding="gzip"
    ),
    "/to-comfyui": lambda h: _reply(h, 302, Location="http://127.0.0.1:8188/prompt"),
    "/to-metadata": lambda h: _reply(
        h, 302, Location="http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    ),
    "/to-ipv6": lambda h: _reply(h, 307, Location="http://[::1]/"),
    "/to-intranet": lambda h: _reply(h, 301, Location="http://intranet.example.test/admin"),
    "/to-file": lambda h: _reply(h, 302, Location="file:///etc/passwd"),
    "/loop": lambda h: _reply(h, 302, Location="/loop"),
}


@pytest.fixture(scope="module")
def web() -> Iterator[_Server]:
    server = _Server()
    server.routes.update(ROUTES)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    yield server
    server.stop.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _table_resolver(host: str, port: int) -> list[str]:
    if host not in RESOLVER_TABLE:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return RESOLVER_TABLE[host]


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Made-up names resolve from a table; only the test server's address counts as public."""
    monkeypatch.setattr(url_fetch, "default_resolver", _table_resolver)
    judge_public(monkeypatch)


# --- the environment of one case -------------------------------------------------------------


@dataclass
class Env:
    double: ComfyDouble
    harness: WorkerHarness
    web: _Server
    root: Path

    def snapshot(self) -> dict[str, str]:
        """Every file and folder under the test's folder, with a hash of each file."""
        found: dict[str, str] = {}
        for path in sorted(self.root.rglob("*")):
            key = str(path.relative_to(self.root))
            if path.is_dir():
                found[key] = "<dir>"
            else:
                found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        return found


def _make_env(
    tmp_path: Path, double: ComfyDouble, web: _Server, monkeypatch: pytest.MonkeyPatch,
    **overrides: Any,
) -> Iterator[Env]:
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (canary / "photo.png").write_bytes(png_bytes(color=(1, 2, 3)))
    # Relative paths that slipped through would land in the working directory: make it ours.
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    harness = WorkerHarness(double, **{**LIMITS, **overrides})
    try:
        yield Env(double, harness, web, tmp_path)
    finally:
        harness.worker.close()


@pytest.fixture
def env(
    tmp_path: Path, comfy_double: ComfyDouble, web: _Server, network: None,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Env]:
    yield from _make_env(tmp_path, comfy_double, web, monkeypatch)


@pytest.fixture
def http_env(
    tmp_path: Path, comfy_double: ComfyDouble, web: _Server, network: None,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Env]:
    """Files travel through ComfyUI's HTTP API, as with a remote ComfyUI."""
    yield from _make_env(tmp_path, comfy_double, web, monkeypatch, comfyui_local_files=False)


# --- the table -------------------------------------------------------------------------------

JobInput = dict[str, Any] | Callable[[Env], Any]
Check = Callable[[Env, dict[str, Any]], None]


@dataclass(frozen=True)
class Case:
    id: str
    job: JobInput
    code: str | None  # None: the job succeeds
    words: tuple[str, ...] = ()  # each appears in the error message
    faults: dict[str, Any] = field(default_factory=dict)
    http_only: bool = False
    comfyui_down: bool = False
    check: Check | None = None


def with_image(image: str | Callable[[Env], str], name: str = "photo.png") -> JobInput:
    """A normal graph whose one input is `image` (a value, or built from the env)."""

    def build(env: Env) -> dict[str, Any]:
        value = image(env) if callable(image) else image
        return {"workflow": load_save(name), "images": [{"name": name, "image": value}]}

    return build


def with_graph(graph: Any, **extra: Any) -> dict[str, Any]:
    return {"workflow": graph, **extra}


def from_web(path: str) -> Callable[[Env], str]:
    return lambda env: env.web.url(path)


def loads_from_job_folder(*expected: tuple[str, tuple[int, int, int]]) -> Check:
    """Each LoadImage read (file name, color) from the job's own folder, and nothing else."""

    def check(env: Env, result: dict[str, Any]) -> None:
        sent = env.double.prompts[-1]["prompt"]
        paths = [node["inputs"]["image"] for node in sent.values()
                 if node["class_type"] == "LoadImage"]
        folders = {path.split("/")[0] for path in paths}
        assert len(folders) == 1 and folders.pop().startswith("job-"), paths
        assert [path.split("/", 1)[1] for path in paths] == [name for name, _ in expected]
        colors = [open_image(base64.b64decode(item["data"])).convert("RGB").getpixel((0, 0))
                  for item in sorted(result["images"], key=lambda i: int(i["node_id"]))]
        assert colors == [color for _, color in expected]

    return check


def named(name: str, color: tuple[int, int, int] = GREEN) -> dict[str, str]:
    return {"name": name, "image": png_b64(color=color)}


CASES: list[Case] = [
    # --- URL inputs: the address policy -----------------------------------------------------
    Case("url-comfyui-itself", with_image(lambda env: f"{env.double.url}/prompt"),
         "invalid_input", ("images[0].image", "loopback", "ALLOW_PRIVATE_URLS")),
    Case("url-127-8188", with_image("http://127.0.0.1:8188/prompt"),
         "invalid_input", ("images[0].image", "127.0.0.1", "loopback")),
    Case("url-metadata", with_image("http://169.254.169.254/latest/meta-data/"),
         "invalid_input", ("169.254.169.254", "link-local")),
    Case("url-ipv6-loopback", with_image("http://[::1]/"),
         "invalid_input", ("::1", "loopback")),
    Case("url-ipv4-mapped-metadata", with_image("http://[::ffff:169.254.169.254]/x.png"),
         "invalid_input", ("link-local", "embedded in an IPv6 address")),
    Case("url-name-to-10.0.0.1", with_image("https://intranet.example.test/cat.png"),
         "invalid_input", ("'intranet.example.test' resolves to 10.0.0.1", "private address")),
    Case("url-name-to-metadata", with_image("http://metadata.example.test/latest/"),
         "invalid_input", ("resolves to 169.254.169.254", "link-local")),
    # --- URL inputs: redirects from a server the policy accepts -------------------------------
    Case("redirect-to-comfyui", with_image(from_web("/to-comfyui")),
         "invalid_input", ("redirect target", "127.0.0.1", "loopback")),
    Case("redirect-to-metadata", with_image(from_web("/to-metadata")),
         "invalid_input", ("redirect target", "169.254.169.254", "link-local")),
    Case("redirect-to-ipv6-loopback", with_image(from_web("/to-ipv6")),
         "invalid_input", ("redirect target", "::1", "loopback")),
    Case("redirect-to-private-name", with_image(from_web("/to-intranet")),
         "invalid_input", ("redirect target", "resolves to 10.0.0.1")),
    Case("redirect-to-file", with_image(from_web("/to-file")),
         "invalid_input", ("redirect to URL scheme 'file'",)),
    Case("redirect-loop", with_image(from_web("/loop")),
         "input_fetch_failed", ("redirected more than 5 times",)),
    # --- URL inputs: what comes back ----------------------------------------------------------
    Case("url-slow-drip", with_image(from_web("/drip.png")),
         "input_fetch_failed", ("images[0].image", "took longer than 1 s")),
    Case("url-oversize", with_image(from_web("/big.png")),
         "input_fetch_failed", ("images[0].image", "MAX_INPUT_BYTES")),
    Case("url-gzip-bomb", with_image(from_web("/bomb.png")),
         "input_fetch_failed", ("images[0].image", "Content-Encoding gzip")),
    Case("url-html-named-png", with_image(from_web("/page.png")),
         "invalid_input", ("images[0]", "not an image", "HTML")),
    Case("url-404", with_image(from_web("/nothing.png")),
         "input_fetch_failed", ("HTTP 404",)),
    Case("url-unknown-host", with_image("http://nowhere.example.test/x.png"),
         "input_fetch_failed", ("could not resolve",)),
    Case("url-public-download-works", with_image(from_web("/photo.png")), None,
         check=loads_from_job_folder(("photo.png", GREEN))),
    Case("url-file-scheme", with_image("file:///etc/passwd"),
         "invalid_input", ("images[0].image", "scheme 'file'")),
    Case("url-ftp-scheme", with_image("ftp://example.com/photo.png"),
         "invalid_input", ("images[0].image", "scheme 'ftp'")),
    # --- decoded inputs ------------------------------------------------------------------------
    Case("base64-truncated", with_image(png_b64()[:-3]),
         "invalid_input", ("images[0].image", "not valid base64")),
    Case("base64-bad-characters", with_image("iVBORw0KGgo$$$$!!!!"),
         "invalid_input", ("images[0].image", "not valid base64")),
    Case("data-uri-not-base64", with_image("data:image/png,hello"),
         "invalid_input", ("images[0].image", "data:<type>;base64")),
    Case("base64-over-the-cap", with_image("A" * (2 * MB)),
         "invalid_input", ("images[0].image", "MAX_INPUT_BYTES")),
    Case("data-uri-over-the-cap", with_image("data:image/png;base64," + "A" * (2 * MB)),
         "invalid_input", ("images[0].image", "MAX_INPUT_BYTES")),
    Case("png-bomb-20000x20000", with_image(b64(png_header(20000, 20000))),
         "invalid_input", ("images[0]", "decompression bomb", "MAX_PIXELS")),
    Case("png-over-max-pixels", with_image(b64(png_header(5000, 5000))),
         "invalid_input", ("images[0]", "5000x5000 pixels", "MAX_PIXELS")),
    # Each frame is under MAX_PIXELS (4096x4096); two of them are not, and LoadImage would
    # decode both.
    Case("apng-frames-over-max-pixels", with_image(animation("PNG", 2, (3000, 3000))),
         "invalid_input", ("images[0]", "2 frames of 3000x3000", "MAX_PIXELS")),
    Case("gif-frames-over-max-pixels", with_image(animation("GIF", 3, (3000, 3000)), "a.gif"),
         "invalid_input", ("images[0]", "frames of 3000x3000", "MAX_PIXELS")),
    Case("png-name-html-content", with_image(b64(b"<html><script>x</script></html>")),
         "invalid_input", ("images[0]", "not an image", "HTML")),
    Case("png-name-eps-content", with_image(b64(EPS)),
         "invalid_input", ("images[0]", "not an image", "PostScript")),
    Case("png-name-wav-content", with_image(b64(wav_bytes())),
         "invalid_input", ("images[0]", "not an image", "WAV")),
    Case("mp4-name-png-content", with_image(png_b64(), name="clip.mp4"),
         "invalid_input", ("images[0]", "named as video (.mp4)", "a PNG image")),
    Case("wav-name-mp4-content", with_image(b64(MP4_HEAD), name="voice.wav"),
         "invalid_input", ("images[0]", "named as audio (.wav)", "MP4/MOV")),
    # Images are read by content (Pillow, ComfyUI): JPEG data under a .png name is accepted.
    Case("jpeg-content-named-png", with_image(b64(jpeg_bytes(RED))), None),
    Case("shell-script-extension", with_image(b64(b"#!/bin/sh\nrm -rf /\n"), name="run.sh"),
         "invalid_input", ("images[0].name", "'.sh'")),
    Case("no-extension",
         {"workflow": load_save("photo.png"),
          "images": [PHOTO, {"name": "../../etc/passwd", "image": b64(b"root:x:0:0")}]},
         "invalid_input", ("images[1].name", "'../../etc/passwd' has no extension")),
    # --- names: reduced to safe names in the job's folder --------------------------------------
    Case("name-dotdot-unreferenced",
         {"workflow": load_save("photo.png"), "images": [PHOTO, named("../../photo2.png")]},
         None, check=loads_from_job_folder(("photo.png", GREEN))),
    Case("name-absolute-unreferenced",
         {"workflow": load_save("photo.png"), "images": [PHOTO, named("/etc/cron.d/x.png")]},
         None),
    Case("name-nul-unreferenced",
         {"workflow": load_save("photo.png"), "images": [PHOTO, named("ph\x00oto2.png")]},
         None),
    Case("name-windows-separators",
         {"workflow": load_save("uploads\\me\\cat.png"),
          "images": [named("uploads\\me\\cat.png", RED)]},
         None, check=loads_from_job_folder(("cat.png", RED))),
    Case("name-control-characters",
         {"workflow": load_save("c\x01a\x1bt\r.png"), "images": [named("c\x01a\x1bt\r.png", BLUE)]},
         None, check=loads_from_job_folder(("c_a_t_.png", BLUE))),
    Case("names-meeting-after-reduction",
         {"workflow": load_save("a/cat.png", "b/cat.png"),
          "images": [named("a/cat.png", RED), named("b/cat.png", BLUE)]},
         None, check=loads_from_job_folder(("cat.png", RED), ("cat-2.png", BLUE))),
    Case("name-very-long",
         {"workflow": load_save("x" * 250 + ".png"), "images": [named("x" * 250 + ".png", RED)]},
         None, check=loads_from_job_folder(("x" * 124 + ".png", RED))),
    Case("name-dotdot-referenced",
         {"workflow": load_save("../../cat.png"), "images": [named("../../cat.png", RED)]},
         None, check=loads_from_job_folder(("cat.png", RED))),
    Case("name-windows-drive-referenced",
         {"workflow": load_save("C:\\Users\\me\\cat.png"),
          "images": [named("C:\\Users\\me\\cat.png", RED)]},
         None, check=loads_from_job_folder(("cat.png", RED))),
    # --- graph references outside the job's files ----------------------------------------------
    Case("graph-loads-etc-passwd", with_graph(load_save("/etc/passwd")),
         "invalid_input", ("workflow.1.inputs.image", "'/etc/passwd'", "points outside")),
    Case("graph-loads-models-via-dotdot", with_graph(load_save("../../models/x.safetensors")),
         "invalid_input", ("workflow.1.inputs.image", "points outside")),
    Case("graph-loads-windows-path", with_graph(load_save("C:\\windows\\x.png")),
         "invalid_input", ("workflow.1.inputs.image", "points outside")),
    Case("graph-loads-absolute-with-spaces", with_graph(load_save("/home/me/My Pictures/x.png")),
         "invalid_input", ("workflow.1.inputs.image", "points outside")),
    Case("graph-loads-nul", with_graph(load_save("photo.png\x00.txt")),
         "invalid_input", ("workflow.1.inputs.image", "points outside")),
    Case("graph-saves-outside", with_graph(load_save("photo.png", prefix="../../../tmp/owned")),
         "invalid_input", ("workflow.2.inputs.filename_prefix", "points outside"),),
    Case("graph-path-nested-in-a-list",
         with_graph({**load_save("photo.png"),
                     "9": {"class_type": "PreviewAny", "inputs": {"source": ["x", ["../../x"]]}}}),
         "invalid_input", ("workflow.9.inputs.source[1][0]", "points outside")),
    # --- shapes --------------------------------------------------------------------------------
    Case("input-not-an-object", lambda env: ["workflow"], "invalid_input", ("input", "object")),
    Case("workflow-a-list", with_graph([{"class_type": "LoadImage"}]),
         "invalid_input", ("workflow", "API-format graph")),
    Case("workflow-missing", {"images": [PHOTO]}, "invalid_input", ("workflow", "missing")),
    Case("workflow-editor-format-unknown-node",
         with_graph({"last_node_id": 2, "links": [],
                     "nodes": [{"id": 1, "type": "NoSuchNode", "mode": 0, "inputs": [],
                                "outputs": [], "widgets_values": []}]}),
         "workflow_invalid", ("NoSuchNode", "custom node")),
    Case("node-without-class-type", with_graph({"1": {"inputs": {}}}),
         "invalid_input", ("workflow.1.class_type",)),
    Case("node-not-an-object", with_graph({"1": "LoadImage"}),
         "invalid_input", ("workflow.1", "object")),
    Case("inputs-not-an-object", with_graph({"1": {"class_type": "LoadImage", "inputs": [1]}}),
         "invalid_input", ("workflow.1.inputs",)),
    Case("graph-over-max-nodes",
         with_graph({str(i): {"class_type": "PreviewAny", "inputs": {}} for i in range(51)}),
         "invalid_input", ("workflow", "51 nodes", "MAX_GRAPH_NODES")),
    Case("value-nested-past-the-limit",
         with_graph({**load_save("photo.png"),
                     "9": {"class_type": "PreviewAny",
                           "inputs": {"source": nested(MAX_VALUE_DEPTH + 5)}}}),
         "invalid_input",
         ("workflow.9.inputs", "'source'", f"nested more than {MAX_VALUE_DEPTH}")),
    Case("value-nested-10000-deep",
         with_graph({**load_save("photo.png"),
                     "9": {"class_type": "PreviewAny", "inputs": {"source": nested(10_000)}}}),
         "invalid_input", ("workflow.9.inputs", "'source'", "nested more than")),
    Case("images-not-a-list", {"workflow": load_save("photo.png"), "images": PHOTO},
         "invalid_input", ("images",)),
    Case("images-item-not-an-object", {"workflow": load_save("photo.png"), "images": ["photo.png"]},
         "invalid_input", ("images[0]", "expected an object")),
    Case("images-item-unknown-field",
         {"workflow": load_save("photo.png"), "images": [{**PHOTO, "path": "/etc/passwd"}]},
         "invalid_input", ("images[0].path", "unknown field")),
    Case("image-name-empty",
         {"workflow": load_save("photo.png"), "images": [{**PHOTO, "name": ""}]},
         "invalid_input", ("images[0].name",)),
    Case("timeout-a-string", {**NORMAL_JOB, "timeout_s": "soon"}, "invalid_input", ("timeout_s",)),
    Case("timeout-negative", {**NORMAL_JOB, "timeout_s": -1}, "invalid_input", ("timeout_s",)),
    Case("delivery-unknown", {**NORMAL_JOB, "output": {"delivery": "ftp"}},
         "invalid_input", ("output.delivery",)),
    Case("unknown-top-level-field", {**NORMAL_JOB, "exec": "rm -rf /"},
         "invalid_input", ("exec", "unknown field")),
    Case("too-many-inputs",
         {"workflow": load_save("photo.png"), "images": [named(f"{i}.png") for i in range(5)]},
         "invalid_input", ("images", "5 inputs", "MAX_INPUTS")),
    Case("duplicate-names",
         {"workflow": load_save("photo.png"), "images": [PHOTO, PHOTO]},
         "invalid_input", ("images", "'photo.png' is used twice")),
    # --- ComfyUI faults, through the double ----------------------------------------------------
    Case("comfyui-connection-refused", NORMAL_JOB, "comfyui_unavailable", (), comfyui_down=True),
    Case("comfyui-500-on-prompt", NORMAL_JOB, "comfyui_unavailable", ("/prompt",),
         faults={"http_500": {"/prompt"}}),
    Case("comfyui-500-on-upload", NORMAL_JOB, "comfyui_unavailable", ("/upload/image",),
         faults={"http_500": {"/upload/image"}}, http_only=True),
    Case("comfyui-malformed-json", NORMAL_JOB, "comfyui_unavailable", ("not JSON",),
         faults={"malformed_json": {"/prompt"}}),
    Case("comfyui-websocket-closes", NORMAL_JOB, None, faults={"drop_ws_after": 2},
         check=loads_from_job_folder(("photo.png", GREEN))),
    Case("comfyui-never-sends-the-end", NORMAL_JOB, None, faults={"no_end": True},
         check=loads_from_job_folder(("photo.png", GREEN))),
    Case("comfyui-view-404", NORMAL_JOB, "comfyui_unavailable", ("out0_00001_.png",),
         faults={"view_404": True}, http_only=True),
    Case("comfyui-execution-error", NORMAL_JOB, "execution_failed", ("LoadImage",),
         faults={"execution_error_class": "LoadImage"}),
    Case("comfyui-200-with-node-errors", NORMAL_JOB, "workflow_invalid", (),
         faults={"node_errors_on_200": True}),
]


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 30
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_case(case: Case, request: pytest.FixtureRequest) -> None:
    env: Env = request.getfixturevalue("http_env" if case.http_only else "env")
    job = case.job(env) if callable(case.job) else case.job
    before = env.snapshot()
    prompts_before = len(env.double.prompts)

    result = _run_case(env, case, job)

    if case.code is None:
        assert "error" not in result, result
        assert result["images"], result
    else:
        assert result.get("error_code") == case.code, result
        for words in case.words:
            assert words in result["error"], result["error"]
        if case.code == "invalid_input":
            assert len(env.double.prompts) == prompts_before, "refused input reached ComfyUI"
    if case.check is not None:
        case.check(env, result)
    assert env.snapshot() == before, "files were written or left outside the job's folder"

    env.double.faults.__dict__.update(Faults().__dict__)
    follow_up = env.harness.run(NORMAL_JOB, job_id="after")
    assert "error" not in follow_up, follow_up
    loads_from_job_folder(("photo.png", GREEN))(env, follow_up)
    assert env.snapshot() == before


def _run_case(env: Env, case: Case, job: Any) -> dict[str, Any]:
    for name, value in case.faults.items():
        setattr(env.double.faults, name, value)
    if not case.comfyui_down:
        return env.harness.run(job, job_id="hostile")
    env.double.stop()
    try:
        return env.harness.run(job, job_id="hostile")
    finally:
        env.double.start()  # on the same port, for the follow-up job


# --- memory: refused inputs cost a small multiple of the cap, not of their size --------------


def _peak_bytes(action: Callable[[], Any]) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = action()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


@pytest.mark.parametrize("prefix", ["", "data:image/png;base64,"])
def test_a_huge_inline_input_is_refused_before_decoding(env: Env, prefix: str) -> None:
    # 200 MB of text stands in for the 2 GB the platform might hand over: what matters is
    # that nothing proportional to it is allocated, which the peak shows either way.
    job = {
        "workflow": load_save("photo.png"),
        "images": [{"name": "photo.png", "image": prefix + "A" * (200 * MB)}],
    }
    result, peak = _peak_bytes(lambda: env.harness.run(job, job_id="huge"))
    assert result["error_code"] == "invalid_input"
    assert "MAX_INPUT_BYTES" in result["error"]
    assert peak < 4 * LIMITS["max_input_bytes"], f"peak {peak / MB:.1f} MB"


def test_a_png_bomb_is_refused_without_decoding_it(env: Env) -> None:
    job = {"workflow": load_save("bomb.png"),
           "images": [{"name": "bomb.png", "image": b64(png_header(20000, 20000))}]}
    result, peak = _peak_bytes(lambda: env.harness.run(job, job_id="bomb"))
    assert result["error_code"] == "invalid_input"
    assert "MAX_PIXELS" in result["error"]
    # Decoded, it would be 1.2 GB of RGB.
    assert peak < 4 * MB, f"peak {peak / MB:.1f} MB"


def test_truncated_base64_near_the_cap_costs_a_small_multiple_of_it(env: Env) -> None:
    cap = LIMITS["max_input_bytes"]
    text = b64(b"\x00" * (cap - 1024))[:-3]  # just under the cap, and cut short
    job = {"workflow": load_save("photo.png"), "images": [{"name": "photo.png", "image": text}]}
    result, peak = _peak_bytes(lambda: env.harness.run(job, job_id="cut"))
    assert result["error_code"] == "invalid_input"
    assert "not valid base64" in result["error"]
    assert peak < 4 * cap, f"peak {peak / MB:.1f} MB"


# --- limits: defaults a real user would pick ---------------------------------------------------


def test_limit_defaults_are_sensible() -> None:
    defaults = Settings.model_fields
    max_input_bytes = defaults["max_input_bytes"].default
    # Room for a short video or a large photo, far from exhausting a worker's memory.
    assert 20 * MB <= max_input_bytes <= 1024 * MB
    assert 8 <= defaults["max_inputs"].default <= 256
    # Big real graphs have a few hundred nodes.
    assert 500 <= defaults["max_graph_nodes"].default <= 20_000
    max_pixels = defaults["max_pixels"].default
    assert 4096 * 4096 <= max_pixels
    # Under Pillow's own bomb threshold, so the error the client sees is ours, with the size.
    assert max_pixels <= Image.MAX_IMAGE_PIXELS
    assert defaults["allow_private_urls"].default is False


# --- the checks on their own: what the table cannot reach yet, and what must pass -------------


def test_a_reference_to_an_inputs_own_name_is_the_jobs_file() -> None:
    graph = load_save("../../cat.png", "C:\\Users\\me\\dog.png")
    with pytest.raises(InvalidInput, match="points outside"):
        check_graph(graph, max_nodes=10)
    check_graph(graph, max_nodes=10, input_names=["../../cat.png", "C:\\Users\\me\\dog.png"])
    with pytest.raises(InvalidInput, match="'/etc/passwd' points outside"):
        check_graph(load_save("/etc/passwd"), max_nodes=10, input_names=["cat.png"])


@pytest.mark.parametrize(
    "text",
    [
        "/imagine a red fox in the snow",
        "a castle\n../../ in the style of ascii art",
        "photo.png [input]",
        "sub/photo.png",
        "https://example.com/lora",
    ],
)
def test_prose_and_plain_names_are_not_paths(text: str) -> None:
    check_graph({"1": {"class_type": "CLIPTextEncode", "inputs": {"text": text}}}, max_nodes=10)


def test_nesting_is_checked_without_recursion() -> None:
    inputs = {"source": nested(100_000)}
    with pytest.raises(ValueError, match=f"'source' is nested more than {MAX_VALUE_DEPTH} levels"):
        check_nesting(inputs)
    with pytest.raises(InvalidInput, match=r"^workflow\.1\.inputs\.source: nested more than"):
        check_graph({"1": {"class_type": "X", "inputs": inputs}}, max_nodes=10)
    assert check_nesting({"x": nested(MAX_VALUE_DEPTH)}) == {"x": nested(MAX_VALUE_DEPTH)}


MEDIA_LIMITS = InputLimits(max_bytes=MB, max_pixels=4096 * 4096, max_inputs=4,
                           fetch_timeout_s=1.0, allow_private_urls=False)
MEDIA = {
    "mp4": MP4_HEAD,
    "mov": b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  " + b"\x00" * 32,
    "webm": b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01" + b"\x00" * 32,
    "avi": b"RIFF\x00\x01\x00\x00AVI LIST" + b"\x00" * 32,
    "wav": wav_bytes(),
    "flac": b"fLaC\x00\x00\x00\x22" + b"\x00" * 40,
    "mp3-id3": b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x00" * 40,
    "mp3-frame": b"\xff\xfb\x90\x64" + b"\x00" * 60,
    "ogg": b"OggS\x00\x02" + b"\x00" * 40,
    "jpeg": jpeg_bytes(),
    "png": png_bytes(),
    "html": b"<!doctype html><title>x</title>",
}


@pytest.mark.parametrize(
    ("name", "content"),
    [("clip.mp4", "mp4"), ("clip.MOV", "mov"), ("clip.m4v", "mp4"), ("clip.webm", "webm"),
     ("clip.mkv", "webm"), ("clip.avi", "avi"), ("voice.wav", "wav"), ("voice.flac", "flac"),
     ("voice.mp3", "mp3-id3"), ("voice.mp3", "mp3-frame"), ("voice.ogg", "ogg"),
     ("voice.opus", "ogg"), ("voice.m4a", "mp4"), ("photo.jpg", "jpeg"), ("photo.png", "jpeg"),
     ("photo.webp", "png")],
)
def test_media_whose_content_agrees_with_its_name_is_accepted(name: str, content: str) -> None:
    data = MEDIA[content]
    (prepared,) = decode_inputs([InputFile(name=name, image=b64(data))], MEDIA_LIMITS)
    assert prepared.data == data


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [("clip.mp4", "webm", "looks like WebM/Matroska"), ("clip.webm", "mp4", "looks like MP4/MOV"),
     ("voice.mp3", "wav", "looks like WAV"), ("voice.flac", "html", "looks like HTML"),
     ("voice.ogg", "png", "looks like a PNG image"),
     ("clip.mp4", "mp3-frame", "looks like MPEG audio"),
     ("clip.avi", b"\x00\x01\x02 random bytes", "is not a format we recognise")],
)
def test_media_whose_content_disagrees_says_what_it_looks_like(
    name: str, content: str | bytes, words: str
) -> None:
    data = MEDIA[content] if isinstance(content, str) else content
    with pytest.raises(InvalidInput) as caught:
        decode_inputs([InputFile(name=name, image=b64(data))], MEDIA_LIMITS)
    assert caught.value.message.startswith("images[0]: ")
    assert words in caught.value.message
    assert "name the file for what it is" in caught.value.message


def test_a_refused_name_is_not_downloaded(web: _Server, network: None) -> None:
    hits: list[str] = []
    web.routes["/counted.sh"] = lambda h: (hits.append(h.path), _reply(h, 200, b"#!/bin/sh"))
    items = [InputFile(name="run.sh", image=web.url("/counted.sh"))]
    with pytest.raises(InvalidInput, match="'.sh'"):
        decode_inputs(items, MEDIA_LIMITS)
    assert hits == []
