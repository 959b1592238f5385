"""A download's body on its way to disk: read in large blocks, written, hashed.

Why a module of its own: `model_fetch` decides what to ask a server and when to stop; this
owns what happens to every byte that arrives, which is where a download spends its CPU. Done
the ordinary way (httpx's `iter_raw`, a buffered file, a hash update per chunk), a gigabyte is
some 16,000 chunks of 64 KiB, each parsed by h11 and copied several times, which caps a
download at about a third of what curl gets over a fast link. So:

* `body_chunks` reads a body of known length straight from the connection once httpx has
  handed over the first chunk (h11 gives up everything it had buffered with that chunk, so
  the rest of the body is still unread on the connection), in reads of up to `BLOCK_BYTES`,
  through httpcore's documented `network_stream` extension; a body without a length (chunked)
  stays with `iter_raw`;
* `PartFile` gathers chunks into blocks of `BLOCK_BYTES` before anything is done with them:
  one `os.write` on the raw descriptor (no buffered-file layer copying them again) and one hash
  update per block;
* SHA-256 runs on a thread of its own (`Sha256Pipe`): it costs about as much CPU as receiving
  and writing together (about 1 CPU-second per GiB), and hashlib releases the GIL for large
  buffers, so hashing beside the receiving thread lets a download run near the speed of the
  network and the disk. The queue to that thread is bounded, so a slow hash slows the download
  instead of growing memory (at most `_QUEUED` blocks wait).

It also reads the two headers that say where an answer's body goes in the file
(`content_length`, `content_range`).

Memory held: the block being gathered, the queued blocks and the one being hashed, a few
`BLOCK_BYTES` in all, whatever the file's size.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpcore
import httpx

BLOCK_BYTES = 2 * 1024 * 1024
_QUEUED = 4
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class Sha256Pipe:
    """SHA-256 of a stream of blocks, computed on a thread of its own."""

    def __init__(self) -> None:
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUED)
        self._hash = hashlib.sha256()
        self._digest: str | None = None
        self._thread = threading.Thread(target=self._run, name="model-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (block := self._queue.get()) is not None:  # None is the end
            self._hash.update(block)

    def put(self, block: bytes) -> None:
        """Hash `block` next; it must not change afterwards (bytes do not)."""
        self._queue.put(block)

    def hexdigest(self) -> str:
        if self._digest is None:
            self.close()
            self._digest = self._hash.hexdigest()
        return self._digest

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


class PartFile:
    """The partial file of a download, open for writing, and what the server said about it.

    `written` counts every byte received, including those still gathered in memory: it is the
    offset to resume from once `flush` has run (every attempt ends with one)."""

    def __init__(self, path: Path, *, hashing: bool = True) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        # Only a checksum to verify is worth a core: without one, nothing is hashed.
        self.hasher = Sha256Pipe() if hashing else None
        self.written = 0
        self.total: int | None = None
        self.validator: str | None = None  # ETag or Last-Modified, for If-Range
        self.resumed = False
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    def append(self, chunk: bytes) -> None:
        """Take one received chunk; raises OSError when writing a full block fails."""
        self._pending.append(chunk)
        self._pending_bytes += len(chunk)
        self.written += len(chunk)
        if self._pending_bytes >= BLOCK_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write and hash what was gathered; raises OSError (a full disk, a lost volume)."""
        if not self._pending:
            return
        block = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending, self._pending_bytes = [], 0
        view = memoryview(block)
        while view:
            view = view[os.write(self.fd, view):]
        if self.hasher is not None:
            self.hasher.put(block)

    def restart(self) -> None:
        """Forget everything: the file is emptied and the hash starts over."""
        self._pending, self._pending_bytes = [], 0
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        if self.hasher is not None:
            self.hasher.close()
            self.hasher = Sha256Pipe()
        self.written = 0
        self.total = None

    def close(self) -> None:
        """Stop the hash thread and close the file (what was not flushed is dropped)."""
        if self.hasher is not None:
            self.hasher.close()
        os.close(self.fd)

    def digest(self) -> str | None:
        """The SHA-256 of what was written, when it was hashed."""
        return self.hasher.hexdigest() if self.hasher is not None else None


def content_length(header: str | None) -> int | None:
    """A 200 answer's size; None where Content-Length is missing or not a size."""
    try:
        value = int(header or "")
    except ValueError:
        return None
    return value if value >= 0 else None


def content_range(header: str | None) -> tuple[int | None, int | None]:
    """(first byte, total) of a 206 answer's Content-Range; None where it does not say."""
    match = _CONTENT_RANGE.match((header or "").strip())
    if match is None:
        return None, None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), total


def body_chunks(response: httpx.Response, read_timeout: Callable[[], float]) -> Iterator[bytes]:
    """The raw bytes of `response`'s body. Errors are httpx's, as from `iter_raw`: a timeout
    (each read waits at most `read_timeout()` seconds) or a transport error, including a
    connection closed before the announced length."""
    length = content_length(response.headers.get("content-length"))
    stream: httpcore.NetworkStream | None = response.extensions.get("network_stream")
    chunks = response.iter_raw()
    if length is None or stream is None or "transfer-encoding" in response.headers:
        yield from chunks
        return
    # h11 hands over all it had buffered with the first chunk: the rest is on the connection.
    # `chunks` stays referenced until the end: closing it would close the connection.
    first = next(chunks, b"")
    received = len(first)
    if first:
        yield first
    while received < length:
        chunk = _read(stream, min(BLOCK_BYTES, length - received), read_timeout())
        received += len(chunk)
        yield chunk


def _read(stream: httpcore.NetworkStream, size: int, timeout: float) -> bytes:
    try:
        chunk = stream.read(size, timeout=timeout)
    except httpcore.TimeoutException as exc:
        raise httpx.ReadTimeout(str(exc)) from None
    except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
        raise httpx.ReadError(str(exc)) from None
    if not chunk:
        raise httpx.RemoteProtocolError("the connection closed before the end of the body")
    return chunk


def file_sha256(path: Path, check: Callable[[], None]) -> str:
    """The SHA-256 of a file already on disk (a cached file first asked for by checksum),
    read in blocks with `check()` called before each: it raises to stop (the job's deadline
    passed, or it was cancelled), so gigabytes are hashed only within the job's time."""
    digest = hashlib.sha256()
    block = bytearray(BLOCK_BYTES)
    view = memoryview(block)
    with path.open("rb", buffering=0) as file:
        while True:
            check()
            count = file.readinto(block)
            if not count:
                return digest.hexdigest()
            digest.update(view[:count])
