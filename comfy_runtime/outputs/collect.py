"""What a run produced: find every output in the history and fetch the files.

ComfyUI's history lists, per node, any number of keys; each holds a list of files
(`{filename, subfolder, type}`) or of plain values (text). Core video nodes report under
`images` with `animated: [true]`, custom ones under `gifs`/`videos`, audio under `audio`.
We walk every node and every key and sort files by what they are, not where they were found.
"""

from __future__ import annotations

import io
import mimetypes
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from ..blocking import FanOut, serial
from ..comfyui.client import ComfyClient
from ..comfyui.events import Event, NodeExecuted, PreviewFrame
from ..contract import MediaKind, TextOutput
from ..errors import ComfyUIUnavailable
from ..job_files import ComfyFolders

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif"}
VIDEO_EXTENSIONS = {".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v"}
AUDIO_EXTENSIONS = {".flac", ".mp3", ".wav", ".ogg", ".opus", ".m4a", ".aac"}
_VIDEO_KEYS = {"gifs", "videos", "video"}
_EXTRA_TYPES = {
    ".webp": "image/webp",
    ".flac": "audio/flac",
    ".opus": "audio/opus",
    ".latent": "application/octet-stream",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".avif": "image/avif",
}


@dataclass(frozen=True)
class OutputRef:
    """A file ComfyUI reported, before we fetch it."""

    node_id: str
    filename: str
    subfolder: str
    folder_type: str  # output | temp | input
    kind: MediaKind
    animated: bool


@dataclass
class OutputFileData:
    """A file ready to convert and deliver: its bytes, or where they lie on this machine.

    A local file is read only when it must be (base64, conversion) and streamed otherwise
    (object store), so a large batch is never all in memory at once.
    """

    ref: OutputRef
    filename: str
    data: bytes | None
    mime_type: str
    path: Path | None = None

    @property
    def size(self) -> int:
        if self.data is not None:
            return len(self.data)
        return self.path.stat().st_size if self.path is not None else 0

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        return self.path.read_bytes() if self.path is not None else b""

    def open(self) -> BinaryIO:
        """A readable, seekable stream of the content."""
        if self.data is None and self.path is not None:
            return self.path.open("rb")
        return io.BytesIO(self.read())

    def release(self) -> None:
        """Drop the bytes held in memory (a local file stays where it is)."""
        if self.path is not None:
            self.data = None
        else:
            self.data = b""


def guess_mime(filename: str) -> str:
    suffix = PurePosixPath(filename).suffix.lower()
    return _EXTRA_TYPES.get(suffix) or mimetypes.guess_type(filename)[0] or "application/octet-stream"


def _kind(filename: str, key: str) -> MediaKind:
    suffix = PurePosixPath(filename).suffix.lower()
    if key in _VIDEO_KEYS or suffix in VIDEO_EXTENSIONS:
        return "videos"
    if suffix in AUDIO_EXTENSIONS or key == "audio":
        return "audio"
    if suffix in IMAGE_EXTENSIONS:
        return "images"
    return "files"


def collect_outputs(
    outputs: dict[str, dict[str, Any]], *, include_previews: bool
) -> tuple[list[OutputRef], list[TextOutput]]:
    """Every file and text output of a finished run (`FinishedRun.outputs`), in node order."""
    files: list[OutputRef] = []
    texts: list[TextOutput] = []
    for node_id, node_outputs in outputs.items():
        animated_flags = node_outputs.get("animated") or []
        for key, items in node_outputs.items():
            if key == "animated" or not isinstance(items, list):
                continue
            for index, item in enumerate(items):
                if isinstance(item, dict) and isinstance(item.get("filename"), str):
                    folder_type = str(item.get("type") or "output")
                    if folder_type == "temp" and not include_previews:
                        continue
                    animated = bool(
                        animated_flags[index] if index < len(animated_flags) else False
                    )
                    files.append(
                        OutputRef(
                            node_id=str(node_id),
                            filename=item["filename"],
                            subfolder=str(item.get("subfolder") or ""),
                            folder_type=folder_type,
                            kind=_kind(item["filename"], key),
                            animated=animated,
                        )
                    )
                elif isinstance(item, str) and key == "text":
                    texts.append(TextOutput(node_id=str(node_id), text=item))
    return files, texts


def executed_outputs(event: Event, *, include_previews: bool
                     ) -> tuple[list[OutputRef], list[TextOutput]]:
    """The outputs a node's `executed` event announces (none for any other event)."""
    if not isinstance(event, NodeExecuted):
        return [], []
    return collect_outputs({event.node: event.output}, include_previews=include_previews)


def fetch_output(
    client: ComfyClient, ref: OutputRef, folders: ComfyFolders | None = None
) -> OutputFileData:
    """One reported file: its path when ComfyUI's folders are here, else downloaded."""
    local = folders.existing(ref.folder_type, ref.subfolder, ref.filename) if folders else None
    if local is not None:
        return OutputFileData(ref=ref, filename=ref.filename, data=None, path=local,
                              mime_type=guess_mime(ref.filename))
    try:
        data, content_type = client.view(ref.filename, ref.subfolder, ref.folder_type)
    except ComfyUIUnavailable as exc:
        raise ComfyUIUnavailable(
            f"ComfyUI reported output {ref.filename!r} of node {ref.node_id} but would not "
            f"serve it: {exc.message}",
            {"node_id": ref.node_id, "filename": ref.filename, "subfolder": ref.subfolder},
        ) from exc
    mime = (content_type or "").split(";")[0].strip()
    if not mime or mime == "application/octet-stream":
        mime = guess_mime(ref.filename)
    return OutputFileData(ref=ref, filename=ref.filename, data=data, mime_type=mime)


def fetch_outputs(
    client: ComfyClient,
    refs: list[OutputRef],
    folders: ComfyFolders | None = None,
    fan_out: FanOut = serial,
) -> list[OutputFileData]:
    """Every reported file, read from disk when ComfyUI's folders are here, else downloaded."""
    return fan_out(lambda ref: fetch_output(client, ref, folders), refs)


class EarlyDownloads:
    """Downloads each output as soon as its node reports it, while later nodes still run.

    Over HTTP a file costs a round trip to ComfyUI; started at the node's `executed` event it
    overlaps the rest of the run instead of following it. Fed the run's events (from the
    prompt's thread); `fetch` then gives every file of the finished run, taking the early
    downloads and fetching whatever the events did not announce. A download that is never
    asked for (the run failed) is simply dropped.
    """

    def __init__(
        self,
        client: ComfyClient,
        start: Callable[[Callable[[], OutputFileData]], Future[OutputFileData]],
        *,
        include_previews: bool,
    ) -> None:
        self._client = client
        self._start = start
        self._include_previews = include_previews
        self._early: dict[OutputRef, Future[OutputFileData]] = {}

    def on_event(self, event: Event) -> None:
        refs, _ = executed_outputs(event, include_previews=self._include_previews)
        for ref in refs:
            if ref not in self._early:
                self._early[ref] = self._start(partial(fetch_output, self._client, ref))

    def fetch(self, refs: list[OutputRef], fan_out: FanOut = serial) -> list[OutputFileData]:
        # Only the files no event announced go through `fan_out`: its pool is the one the
        # early downloads run in, and none of its threads may wait on another.
        missing = [ref for ref in refs if ref not in self._early]
        fetched = dict(zip(missing, fetch_outputs(self._client, missing, None, fan_out)))
        return [fetched[ref] if ref in fetched else self._early[ref].result() for ref in refs]


def websocket_outputs(
    frames: list[tuple[str, PreviewFrame]], graph: dict[str, Any]
) -> list[OutputFileData]:
    """Images SaveImageWebsocket sent over the websocket: outputs that never touch the disk."""
    results: list[OutputFileData] = []
    for node_id, frame in frames:
        if graph.get(node_id, {}).get("class_type") != "SaveImageWebsocket":
            continue  # a preview, not an output
        mime = frame.mime_type or "image/png"
        extension = mimetypes.guess_extension(mime) or ".png"
        name = f"websocket_{node_id}_{len(results) + 1:05d}{extension}"
        ref = OutputRef(node_id, name, "", "websocket", "images", False)
        results.append(OutputFileData(ref=ref, filename=name, data=frame.data, mime_type=mime))
    return results
