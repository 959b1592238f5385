"""Hand the files to the client: in the format asked for, inline as base64 or as URLs.

Still images are re-encoded when the job asks for another format (Pillow); animated images,
video, audio and other files pass through untouched: converting them would drop frames or
is not ours to do. JPEG has no alpha, so transparent pixels are laid on white.

The platform refuses results over 20 MB, and a refused result is a job that hangs for the
client, so the size of the JSON is worked out before anything is encoded: `auto` switches to
the object store when the inline result would pass `MAX_RESPONSE_BYTES`, and fails with
`output_too_large` (saying what to configure) when there is no store.
"""

from __future__ import annotations

import io
import logging
import threading
from dataclasses import replace
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Literal

import pybase64
from PIL import Image

from ..blocking import FanOut, serial
from ..contract import OutputFile
from ..errors import InvalidInput, OutputTooLarge
from .collect import OutputFileData

if TYPE_CHECKING:
    from .store import ObjectStore

log = logging.getLogger(__name__)

Delivery = Literal["auto", "base64", "s3"]
# Room for the JSON around the data: keys, names, timings, the SDK's envelope.
_ITEM_OVERHEAD = 256
_ENVELOPE_OVERHEAD = 4096
_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}


def convert_image(file: OutputFileData, target: str, quality: int) -> OutputFileData:
    """`file` in `target` format (png | jpeg | webp), or unchanged when it is not a still image."""
    if file.ref.kind != "images" or file.ref.animated or file.mime_type == _MIME[target]:
        return file
    with Image.open(file.open()) as image:
        if getattr(image, "n_frames", 1) > 1:
            return file
        image.load()
        buffer = io.BytesIO()
        if target == "jpeg":
            _flatten(image).save(buffer, "JPEG", quality=quality, optimize=True)
        elif target == "webp":
            image.save(buffer, "WEBP", quality=quality, method=4)
        else:
            image.save(buffer, "PNG", compress_level=4)
    name = str(PurePosixPath(file.filename).with_suffix(_EXTENSIONS[target]))
    return replace(file, filename=name, data=buffer.getvalue(), path=None, mime_type=_MIME[target])


def _flatten(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image if image.mode in ("RGB", "L") else image.convert("RGB")


def inline_size(files: list[OutputFileData], other_bytes: int = 0) -> int:
    """Bytes of the JSON result if every file is returned as base64."""
    encoded = sum(_inline_cost(f) for f in files)
    return encoded + other_bytes + _ENVELOPE_OVERHEAD


def _inline_cost(file: OutputFileData) -> int:
    """Bytes one file adds to the JSON result as base64, with its item's keys."""
    return 4 * ((file.size + 2) // 3) + _ITEM_OVERHEAD


def no_store_error() -> InvalidInput:
    """`delivery: s3` with no store: said before the run too, so no GPU time is spent on it."""
    return InvalidInput(
        "output.delivery: 's3' needs an object store, and none is configured "
        "(set BUCKET_ENDPOINT_URL and its keys, or use 'auto' or 'base64')",
        [{"field": "output.delivery", "problem": "no object store configured"}],
    )


def deliver(
    files: list[OutputFileData],
    *,
    delivery: Delivery,
    job_id: str,
    store: ObjectStore | None,
    max_response_bytes: int,
    other_bytes: int = 0,
    fan_out: FanOut = serial,
) -> list[OutputFile]:
    """One `OutputFile` per file, in order, delivered the way the job and its size allow."""
    if delivery == "s3" and store is None:
        raise no_store_error()
    if delivery != "s3":
        size = inline_size(files, other_bytes)
        if size <= max_response_bytes:
            return [_inline(f) for f in files]
        if delivery == "base64" or store is None:
            raise _too_large(size, max_response_bytes, len(files))
        log.info(
            "job %s: result would be %.1f MB inline; uploading to the object store",
            job_id, size / 1e6,
        )
    assert store is not None
    return _upload_all(files, job_id=job_id, store=store, fan_out=fan_out)


def _too_large(size: int, limit: int, files: int) -> OutputTooLarge:
    return OutputTooLarge(
        f"the result would be {size / 1e6:.1f} MB as base64, over the {limit / 1e6:.1f} MB "
        "the platform accepts; configure an object store (BUCKET_ENDPOINT_URL, "
        "BUCKET_ACCESS_KEY_ID, BUCKET_SECRET_ACCESS_KEY) and use output.delivery 'auto' or "
        "'s3', or make fewer or smaller outputs",
        {"size_bytes": size, "limit_bytes": limit, "files": files},
    )


class ResponseBudget:
    """What the answer may still hold inline, for outputs delivered one at a time.

    A streamed job's answer, as the platform keeps it, is every streamed item and then the
    result: each inline output is in it twice (`copies`). Shared by the threads that deliver
    a job's outputs, so each take is under a lock.
    """

    def __init__(self, limit_bytes: int, *, copies: int = 1) -> None:
        self.limit_bytes = limit_bytes
        self._copies = copies
        self._used = _ENVELOPE_OVERHEAD
        self._files = 0
        self._lock = threading.Lock()

    def charge(self, nbytes: int) -> None:
        """Count bytes that go inline whatever the budget says (text outputs)."""
        with self._lock:
            self._used += nbytes * self._copies

    def take(self, file: OutputFileData) -> bool:
        """Whether `file` fits inline; when it does, its room is taken."""
        cost = _inline_cost(file) * self._copies
        with self._lock:
            self._files += 1
            if self._used + cost > self.limit_bytes:
                return False
            self._used += cost
            return True

    def too_large(self, file: OutputFileData) -> OutputTooLarge:
        with self._lock:
            size = self._used + _inline_cost(file) * self._copies
            return _too_large(size, self.limit_bytes, self._files)


def deliver_one(
    file: OutputFileData,
    *,
    delivery: Delivery,
    job_id: str,
    store: ObjectStore | None,
    budget: ResponseBudget,
    names: KeyNames,
) -> OutputFile:
    """One output delivered on its own, as soon as it exists (a streamed job's outputs).

    `auto` decides per file: inline while the answer has room for it, else to the store.
    """
    if delivery == "s3" and store is None:
        raise no_store_error()
    if delivery != "s3":
        if budget.take(file):
            return _inline(file)
        if delivery == "base64" or store is None:
            raise budget.too_large(file)
        log.info("job %s: %s would pass the inline limit; uploading it to the object store",
                 job_id, file.filename)
    assert store is not None
    return _upload(file, names.claim(file), job_id=job_id, store=store)


def _inline(file: OutputFileData) -> OutputFile:
    # pybase64 (SIMD) writes the text straight into a str: no bytes copy to decode.
    encoded = pybase64.b64encode_as_string(file.read())
    # The base64 text is all that is returned: let the raw bytes go now, not at the job's
    # end, so a large batch never holds both for every file at once.
    file.release()
    return OutputFile(
        filename=file.filename,
        type="base64",
        data=encoded,
        node_id=file.ref.node_id,
        mime_type=file.mime_type,
        subfolder=file.ref.subfolder,
    )


def _upload_all(
    files: list[OutputFileData], *, job_id: str, store: ObjectStore, fan_out: FanOut
) -> list[OutputFile]:
    names = KeyNames()
    pairs = [(file, names.claim(file)) for file in files]
    return fan_out(lambda pair: _upload(*pair, job_id=job_id, store=store), pairs)


def _upload(file: OutputFileData, name: str, *, job_id: str, store: ObjectStore) -> OutputFile:
    with file.open() as body:  # streamed from disk when the file is local
        stored = store.upload(job_id=job_id, filename=name, data=body,
                              content_type=file.mime_type)
    file.release()
    return OutputFile(
        filename=file.filename,
        type="s3_url",
        data=stored.url,
        node_id=file.ref.node_id,
        mime_type=file.mime_type,
        subfolder=file.ref.subfolder,
    )


class KeyNames:
    """Object keys for a job's files: files from different subfolders may share a name, keys
    within a job must not. Claimed one at a time, from any thread."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def claim(self, file: OutputFileData) -> str:
        name = file.filename
        with self._lock:
            if name in self._seen and file.ref.subfolder:
                name = f"{file.ref.subfolder.replace('/', '_')}_{name}"
            counter, base = 1, name
            while name in self._seen:
                name = f"{counter}_{base}"
                counter += 1
            self._seen.add(name)
        return name
