"""Model files downloaded on demand, kept in a bounded cache that ComfyUI reads from.

The job's interface::

    cache = ModelCache(CacheConfig.from_settings(settings))   # once per worker
    cache.sweep()                                             # at start: crashed downloads
    with cache.lease() as lease:                              # one per job
        models = await lease.ensure_async(requests, deadline=job_deadline, on_progress=report)
        ...run the prompt; the files stay (no eviction) until the with block ends...
    cache.describe()                                          # for the info request

Files live under `<root>/<folder>/<name>` (see model_store for the layout, the index and the
locks), may be shared by several workers on one network volume, and are keyed by URL, or by
sha256 when the request gives one: a request matches the cached file of its name when the
checksums agree, or, without a checksum, when the URLs do.

This module is what a job sees: the cache (its folders for ComfyUI, its contents for the info
request) and a lease that ensures several requests at once and keeps their files from
eviction until the job ends. How one file is looked up, downloaded once and installed, safely
beside other jobs and workers, is `model_obtain`'s; the disk layout and locks are
`model_store`'s; one download is `model_fetch`'s.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import suppress

from pydantic import BaseModel

from ..errors import JobCancelled
from .inputs import FILE_EXTENSIONS, ModelRequest
from .obtain import CacheConfig, CachedModel, ModelObtain, ModelProgress, ProgressCallback
from .store import CacheStore

__all__ = [
    "CacheConfig", "CacheInfo", "CachedFile", "CachedModel", "ModelCache", "ModelLease",
    "ModelProgress", "ProgressCallback",
]

_PARALLEL = 4  # downloads at once per ensure
_WATCH_S = 0.05  # how often the caller's cancel event is looked at


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


# --- the cache ---------------------------------------------------------------------------------


class ModelCache:
    """The cache under `config.root`. Thread-safe and process-safe; create one per worker."""

    def __init__(self, config: CacheConfig) -> None:
        self.config = config
        self.root = config.root
        self.store = CacheStore(config.root, FILE_EXTENSIONS)

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
        """Bring index and disk together; call once at start (see `CacheStore.reconcile`).
        Returns how many partial files of crashed downloads were deleted."""
        # A live download writes at least once per I/O timeout, or gives up.
        return self.store.reconcile(stale_part_s=2 * self.config.io_timeout_s)


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
        fields: Sequence[str] | None = None,
    ) -> list[CachedModel]:
        """Make every requested file present, verified and leased; one result per request,
        in order. Errors name `fields[i]` for request i, or `<field>[i]` without `fields`. `deadline` is a time.monotonic() value (the job's); `cancel` stops waiting
        and downloading (JobCancelled). Errors: ModelFetchFailed (model_fetch_failed),
        InvalidInput for a URL the address policy refuses, JobCancelled.

        Up to `_PARALLEL` files download at once (a CDN often limits each connection, and a
        job's checkpoint, LoRA and VAE are independent); `on_progress` may then be called from
        several threads. The first failure stops the others, and the error raised is the one
        of the first failed request in list order."""
        stop = threading.Event()  # ours: set on the caller's cancel or on a failure
        names = list(fields) if fields is not None else [
            f"{field}[{i}]" for i in range(len(requests))]
        fetches = [
            ModelObtain(self._cache.store, self._cache.config, self._hold, request,
                        name, deadline, on_progress, stop)
            for request, name in zip(requests, names, strict=True)
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
