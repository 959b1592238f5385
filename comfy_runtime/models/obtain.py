"""One requested model made present: a cache hit, or one download under the file's lock,
installed with least-recently-used eviction.

Why a module of its own: `model_cache` is what a job sees (a cache, a lease, several requests
at once); this is the protocol for a single file that keeps the cache correct when jobs and
workers sharing a volume ask for it at the same time:

1. look it up under the root lock: a hit (same sha256, or same URL when no checksum is given)
   is leased and returned; a file fetched without a checksum and now asked for with one is
   hashed first, under a lease but outside the root lock, within the job's time;
2. a miss takes the file's download lock (a second asker waits there, then finds the hit),
   and downloads to a `.part` file of its own without holding the root lock; a size announced
   up front is only checked against what running jobs hold, and room is made a step at a time
   for bytes that arrived, so a server that promises much and sends little evicts nothing;
3. the download is installed under the root lock: room made, its index entry written, renamed
   into place and leased, unless the name has meanwhile been taken by something it must not
   replace. Entry before rename: a failure between them leaves no file the index lacks.

Eviction (`make_room`) deletes least recently used files first, never a leased one and never a
file the cache did not create (those are not in the index); when leased files leave too little
room it evicts nothing and says so (cache_full).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from ..errors import JobCancelled
from ..fetch.address_policy import Resolver
from ..fetch.download import redact_url
from .fetch import Download, FetchLimits, ModelFetchFailed, TokenRule
from .inputs import ModelRequest
from .part import file_sha256
from .store import CacheEntry, CacheStore

if TYPE_CHECKING:
    from ..settings import Settings

log = logging.getLogger(__name__)

_PROGRESS_EVERY_S = 0.5
RESERVE_STEP_BYTES = 64 * 1024 * 1024
"""How far a download runs ahead of the room made for it (see `ModelObtain._on_bytes`)."""


class CachedModel(BaseModel):
    """A model ready for ComfyUI: `name` is what a loader input in `folder` must say."""

    folder: str
    name: str
    size_bytes: int
    sha256: str | None  # None: no request for this file gave a checksum yet
    downloaded: bool  # False: it was in the cache already (or another job just fetched it)
    seconds: float
    source: str  # the URL without query string or credentials


class ModelProgress(BaseModel):
    folder: str
    name: str
    bytes: int
    total: int | None
    percent: float | None


ProgressCallback = Callable[[ModelProgress], None]


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


def make_room(
    store: CacheStore, budget: int, entries: dict[str, CacheEntry], needed: int, keep: str
) -> None:
    """Evict least recently used, unleased entries until `needed` more bytes fit in the
    budget; `keep` (the file being installed) is neither counted nor evicted. The caller
    holds the root lock. Raises cache_full, having evicted nothing, when leased files leave
    too little room."""
    total = sum(e.size for k, e in entries.items() if k != keep)
    if total + needed <= budget:
        return
    candidates = sorted(((k, e) for k, e in entries.items() if k != keep),
                        key=lambda kv: kv[1].last_used)
    free = [(k, e) for k, e in candidates if store.lease_is_free(k)]
    if total - sum(e.size for _, e in free) + needed <= budget:
        for key, entry in free:
            if total + needed <= budget:
                break
            if store.delete_unless_leased(key):  # a job may have leased it since
                log.info("model cache: evicted %s (%d bytes)", key, entry.size)
                total -= entry.size
                del entries[key]
    if total + needed > budget:
        raise _cache_full(needed, total, budget)


def check_fits(store: CacheStore, budget: int, needed: int, keep: str) -> None:
    """Raise cache_full when `needed` bytes could not fit even with every unleased file
    evicted; evicts nothing (a size announced is not yet a size proven)."""
    entries = store.read_index()
    leased = sum(e.size for k, e in entries.items() if k != keep and not store.lease_is_free(k))
    if leased + needed > budget:
        raise _cache_full(needed, leased, budget)


def _cache_full(needed: int, in_use: int, budget: int) -> ModelFetchFailed:
    return ModelFetchFailed(
        f"model cache full: {needed} bytes do not fit in MODEL_CACHE_MAX_BYTES ({budget}) "
        f"beside {in_use} bytes used by running jobs",
        {"reason": "cache_full", "needed": needed, "in_use_bytes": in_use, "max_bytes": budget},
    )


@dataclass
class ModelObtain:
    """Makes one request's file present, verified and leased (`run`)."""

    store: CacheStore
    config: CacheConfig
    hold: Callable[[str], None]  # takes the job's lease on a key; called under the root lock
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
        self.reserved = 0  # bytes of this download the cache has made room for

    def run(self) -> CachedModel:
        self.check_time_and_cancel()  # queued behind a failure: ask no server anything
        hit = self._lookup()
        if hit is not None:
            return hit
        with self.store.download_lock(
            self.key, deadline=self.deadline, cancel=self.cancel,
            what=f"{self.field}: another download of {self.key}",
        ):
            # Whoever held the lock may have just installed it.
            hit = self._lookup(check_conflict=True)
            if hit is not None:
                return hit
            self.check_time_and_cancel()
            return self._download()

    def _lookup(self, check_conflict: bool = False) -> CachedModel | None:
        while True:
            with self.store.root_lock(self.deadline):
                entry = self.store.entry(self.key)
                if entry is None or not self._needs_hash(entry):
                    if entry is not None and self._matches(entry):
                        return self._serve(entry)
                    if check_conflict:
                        self._refuse_conflict(entry)
                    return None
                lease = self.store.take_lease(self.key)  # kept from eviction while hashed
            # Fetched earlier without a checksum: hashed once, now that one is asked for,
            # outside the lock every job on the volume needs, and within this job's time.
            try:
                digest = file_sha256(self.store.path(self.key), self.check_time_and_cancel)
            finally:
                os.close(lease)
            with self.store.root_lock(self.deadline):
                now = self.store.entry(self.key)
                if now is not None and now.token == entry.token:
                    now.sha256 = digest
                    self._write_quietly(now)
            # Looked up again: now known by checksum, or replaced meanwhile.

    def _needs_hash(self, entry: CacheEntry) -> bool:
        return (self.request.sha256 is not None and entry.sha256 is None
                and entry.url_key == self.url_key)

    def _matches(self, entry: CacheEntry) -> bool:
        if self.request.sha256 is not None:
            return entry.sha256 == self.request.sha256
        return entry.url_key == self.url_key

    def _serve(self, entry: CacheEntry) -> CachedModel:
        entry.last_used = time.time()
        self._write_quietly(entry)
        self.hold(self.key)
        return self._result(entry, downloaded=False)

    def _write_quietly(self, entry: CacheEntry) -> None:
        """Record a last use or a checksum: worth keeping, not worth failing a hit for."""
        try:
            self.store.write_entry(entry)
        except OSError as exc:
            log.warning("model cache: could not update the entry of %s (%s); served anyway",
                        self.key, exc.strerror)

    def _refuse_conflict(self, entry: CacheEntry | None) -> None:
        """The name is taken by something this request must not replace."""
        if entry is None and self.store.path(self.key).exists():
            raise self._conflict(
                f"a file the cache did not create has this name ({self.store.path(self.key)}; "
                "put there by hand, or left by an older version of the worker)")
        if entry is not None and not self.store.lease_is_free(self.key):
            raise self._conflict("a running job uses the file of that name from another URL")

    def _conflict(self, why: str) -> ModelFetchFailed:
        return ModelFetchFailed(
            f"{self.field}: cannot store {self.key}: {why}; choose another name",
            {"field": self.field, "reason": "name_conflict", "folder": self.request.folder,
             "name": self.request.file_name},
        )

    def _download(self) -> CachedModel:
        config = self.config
        part = self.store.new_part_path(self.key)
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
            on_bytes=self._on_bytes,
            on_total=self._announced,
            resolver=config.resolver,
        ).run()
        try:
            return self._install(part, done.size, done.sha256)
        finally:
            part.unlink(missing_ok=True)

    def _announced(self, total: int) -> None:
        """Told the size before the body: refuse now if it cannot fit; evict nothing yet."""
        with self.store.root_lock(self.deadline):
            check_fits(self.store, self.config.max_bytes, total, self.key)

    def _on_bytes(self, done: int, total: int | None) -> None:
        """Room is made for bytes that arrived, a step at a time: the disk holds at most the
        budget plus one step per download in flight, and a server that promises much and
        sends little evicts nothing."""
        if done - self.reserved >= RESERVE_STEP_BYTES:
            with self.store.root_lock(self.deadline):
                make_room(self.store, self.config.max_bytes, self.store.read_index(), done,
                          self.key)
            self.reserved = done
        self._progress(done, total)

    def _install(self, part: Path, size: int, sha256: str | None) -> CachedModel:
        with self.store.root_lock(self.deadline):
            entries = self.store.read_index()
            self._refuse_conflict(entries.get(self.key))
            make_room(self.store, self.config.max_bytes, entries, size, self.key)
            entry = CacheEntry(key=self.key, inode=os.stat(part).st_ino, url_key=self.url_key,
                               sha256=sha256, size=size, last_used=time.time(),
                               source=redact_url(self.request.url))
            # The entry first, then the rename: a failure or crash in between leaves an entry
            # without its file (ignored), never a file the index does not know.
            try:
                self.store.write_entry(entry)
            except OSError as exc:
                raise self._disk_error(exc) from None
            try:
                os.replace(part, self.store.path(self.key))
            except OSError as exc:
                self.store.drop(entry)
                raise self._disk_error(exc) from None
            self.store.remove_entries(self.key, keep=entry.token)  # the file it replaced
            self.hold(self.key)
        log.info("model cache: stored %s (%d bytes, %.1f s)", self.key, size, self._elapsed())
        return self._result(entry, downloaded=True)

    def _disk_error(self, exc: OSError) -> ModelFetchFailed:
        return ModelFetchFailed(
            f"{self.field}: storing {self.key} failed ({exc.strerror})",
            {"field": self.field, "reason": "disk_error", "errno": exc.errno},
        )

    def check_time_and_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise JobCancelled(f"{self.field}: cancelled", {"field": self.field})
        if time.monotonic() > self.deadline:
            raise ModelFetchFailed(
                f"{self.field}: the job's time limit passed while preparing {self.key}",
                {"field": self.field, "reason": "timeout"},
            )

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
