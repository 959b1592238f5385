"""A 1 GiB model fetch over loopback: its throughput as a share of curl's, and peak memory.

    python bench/model_fetch.py [--size-mib 1024] [--repeats 3] [--dir /tmp]

A file of random bytes (64 MiB of os.urandom repeated, so every block differs from its
neighbours and nothing compresses) is served by a small HTTP server in its own process
(sendfile, Range support), so neither its CPU nor its memory is counted as ours. Then, per
repeat, from the same server:

- curl -o FILE: curl writing to a file in the same folder as the cache (the fair comparison:
  the cache writes to disk too);
- curl -o /dev/null: the transfer alone, for reference;
- ModelCache.ensure without a checksum (what most jobs ask: a URL): the worker's download
  into an empty cache, streamed to a .part file and renamed into place; nothing is hashed;
- ModelCache.ensure with the sha256 to verify: the same, with the hash computed on the way
  (on a thread of its own) and checked; SHA-256 costs about 1 CPU-second per GiB and keeps
  up only when the machine has a core to spare.

Reported: the median throughput of each (and each run's), the cache's share of curl's, the
CPU time per GiB of curl and of the cache (on a machine that other work keeps busy, the CPU
time says more than the throughput: the hash needs a core of its own), and the cache's peak
RSS growth (the kernel's VmHWM after /proc/self/clear_refs reset it, over the RSS before the
fetch). Targets (issue 13): at least 80% of curl, under 64 MiB.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from comfy_runtime.models.cache import CacheConfig, ModelCache  # noqa: E402
from comfy_runtime.models.inputs import ModelRequest  # noqa: E402

MIB = 1024 * 1024

_SERVER = r"""
import os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATH = sys.argv[1]

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        size = os.path.getsize(PATH)
        start = 0
        wanted = self.headers.get("Range", "")
        if wanted.startswith("bytes="):
            start = int(wanted[6:].split("-")[0])
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.send_header("Content-Length", str(size - start))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        self.wfile.flush()
        with open(PATH, "rb") as f:
            offset = start
            while offset < size:
                sent = os.sendfile(self.connection.fileno(), f.fileno(), offset, size - offset)
                if sent == 0:
                    break
                offset += sent
        self.close_connection = True

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def make_file(path: Path, size: int) -> str:
    """Random content; returns its sha256."""
    block = os.urandom(64 * MIB)
    digest = hashlib.sha256()
    with open(path, "wb") as file:
        left = size
        while left:
            piece = block[: min(left, len(block))]
            file.write(piece)
            digest.update(piece)
            left -= len(piece)
    return digest.hexdigest()


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def cpu_s(who: int) -> float:
    """CPU seconds (user + system) used so far by this process or its waited-for children."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def curl(url: str, dest: str) -> float:
    """Seconds for curl to fetch `url` into `dest`."""
    started = time.perf_counter()
    subprocess.run(["curl", "-sS", "--fail", "-o", dest, url], check=True)
    return time.perf_counter() - started


def cache_fetch(url: str, root: Path, sha256: str | None) -> tuple[float, int]:
    """(seconds, peak RSS growth in bytes) of one ensure into an empty cache at `root`; with
    `sha256` the download is hashed and verified, without one nothing is hashed."""
    cache = ModelCache(
        CacheConfig(root=root, max_bytes=8 * 1024 * MIB, max_model_bytes=8 * 1024 * MIB,
                    io_timeout_s=30, allow_private=True)
    )
    request = ModelRequest(url=url, folder="checkpoints", name="bench.safetensors", sha256=sha256)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = rss_kib("VmRSS")
    started = time.perf_counter()
    with cache.lease() as lease:
        [model] = lease.ensure([request], deadline=time.monotonic() + 600)
    seconds = time.perf_counter() - started
    assert model.downloaded and model.sha256 == sha256
    return seconds, (rss_kib("VmHWM") - before) * 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where the files go (default: a temp dir)")
    args = parser.parse_args()
    size = args.size_mib * MIB

    work = Path(tempfile.mkdtemp(prefix="bench-model-fetch-", dir=args.dir))
    server = None
    try:
        source = work / "source.bin"
        sha256 = make_file(source, size)
        server = subprocess.Popen([sys.executable, "-c", _SERVER, str(source)],
                                  stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None
        url = f"http://127.0.0.1:{server.stdout.readline().strip()}/model.safetensors"

        curl(url, "/dev/null")  # warm the page cache and the server
        to_file, to_null, ours, unhashed, growth = [], [], [], [], []
        curl_cpu, our_cpu = [], []
        for _ in range(args.repeats):  # interleaved, so a busy moment hits every contender
            before = cpu_s(resource.RUSAGE_CHILDREN)
            to_file.append(curl(url, str(work / "curl.bin")))
            curl_cpu.append(cpu_s(resource.RUSAGE_CHILDREN) - before)
            (work / "curl.bin").unlink()
            to_null.append(curl(url, "/dev/null"))
            before = cpu_s(resource.RUSAGE_SELF)
            seconds, grew = cache_fetch(url, work / "cache", sha256)
            our_cpu.append(cpu_s(resource.RUSAGE_SELF) - before)
            shutil.rmtree(work / "cache")
            ours.append(seconds)
            growth.append(grew)
            seconds, grew = cache_fetch(url, work / "cache", None)
            shutil.rmtree(work / "cache")
            unhashed.append(seconds)
            growth.append(grew)

        def rate(seconds: list[float]) -> float:
            return size / statistics.median(seconds) / MIB

        print(f"file: {args.size_mib} MiB random, loopback, {os.cpu_count()} CPUs, "
              f"median of {args.repeats}")
        def runs(seconds: list[float]) -> str:
            return "runs: " + " ".join(f"{size / s / MIB:.0f}" for s in seconds)

        gib = size / (1024 * MIB)
        print(f"curl -o file      {rate(to_file):8.0f} MiB/s  {runs(to_file)}")
        print(f"curl -o /dev/null {rate(to_null):8.0f} MiB/s")
        print(f"ModelCache.ensure, no checksum asked {rate(unhashed):8.0f} MiB/s  "
              f"(streamed to disk + rename)  {runs(unhashed)}")
        print(f"ModelCache.ensure, sha256 to verify  {rate(ours):8.0f} MiB/s  "
              f"(+ sha256 on its own thread)  {runs(ours)}")
        print(f"share of curl -o file: {100 * rate(unhashed) / rate(to_file):.0f}% without a "
              f"checksum (target >= 80%), {100 * rate(ours) / rate(to_file):.0f}% verifying one")
        print(f"CPU seconds per GiB (median): curl -o file {statistics.median(curl_cpu) / gib:.2f}"
              f", ModelCache.ensure verifying sha256 {statistics.median(our_cpu) / gib:.2f} "
              "(all its threads)")
        load = os.getloadavg()[0]
        print(f"load average at the end: {load:.1f} on {os.cpu_count()} CPUs")
        print(f"peak RSS growth: {max(growth) / MIB:.1f} MiB max, "
              f"{statistics.median(growth) / MIB:.1f} MiB median (target < 64 MiB)")
    finally:
        if server is not None:
            server.kill()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
