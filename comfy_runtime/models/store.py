"""The model cache on disk: its files, its index and its locks (model_obtain decides, this does).

Layout under the cache root (`MODEL_CACHE_DIR`), which may be on a network volume that several
workers share::

    <root>/<folder>/<name>            a cached file, as ComfyUI lists it
    <root>/<folder>/.<key>.part       a download in progress (ComfyUI lists no *.part file)
    <root>/index.json                 what the cache created: URL key, sha256, size, last use
    <root>/.lock                      flock: guards index.json and every rename or delete
    <root>/.locks/<key>.lock          flock: held by whoever downloads <folder>/<name>
    <root>/.leases/<key>.lock         flock: shared by each job that uses <folder>/<name>

(`<key>` is a hash of "<folder>/<name>", so any name gives a short, safe lock file name.)

Why an index instead of file times: atime is not kept on most mounts (noatime/relatime, and
network volumes), and the cache needs more than a time anyway: which files it created (files
put there by hand are never evicted or overwritten), each file's URL and checksum (so a hit
never re-hashes gigabytes), and its size. The index is small, read and rewritten (atomically)
under the root lock on each operation, so workers sharing the volume see one truth.

Why flock leases: a file in use must survive eviction even when the evicting worker is another
machine. Each job holds a shared flock on the file's lease lock until it releases; the evictor
tries an exclusive, non-blocking flock and skips the file when that fails. A crashed job's
locks vanish with its process, so nothing stays pinned forever. flock locks belong to an open
file description, so two threads of one process exclude each other as two processes do.
Lock files are never deleted: deleting a lock file someone may be about to lock breaks it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from pydantic import BaseModel, ValidationError

from ..errors import JobCancelled
from .fetch import ModelFetchFailed

log = logging.getLogger(__name__)

_INDEX = "index.json"
_LOCK_POLL_S = 0.05


class CacheEntry(BaseModel):
    """One file the cache created, as the index records it."""

    url_key: str  # sha256 of the URL: the URL itself may carry a signature
    sha256: str | None = None  # known once a request gave a checksum (hashing costs a core)
    size: int
    last_used: float  # time.time(): comparable across the machines sharing a volume
    source: str  # the URL without query string or credentials


# --- flock ---------------------------------------------------------------------------------


def wait_lock(
    path: Path, mode: int, *, deadline: float | None, cancel: threading.Event | None, what: str
) -> int:
    """An open descriptor holding flock `mode` on `path`, waited for until `deadline` (polled,
    because a blocking flock cannot be given a timeout or be cancelled)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                pass
            if cancel is not None and cancel.is_set():
                raise JobCancelled(f"{what}: cancelled while waiting")
            if deadline is not None and time.monotonic() > deadline:
                # `what` may start with the job's field ("models[0]: ...").
                raise ModelFetchFailed(
                    f"{what}: the job's time limit passed while waiting",
                    {"reason": "timeout", "waiting_for": what},
                )
            time.sleep(_LOCK_POLL_S)
    except BaseException:
        os.close(fd)
        raise


def try_lock(path: Path, mode: int) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        os.close(fd)
        return None


@contextmanager
def held(
    path: Path, mode: int, *, deadline: float | None, cancel: threading.Event | None, what: str
) -> Iterator[None]:
    fd = wait_lock(path, mode, deadline=deadline, cancel=cancel, what=what)
    try:
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


# --- the store -------------------------------------------------------------------------------


class CacheStore:
    """Files, index and locks under `root`; keys are "<folder>/<name>"."""

    def __init__(self, root: Path, folders: Iterable[str]) -> None:
        self.root = root
        for sub in (".locks", ".leases", *folders):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / key

    def part_path(self, key: str) -> Path:
        folder = key.split("/", 1)[0]
        return self.root / folder / f".{_digest(key)}.part"

    def root_lock(self, deadline: float | None = None) -> AbstractContextManager[None]:
        return held(self.root / ".lock", fcntl.LOCK_EX, deadline=deadline, cancel=None,
                    what="the model cache index")

    def download_lock(
        self, key: str, *, deadline: float, cancel: threading.Event | None, what: str
    ) -> AbstractContextManager[None]:
        return held(self._lock_file(".locks", key), fcntl.LOCK_EX, deadline=deadline,
                    cancel=cancel, what=what)

    def take_lease(self, key: str) -> int:
        """A descriptor holding a shared lease on `key` (close it to release). Callers hold
        the root lock, so no evictor holds the exclusive lock and this does not wait."""
        return wait_lock(self._lock_file(".leases", key), fcntl.LOCK_SH, deadline=None,
                         cancel=None, what="a lease")

    def lease_is_free(self, key: str) -> bool:
        fd = try_lock(self._lock_file(".leases", key), fcntl.LOCK_EX)
        if fd is None:
            return False
        os.close(fd)
        return True

    def delete_unless_leased(self, key: str) -> bool:
        """Delete the file unless a job holds a lease on it; the caller holds the root lock."""
        fd = try_lock(self._lock_file(".leases", key), fcntl.LOCK_EX)
        if fd is None:
            return False
        try:
            self.path(key).unlink(missing_ok=True)
            return True
        finally:
            os.close(fd)

    def sweep_parts(self) -> int:
        """Delete `.part` files whose download lock is free (left by a crashed download)."""
        removed = 0
        for part in self.root.glob("*/.*.part"):
            fd = try_lock(self.root / ".locks" / f"{part.name[1:-5]}.lock", fcntl.LOCK_EX)
            if fd is None:
                continue  # a live download owns it
            try:
                part.unlink(missing_ok=True)
                removed += 1
            finally:
                os.close(fd)
        return removed

    def _lock_file(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{_digest(key)}.lock"

    # --- the index (callers hold the root lock) ------------------------------------------

    def read_index(self) -> dict[str, CacheEntry]:
        try:
            raw = json.loads((self.root / _INDEX).read_text(encoding="utf-8"))
            entries = {k: CacheEntry.model_validate(v) for k, v in raw["entries"].items()}
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError, AttributeError, ValidationError) as exc:
            # Written atomically, so this is damage from outside; its files stay, unmanaged.
            log.error("model cache index %s is unreadable (%s); starting a new one",
                      self.root / _INDEX, type(exc).__name__)
            return {}
        # A file deleted (or changed) by hand is forgotten; a changed one is no longer ours.
        return {key: e for key, e in entries.items() if _size(self.path(key)) == e.size}

    def write_index(self, entries: dict[str, CacheEntry]) -> None:
        data = {"version": 1, "entries": {k: e.model_dump() for k, e in entries.items()}}
        partial = self.root / f".{_INDEX}.tmp"
        with open(partial, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=1, sort_keys=True)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, self.root / _INDEX)


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
