"""The model cache on disk: its files, its index and its locks (model_obtain decides, this does).

Layout under the cache root (`MODEL_CACHE_DIR`), which may be on a network volume that several
workers share::

    <root>/<folder>/<name>                  a cached file, as ComfyUI lists it
    <root>/<folder>/.<key>.<token>.part     a download in progress (ComfyUI lists no *.part)
    <root>/.index/<key>.<token>.json        one entry per installed file: its URL key, sha256,
                                            size, last use and the inode it was installed as
    <root>/.lock                            flock: guards every eviction, rename and lease
    <root>/.locks/<key>.lock                flock: held by whoever downloads <folder>/<name>
    <root>/.leases/<key>.lock               flock: shared by each job that uses <folder>/<name>

(`<key>` is a hash of "<folder>/<name>", so any name gives a short, safe file name; `<token>`
is random, one per download.)

Why an index instead of file times: atime is not kept on most mounts, and the cache needs more
than a time anyway: which files it created (files put there by hand are never evicted or
overwritten), each file's URL and checksum (so a hit never re-hashes gigabytes), its size.

Why one index file per entry, written before its file is renamed into place: installing is
then one recoverable step. A crash or a failed write before the rename leaves an entry for a
file that is not there (ignored, and removed when the cache opens: `reconcile`); after it, the
file and its entry agree. No file the cache installs is ever unknown to the index. And no
writer rewrites anyone else's entry, so workers whose locks do not reach each other (a network
file system that does not share flock between machines) can never lose an entry: at worst
both download a file, and the entry that names the file's inode wins. Each download writes a
part file of its own, so a file is never renamed into place before it is whole.

Why flock leases: a file in use must survive eviction even when the evicting worker is another
machine. Each job holds a shared flock on the file's lease lock until it releases; the evictor
tries an exclusive, non-blocking flock and skips the file when that fails. A crashed job's
locks vanish with its process. Download locks are removed by their holder (a waiter that finds
its lock file replaced tries again), so failed downloads leave no lock files behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from pydantic import BaseModel, ValidationError

from ..errors import JobCancelled
from .fetch import ModelFetchFailed

log = logging.getLogger(__name__)

_INDEX = ".index"
_LEGACY_INDEX = "index.json"  # one file for all entries, before issue 22
_LOCK_POLL_S = 0.05
# An entry that names no file is removed when the cache opens once it is this old: younger, it
# may belong to an install about to rename its file (on a volume whose locks are not shared).
_STALE_ENTRY_S = 600.0


class CacheEntry(BaseModel):
    """One file the cache created, as the index records it."""

    key: str = ""  # "<folder>/<name>"
    token: str = ""  # names the entry's file; one per install
    inode: int | None = None  # of the file installed (kept by the rename)
    url_key: str  # sha256 of the URL: the URL itself may carry a signature
    sha256: str | None = None  # known once a request gave a checksum (hashing costs a core)
    size: int
    last_used: float  # time.time(): comparable across the machines sharing a volume
    source: str  # the URL without query string or credentials


# --- flock ---------------------------------------------------------------------------------


def _open_lock(path: Path, mode: int) -> int | None:
    """A descriptor of `path` holding flock `mode`, or None when someone else holds it. A lock
    file its holder removed meanwhile is opened again (`None` is never for a removed file)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # locked a file that was removed: its holder is done, take the new one


def wait_lock(
    path: Path, mode: int, *, deadline: float | None, cancel: threading.Event | None, what: str
) -> int:
    """An open descriptor holding flock `mode` on `path`, waited for until `deadline` (polled,
    because a blocking flock cannot be given a timeout or be cancelled)."""
    while True:
        fd = _open_lock(path, mode)
        if fd is not None:
            return fd
        if cancel is not None and cancel.is_set():
            raise JobCancelled(f"{what}: cancelled while waiting")
        if deadline is not None and time.monotonic() > deadline:
            # `what` may start with the job's field ("models[0]: ...").
            raise ModelFetchFailed(
                f"{what}: the job's time limit passed while waiting",
                {"reason": "timeout", "waiting_for": what},
            )
        time.sleep(_LOCK_POLL_S)


@contextmanager
def held(
    path: Path, mode: int, *, deadline: float | None, cancel: threading.Event | None, what: str,
    remove: bool = False,
) -> Iterator[None]:
    fd = wait_lock(path, mode, deadline=deadline, cancel=cancel, what=what)
    try:
        yield
    finally:
        if remove:  # while still held: a waiter that locked the old file sees it is gone
            path.unlink(missing_ok=True)
        os.close(fd)  # closing the descriptor releases the flock


# --- the store -------------------------------------------------------------------------------


class CacheStore:
    """Files, index and locks under `root`; keys are "<folder>/<name>"."""

    def __init__(self, root: Path, folders: Iterable[str]) -> None:
        self.root = root
        self.folders = tuple(folders)
        for sub in (".locks", ".leases", _INDEX, *self.folders):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / key

    def new_part_path(self, key: str) -> Path:
        """A partial file of its own for one download of `key`."""
        folder = key.split("/", 1)[0]
        return self.root / folder / f".{_digest(key)}.{uuid.uuid4().hex[:12]}.part"

    def root_lock(self, deadline: float | None = None) -> AbstractContextManager[None]:
        return held(self.root / ".lock", fcntl.LOCK_EX, deadline=deadline, cancel=None,
                    what="the model cache index")

    def download_lock(
        self, key: str, *, deadline: float, cancel: threading.Event | None, what: str
    ) -> AbstractContextManager[None]:
        return held(self._lock_file(".locks", key), fcntl.LOCK_EX, deadline=deadline,
                    cancel=cancel, what=what, remove=True)

    def take_lease(self, key: str) -> int:
        """A descriptor holding a shared lease on `key` (close it to release). Callers hold
        the root lock, so no evictor holds the exclusive lock and this does not wait."""
        return wait_lock(self._lock_file(".leases", key), fcntl.LOCK_SH, deadline=None,
                         cancel=None, what="a lease")

    def lease_is_free(self, key: str) -> bool:
        fd = _open_lock(self._lock_file(".leases", key), fcntl.LOCK_EX)
        if fd is None:
            return False
        os.close(fd)
        return True

    def delete_unless_leased(self, key: str) -> bool:
        """Delete the file and its entries unless a job holds a lease on it; the caller holds
        the root lock. The file goes first: an entry without its file is ignored."""
        fd = _open_lock(self._lock_file(".leases", key), fcntl.LOCK_EX)
        if fd is None:
            return False
        try:
            self.path(key).unlink(missing_ok=True)
            self.remove_entries(key)
            return True
        finally:
            os.close(fd)

    def _lock_file(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{_digest(key)}.lock"

    # --- the index -----------------------------------------------------------------------

    def write_entry(self, entry: CacheEntry) -> None:
        """Write (or rewrite) `entry`'s own file atomically; raises OSError (a full disk)."""
        if not entry.token:
            entry.token = uuid.uuid4().hex[:12]
        final = self.root / _INDEX / f"{_digest(entry.key)}.{entry.token}.json"
        partial = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(partial, "w", encoding="utf-8") as file:
                file.write(entry.model_dump_json())
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, final)
        finally:
            partial.unlink(missing_ok=True)

    def remove_entries(self, key: str, keep: str | None = None) -> None:
        """Remove `key`'s entries, except the one with token `keep`."""
        for path in (self.root / _INDEX).glob(f"{_digest(key)}.*.json"):
            if keep is None or not path.name.endswith(f".{keep}.json"):
                path.unlink(missing_ok=True)

    def drop(self, entry: CacheEntry) -> None:
        """Remove one entry's file (an install that did not happen)."""
        (self.root / _INDEX / f"{_digest(entry.key)}.{entry.token}.json").unlink(missing_ok=True)

    def entry(self, key: str) -> CacheEntry | None:
        """The entry of the file at `key` now, or None when the cache does not know it."""
        return _current(self.path(key), self._entries(f"{_digest(key)}.*.json"))

    def read_index(self) -> dict[str, CacheEntry]:
        """Every file the cache knows, by key."""
        by_key: dict[str, list[CacheEntry]] = {}
        for entry in self._entries("*.json"):
            by_key.setdefault(entry.key, []).append(entry)
        index: dict[str, CacheEntry] = {}
        for key, entries in by_key.items():
            current = _current(self.path(key), entries)
            if current is not None:
                index[key] = current
        return index

    def _entries(self, pattern: str) -> list[CacheEntry]:
        entries = []
        for path in (self.root / _INDEX).glob(pattern):
            try:
                entries.append(CacheEntry.model_validate_json(path.read_bytes()))
            except (OSError, ValueError, ValidationError):
                continue  # removed meanwhile, or damaged from outside: not an entry
        return entries

    # --- when the cache opens ------------------------------------------------------------

    def reconcile(self, stale_part_s: float) -> int:
        """Bring index and disk together once, at start: adopt the entries of the index file
        older versions kept, remove entries that name no file, and delete partial files no
        live download owns (untouched for `stale_part_s`). Returns the files deleted."""
        with self.root_lock():
            self._adopt_legacy_index()
            now = time.time()
            by_key: dict[str, list[CacheEntry]] = {}
            for entry in self._entries("*.json"):
                by_key.setdefault(entry.key, []).append(entry)
            for key, entries in by_key.items():
                current = _current(self.path(key), entries)
                for entry in entries:
                    if entry is not current and now - entry.last_used > _STALE_ENTRY_S:
                        self.drop(entry)
            return self._sweep_parts(stale_part_s)

    def _adopt_legacy_index(self) -> None:
        legacy = self.root / _LEGACY_INDEX
        try:
            raw = json.loads(legacy.read_text(encoding="utf-8"))["entries"]
            for key, value in raw.items():
                entry = CacheEntry.model_validate({**value, "key": key})
                stat = _stat(self.path(key))
                if stat is not None and stat.st_size == entry.size:
                    entry.inode = stat.st_ino
                    self.write_entry(entry)
        except FileNotFoundError:
            return
        except (ValueError, KeyError, TypeError, AttributeError, ValidationError) as exc:
            log.error("model cache: old index %s is unreadable (%s); its files stay, unmanaged",
                      legacy, type(exc).__name__)
        legacy.unlink(missing_ok=True)

    def _sweep_parts(self, stale_s: float) -> int:
        removed = 0
        for part in self.root.glob("*/.*.part"):
            stat = _stat(part)
            if stat is None or time.time() - stat.st_mtime < stale_s:
                continue  # written to lately: a download (perhaps on another machine) owns it
            lock = self.root / ".locks" / f"{part.name[1:].split('.', 1)[0]}.lock"
            fd = _open_lock(lock, fcntl.LOCK_EX)
            if fd is None:
                continue  # a live download owns it
            try:
                part.unlink(missing_ok=True)
                removed += 1
            finally:
                lock.unlink(missing_ok=True)
                os.close(fd)
        return removed


def _current(path: Path, entries: list[CacheEntry]) -> CacheEntry | None:
    """Which of a key's entries describes the file at `path`: the one installed as its inode;
    else (a file system whose inodes change) the newest of its size."""
    stat = _stat(path)
    if stat is None:
        return None
    sized = [e for e in entries if e.size == stat.st_size]
    same = [e for e in sized if e.inode == stat.st_ino]
    chosen = same or sized
    return max(chosen, key=lambda e: e.last_used) if chosen else None


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except OSError:
        return None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
