"""Model files downloaded on demand, kept in a bounded cache that ComfyUI reads from.

Layout under the cache root (`MODEL_CACHE_DIR`), which may be on a network volume that several
workers share::

    <root>/<folder>/<name>            a cached file, as ComfyUI lists it (register <root>/<folder>
                                      as that folder's extra model path)
    <root>/<folder>/.<key>.part       a download in progress (ComfyUI lists no *.part file)
    <root>/index.json                 what the cache created: URL key, sha256, size, last use
    <root>/.lock                      flock: guards index.json and every rename or delete
    <root>/.locks/<key>.lock          flock: held by whoever downloads <folder>/<name>
    <root>/.leases/<key>.lock         flock: shared by each job that uses <folder>/<name>

Why an index instead of file times: atime is not kept on most mounts (noatime/relatime, and
network volumes), and the cache needs more than a time anyway: which files it created (files
put there by hand are never evicted or overwritten), each file's URL and checksum (so a hit
never re-hashes gigabytes), and its size. The index is small, read and rewritten (atomically)
under the root lock on each operation, so workers sharing the volume see one truth.

Why flock leases: a file in use must survive eviction even when the evicting worker is another
machine. Each job holds a shared flock on the file's lease lock until it releases; the evictor
tries an exclusive, non-blocking flock and skips the file when that fails. A crashed job's
locks vanish with its process, so nothing stays pinned forever.

Concurrency in short: a hit is looked up and leased under the root lock; a miss takes the
file's download lock (a second asker waits there, then finds the hit), downloads to a `.part`
file without holding the root lock, and is installed (room made, renamed, indexed, leased)
under the root lock.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ValidationError

from .address_policy import Resolver
from .errors import JobCancelled
from .model_fetch import Download, FetchLimits, ModelFetchFailed, TokenRule
from .model_inputs import FILE_EXTENSIONS, ModelRequest
from .url_fetch import redact_url

if TYPE_CHECKING:
    from .settings import Settings

log = logging.getLogger(__name__)

_INDEX = "index.json"
_LOCK_POLL_S = 0.05
_PROGRESS_EVERY_S = 0.5


class CachedModel(BaseModel):
    """A model ready for ComfyUI: `name` is what a loader input in `folder` must say."""

    folder: str
    name: str
    size_bytes: int
    sha256: str
    downloaded: bool  # False: it was in the cache already (or another job just fetched it)
    seconds: float
    source: str  # the URL without query string or credentials


class ModelProgress(BaseModel):
    folder: str
    name: str
    bytes: int
    total: int | None
    percent: float | None


class CachedFile(BaseModel):
    folder: str
    name: str
    size_bytes: int
    last_used: float  # seconds since the epoch
    in_use: bool


class CacheInfo(BaseModel):
    """What the info request shows about the cache."""

    root: str
    size_bytes: int
    max_bytes: int
    files: list[CachedFile]


@dataclass(frozen=True)
class CacheConfig:
    root: Path
    max_bytes: int  # MODEL_CACHE_MAX_BYTES: the cached files together
    max_model_bytes: int  # MAX_MODEL_BYTES: one file
    io_timeout_s: float  # MODEL_FETCH_TIMEOUT_S: one connect or read
    allow_private: bool = False
    tokens: tuple[TokenRule, ...] = ()
    resolver: Resolver | None = None  # tests map made-up names; None: the system's

    @classmethod
    def from_settings(cls, settings: Settings) -> CacheConfig:
        tokens = []
        if settings.hf_token is not None:
            tokens.append(TokenRule("huggingface.co", settings.hf_token))
        if settings.civitai_token is not None:
            tokens.append(TokenRule("civitai.com", settings.civitai_token))
        return cls(
            root=settings.model_cache_root,
            max_bytes=settings.model_cache_max_bytes,
            max_model_bytes=settings.max_model_bytes,
            io_timeout_s=settings.model_fetch_timeout_s,
            allow_private=settings.allow_private_urls,
            tokens=tuple(tokens),
        )


class _Entry(BaseModel):
    url_key: str  # sha256 of the URL: the URL itself may carry a signature
    sha256: str
    size: int
    last_used: float
    source: str


ProgressCallback = Callable[[ModelProgress], None]


# --- locks -----------------------------------------------------------------------------------


def _wait_lock(
    path: Path, mode: int, *, deadline: float | None, cancel: threading.Event | None, what: str
) -> int:
    """An open descriptor holding flock `mode` on `path`, waited for until `deadline`."""
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


def _try_lock(path: Path, mode: int) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        os.close(fd)
        return None


@contextmanager
def _held(
    path: Path, mode: int, *, deadline: float | None, cancel: threading.Event | None, what: str
) -> Iterator[None]:
    fd = _wait_lock(path, mode, deadline=deadline, cancel=cancel, what=what)
    try:
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


# --- the cache ---------------------------------------------------------------------------------


class ModelCache:
    """The cache under `config.root`. Thread-safe and process-safe; create one per worker."""

    def __init__(self, config: CacheConfig) -> None:
        self.config = config
        self.root = config.root
        for sub in (".locks", ".leases", *FILE_EXTENSIONS):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def folder_dirs(self) -> dict[str, Path]:
        """folder -> directory, to add to the model paths ComfyUI is launched with."""
        return {folder: self.root / folder for folder in FILE_EXTENSIONS}

    def model_paths_yaml(self, section: str = "comfy_worker_model_cache") -> str:
        """A section for the extra_model_paths.yaml ComfyUI is launched with, mapping each
        folder to its cache subfolder (all exist: ComfyUI refuses loaders whose listed folder
        is missing). Append it to the volume's section; ComfyUI reads several sections."""
        lines = [f"{section}:", f"  base_path: {json.dumps(str(self.root))}"]
        lines += [f"  {folder}: {folder}" for folder in FILE_EXTENSIONS]
        return "\n".join(lines) + "\n"

    def lease(self) -> ModelLease:
        """A job's hold on the files it ensures; use it as a context manager."""
        return ModelLease(self)

    def describe(self) -> CacheInfo:
        with self._root_lock():
            entries = self._read_index()
            files = [
                CachedFile(
                    folder=key.split("/", 1)[0],
                    name=key.split("/", 1)[1],
                    size_bytes=entry.size,
                    last_used=entry.last_used,
                    in_use=not self._lease_is_free(key),
                )
                for key, entry in sorted(entries.items(), key=lambda kv: -kv[1].last_used)
            ]
        total = sum(f.size_bytes for f in files)
        return CacheInfo(
            root=str(self.root), size_bytes=total, max_bytes=self.config.max_bytes, files=files
        )

    def sweep(self) -> int:
        """Delete `.part` files left by crashed downloads (those whose download lock is free);
        call once at start. Returns how many were deleted."""
        removed = 0
        for part in self.root.glob("*/.*.part"):
            fd = _try_lock(self._lock_path(".locks", part.name[1:-5]), fcntl.LOCK_EX)
            if fd is None:
                continue  # a live download owns it
            try:
                part.unlink(missing_ok=True)
                removed += 1
            finally:
                os.close(fd)
        return removed

    # --- paths and keys -------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return self.root / key

    def _lock_path(self, kind: str, digest: str) -> Path:
        return self.root / kind / f"{digest}.lock"

    def _root_lock(self, deadline: float | None = None) -> AbstractContextManager[None]:
        return _held(self.root / ".lock", fcntl.LOCK_EX, deadline=deadline, cancel=None,
                     what="the model cache index")

    def _lease_is_free(self, key: str) -> bool:
        fd = _try_lock(self._lock_path(".leases", _digest(key)), fcntl.LOCK_EX)
        if fd is None:
            return False
        os.close(fd)
        return True

    # --- the index (callers hold the root lock) ------------------------------------------

    def _read_index(self) -> dict[str, _Entry]:
        try:
            raw = json.loads((self.root / _INDEX).read_text(encoding="utf-8"))
            entries = {key: _Entry.model_validate(value) for key, value in raw["entries"].items()}
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            # Written atomically, so this is damage from outside; its files stay, unmanaged.
            log.error("model cache index %s is unreadable (%s); starting a new one",
                      self.root / _INDEX, type(exc).__name__)
            return {}
        # A file deleted (or changed) by hand is forgotten; a changed one is no longer ours.
        return {key: e for key, e in entries.items() if _size(self._path(key)) == e.size}

    def _write_index(self, entries: dict[str, _Entry]) -> None:
        data = {"version": 1, "entries": {k: e.model_dump() for k, e in entries.items()}}
        partial = self.root / f".{_INDEX}.tmp"
        with open(partial, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=1, sort_keys=True)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, self.root / _INDEX)

    def _make_room(self, entries: dict[str, _Entry], needed: int, keep: str) -> list[str]:
        """Evict least recently used, unleased entries until `needed` more bytes fit in the
        budget; `keep` (the file being installed) is neither counted nor evicted. Raises
        cache_full when leased files leave too little room. Returns the evicted keys."""
        total = sum(e.size for k, e in entries.items() if k != keep)
        evicted: list[str] = []
        for key, entry in sorted(entries.items(), key=lambda kv: kv[1].last_used):
            if total + needed <= self.config.max_bytes:
                break
            if key != keep and self._evict(key):
                total -= entry.size
                evicted.append(key)
        for key in evicted:
            del entries[key]
        if total + needed > self.config.max_bytes:
            raise ModelFetchFailed(
                f"model cache full: {needed} bytes do not fit in MODEL_CACHE_MAX_BYTES "
                f"({self.config.max_bytes}) beside {total} bytes used by running jobs",
                {"reason": "cache_full", "needed": needed, "in_use_bytes": total,
                 "max_bytes": self.config.max_bytes},
            )
        return evicted

    def _evict(self, key: str) -> bool:
        fd = _try_lock(self._lock_path(".leases", _digest(key)), fcntl.LOCK_EX)
        if fd is None:
            return False  # a running job uses it
        try:
            self._path(key).unlink(missing_ok=True)
            log.info("model cache: evicted %s", key)
            return True
        finally:
            os.close(fd)


class ModelLease:
    """The files one job uses, kept from eviction until `release` (or the `with` block's end)."""

    def __init__(self, cache: ModelCache) -> None:
        self._cache = cache
        self._fds: list[int] = []
        self._guard = threading.Lock()

    def __enter__(self) -> ModelLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        with self._guard:
            fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)

    def ensure(
        self,
        requests: Sequence[ModelRequest],
        *,
        deadline: float,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        field: str = "models",
    ) -> list[CachedModel]:
        """Make every requested file present, verified and leased; one result per request,
        in order. `deadline` is a time.monotonic() value (the job's); `cancel` stops waiting
        and downloading (JobCancelled). Errors: ModelFetchFailed (model_fetch_failed),
        InvalidInput for a URL the address policy refuses, JobCancelled."""
        results = []
        for index, request in enumerate(requests):
            where = f"{field}[{index}]"
            job = _Fetch(self._cache, self, request, where, deadline, on_progress, cancel)
            results.append(job.run())
        return results

    async def ensure_async(
        self,
        requests: Sequence[ModelRequest],
        *,
        deadline: float,
        on_progress: ProgressCallback | None = None,
        field: str = "models",
    ) -> list[CachedModel]:
        """`ensure` for async code (the job): runs on a worker thread; cancelling the awaiting
        task sets the cancel event and waits until the download has stopped and removed its
        partial file, then re-raises CancelledError. `on_progress` is called on that thread."""
        cancel = threading.Event()
        work = asyncio.ensure_future(
            asyncio.to_thread(
                self.ensure, requests, deadline=deadline, on_progress=on_progress,
                cancel=cancel, field=field,
            )
        )
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            cancel.set()
            with suppress(BaseException):  # its JobCancelled is the expected outcome
                await work
            raise

    def _hold(self, key: str) -> None:
        """Take a shared lease on `key`; the caller holds the root lock, so no evictor holds
        the exclusive one and this never waits."""
        path = self._cache._lock_path(".leases", _digest(key))
        fd = _wait_lock(path, fcntl.LOCK_SH, deadline=None, cancel=None, what="a lease")
        with self._guard:
            self._fds.append(fd)


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


# --- one request ---------------------------------------------------------------------------


@dataclass
class _Fetch:
    cache: ModelCache
    lease: ModelLease
    request: ModelRequest
    field: str
    deadline: float
    on_progress: ProgressCallback | None
    cancel: threading.Event | None

    def __post_init__(self) -> None:
        self.key = f"{self.request.folder}/{self.request.file_name}"
        self.url_key = hashlib.sha256(self.request.url.encode("utf-8")).hexdigest()
        self.started = time.monotonic()
        self.last_report = 0.0

    def run(self) -> CachedModel:
        hit = self._lookup()
        if hit is not None:
            return hit
        lock = self.cache._lock_path(".locks", _digest(self.key))
        with _held(lock, fcntl.LOCK_EX, deadline=self.deadline, cancel=self.cancel,
                   what=f"{self.field}: another download of {self.key}"):
            # Whoever held the lock may have just installed it.
            hit = self._lookup(check_conflict=True)
            if hit is not None:
                return hit
            return self._download()

    def _lookup(self, check_conflict: bool = False) -> CachedModel | None:
        with self.cache._root_lock(self.deadline):
            entries = self.cache._read_index()
            entry = entries.get(self.key)
            if entry is not None and self._matches(entry):
                entry.last_used = time.time()
                self.cache._write_index(entries)
                self.lease._hold(self.key)
                return self._result(entry, downloaded=False)
            if check_conflict:
                self._refuse_conflict(entry)
        return None

    def _matches(self, entry: _Entry) -> bool:
        if self.request.sha256 is not None:
            return entry.sha256 == self.request.sha256
        return entry.url_key == self.url_key

    def _refuse_conflict(self, entry: _Entry | None) -> None:
        """The name is taken by something this request must not replace."""
        if entry is None and self.cache._path(self.key).exists():
            raise self._conflict("a file the cache did not create has this name")
        if entry is not None and not self.cache._lease_is_free(self.key):
            raise self._conflict("a running job uses the file of that name from another URL")

    def _conflict(self, why: str) -> ModelFetchFailed:
        return ModelFetchFailed(
            f"{self.field}: cannot store {self.key}: {why}; choose another name",
            {"field": self.field, "reason": "name_conflict", "folder": self.request.folder,
             "name": self.request.file_name},
        )

    def _download(self) -> CachedModel:
        config = self.cache.config
        part = self.cache.root / self.request.folder / f".{_digest(self.key)}.part"
        log.info("model cache: downloading %s into %s", redact_url(self.request.url), self.key)
        done = Download(
            url=self.request.url,
            part_path=part,
            limits=FetchLimits(
                max_bytes=min(config.max_model_bytes, config.max_bytes),
                io_timeout_s=config.io_timeout_s,
                allow_private=config.allow_private,
            ),
            deadline=self.deadline,
            field=self.field,
            expected_sha256=self.request.sha256,
            tokens=config.tokens,
            cancel=self.cancel,
            on_bytes=self._progress,
            on_total=self._reserve,
            resolver=config.resolver,
        ).run()
        try:
            return self._install(part, done.size, done.sha256)
        finally:
            part.unlink(missing_ok=True)

    def _reserve(self, total: int) -> None:
        """Told the size before the body: make room now, so the disk never holds more than
        the budget plus the downloads in flight."""
        with self.cache._root_lock(self.deadline):
            entries = self.cache._read_index()
            if self.cache._make_room(entries, total, keep=self.key):
                self.cache._write_index(entries)

    def _install(self, part: Path, size: int, sha256: str) -> CachedModel:
        with self.cache._root_lock(self.deadline):
            entries = self.cache._read_index()
            self._refuse_conflict(entries.get(self.key))
            self.cache._make_room(entries, size, keep=self.key)
            os.replace(part, self.cache._path(self.key))
            entry = _Entry(url_key=self.url_key, sha256=sha256, size=size,
                           last_used=time.time(), source=redact_url(self.request.url))
            entries[self.key] = entry
            self.cache._write_index(entries)
            self.lease._hold(self.key)
        log.info("model cache: stored %s (%d bytes, %.1f s)", self.key, size, self._elapsed())
        return self._result(entry, downloaded=True)

    def _result(self, entry: _Entry, *, downloaded: bool) -> CachedModel:
        return CachedModel(
            folder=self.request.folder, name=self.request.file_name, size_bytes=entry.size,
            sha256=entry.sha256, downloaded=downloaded, seconds=round(self._elapsed(), 3),
            source=redact_url(self.request.url),
        )

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    def _progress(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if self.on_progress is None or (now - self.last_report < _PROGRESS_EVERY_S
                                        and done != total):
            return
        self.last_report = now
        percent = round(100.0 * done / total, 1) if total else None
        self.on_progress(ModelProgress(folder=self.request.folder,
                                       name=self.request.file_name, bytes=done,
                                       total=total, percent=percent))
