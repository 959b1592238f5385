"""Model files downloaded on demand, kept in a bounded cache that ComfyUI reads from.

The job's interface::

    cache = ModelCache(CacheConfig.from_settings(settings))   # once per worker
    cache.sweep()                                             # at start: crashed downloads
    yaml_section = cache.model_paths_yaml()                   # for ComfyUI's launch
    with cache.lease() as lease:                              # one per job
        models = await lease.ensure_async(requests, deadline=job_deadline, on_progress=report)
        ...run the prompt; the files stay (no eviction) until the with block ends...
    cache.describe()                                          # for the info request

Files live under `<root>/<folder>/<name>` (see model_store for the layout, the index and the
locks), may be shared by several workers on one network volume, and are keyed by URL, or by
sha256 when the request gives one: a request matches the cached file of its name when the
checksums agree, or, without a checksum, when the URLs do.

Concurrency in short: a hit is looked up and leased under the root lock; a miss takes the
file's download lock (a second asker waits there, then finds the hit), downloads to a `.part`
file without holding the root lock, and is installed (room made, renamed, indexed, leased)
under the root lock. Least recently used files go first when room is needed; leased files and
files the cache did not create are never deleted or replaced.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from .address_policy import Resolver
from .errors import JobCancelled
from .model_fetch import Download, FetchLimits, ModelFetchFailed, TokenRule
from .model_inputs import FILE_EXTENSIONS, ModelRequest
from .model_store import CacheEntry, CacheStore
from .url_fetch import redact_url

if TYPE_CHECKING:
    from .settings import Settings

log = logging.getLogger(__name__)

_PROGRESS_EVERY_S = 0.5
_PARALLEL = 4  # downloads at once per ensure
_WATCH_S = 0.05  # how often the caller's cancel event is looked at


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


ProgressCallback = Callable[[ModelProgress], None]


# --- the cache ---------------------------------------------------------------------------------


class ModelCache:
    """The cache under `config.root`. Thread-safe and process-safe; create one per worker."""

    def __init__(self, config: CacheConfig) -> None:
        self.config = config
        self.root = config.root
        self.store = CacheStore(config.root, FILE_EXTENSIONS)

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
        with self.store.root_lock():
            entries = self.store.read_index()
            files = [
                CachedFile(
                    folder=key.split("/", 1)[0],
                    name=key.split("/", 1)[1],
                    size_bytes=entry.size,
                    last_used=entry.last_used,
                    in_use=not self.store.lease_is_free(key),
                )
                for key, entry in sorted(entries.items(), key=lambda kv: -kv[1].last_used)
            ]
        total = sum(f.size_bytes for f in files)
        return CacheInfo(
            root=str(self.root), size_bytes=total, max_bytes=self.config.max_bytes, files=files
        )

    def sweep(self) -> int:
        """Delete `.part` files left by crashed downloads; call once at start. Returns how
        many were deleted."""
        return self.store.sweep_parts()

    def make_room(self, entries: dict[str, CacheEntry], needed: int, keep: str) -> bool:
        """Evict least recently used, unleased entries until `needed` more bytes fit in the
        budget; `keep` (the file being installed) is neither counted nor evicted. The caller
        holds the root lock and writes `entries` back when this returns True (evicted some).
        Raises cache_full when leased files leave too little room."""
        budget = self.config.max_bytes
        total = sum(e.size for k, e in entries.items() if k != keep)
        evicted: list[str] = []
        for key, entry in sorted(entries.items(), key=lambda kv: kv[1].last_used):
            if total + needed <= budget:
                break
            if key != keep and self.store.delete_unless_leased(key):
                log.info("model cache: evicted %s (%d bytes)", key, entry.size)
                total -= entry.size
                evicted.append(key)
        for key in evicted:
            del entries[key]
        if total + needed > budget:
            raise ModelFetchFailed(
                f"model cache full: {needed} bytes do not fit in MODEL_CACHE_MAX_BYTES "
                f"({budget}) beside {total} bytes used by running jobs",
                {"reason": "cache_full", "needed": needed, "in_use_bytes": total,
                 "max_bytes": budget},
            )
        return bool(evicted)


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
        InvalidInput for a URL the address policy refuses, JobCancelled.

        Up to `_PARALLEL` files download at once (a CDN often limits each connection, and a
        job's checkpoint, LoRA and VAE are independent); `on_progress` may then be called from
        several threads. The first failure stops the others, and the error raised is the one
        of the first failed request in list order."""
        stop = threading.Event()  # ours: set on the caller's cancel or on a failure
        fetches = [
            _Fetch(self._cache, self, request, f"{field}[{i}]", deadline, on_progress, stop)
            for i, request in enumerate(requests)
        ]
        if not fetches:
            return []
        with ThreadPoolExecutor(min(_PARALLEL, len(fetches)), "model-fetch") as pool:
            futures = [pool.submit(fetch.run) for fetch in fetches]
            self._watch(futures, stop, cancel)
        return _results_or_first_error(futures)

    @staticmethod
    def _watch(
        futures: list[Future[CachedModel]], stop: threading.Event, cancel: threading.Event | None
    ) -> None:
        """Until all are done: pass the caller's cancel on, and stop the rest after a failure."""
        pending: set[Future[CachedModel]] = set(futures)
        while pending:
            done, pending = wait(pending, timeout=_WATCH_S, return_when=FIRST_EXCEPTION)
            if (cancel is not None and cancel.is_set()) or any(f.exception() for f in done):
                stop.set()

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
        fd = self._cache.store.take_lease(key)
        with self._guard:
            self._fds.append(fd)


def _results_or_first_error(futures: list[Future[CachedModel]]) -> list[CachedModel]:
    errors = [f.exception() for f in futures]
    # A request stopped because another one failed says JobCancelled; the real cause wins.
    real = [e for e in errors if e is not None and not isinstance(e, JobCancelled)]
    first = real[0] if real else next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
    return [f.result() for f in futures]


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
        with self.cache.store.download_lock(
            self.key, deadline=self.deadline, cancel=self.cancel,
            what=f"{self.field}: another download of {self.key}",
        ):
            # Whoever held the lock may have just installed it.
            hit = self._lookup(check_conflict=True)
            if hit is not None:
                return hit
            return self._download()

    def _lookup(self, check_conflict: bool = False) -> CachedModel | None:
        with self.cache.store.root_lock(self.deadline):
            entries = self.cache.store.read_index()
            entry = entries.get(self.key)
            if entry is not None and self._matches(entry):
                entry.last_used = time.time()
                self.cache.store.write_index(entries)
                self.lease._hold(self.key)
                return self._result(entry, downloaded=False)
            if check_conflict:
                self._refuse_conflict(entry)
        return None

    def _matches(self, entry: CacheEntry) -> bool:
        if self.request.sha256 is not None:
            return entry.sha256 == self.request.sha256
        return entry.url_key == self.url_key

    def _refuse_conflict(self, entry: CacheEntry | None) -> None:
        """The name is taken by something this request must not replace."""
        if entry is None and self.cache.store.path(self.key).exists():
            raise self._conflict("a file the cache did not create has this name")
        if entry is not None and not self.cache.store.lease_is_free(self.key):
            raise self._conflict("a running job uses the file of that name from another URL")

    def _conflict(self, why: str) -> ModelFetchFailed:
        return ModelFetchFailed(
            f"{self.field}: cannot store {self.key}: {why}; choose another name",
            {"field": self.field, "reason": "name_conflict", "folder": self.request.folder,
             "name": self.request.file_name},
        )

    def _download(self) -> CachedModel:
        config = self.cache.config
        part = self.cache.store.part_path(self.key)
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
        with self.cache.store.root_lock(self.deadline):
            entries = self.cache.store.read_index()
            if self.cache.make_room(entries, total, keep=self.key):
                self.cache.store.write_index(entries)

    def _install(self, part: Path, size: int, sha256: str) -> CachedModel:
        with self.cache.store.root_lock(self.deadline):
            entries = self.cache.store.read_index()
            self._refuse_conflict(entries.get(self.key))
            self.cache.make_room(entries, size, keep=self.key)
            os.replace(part, self.cache.store.path(self.key))
            entry = CacheEntry(url_key=self.url_key, sha256=sha256, size=size,
                           last_used=time.time(), source=redact_url(self.request.url))
            entries[self.key] = entry
            self.cache.store.write_index(entries)
            self.lease._hold(self.key)
        log.info("model cache: stored %s (%d bytes, %.1f s)", self.key, size, self._elapsed())
        return self._result(entry, downloaded=True)

    def _result(self, entry: CacheEntry, *, downloaded: bool) -> CachedModel:
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
