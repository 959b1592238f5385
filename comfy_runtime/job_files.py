"""A job's files: safe names, a folder of its own in ComfyUI's folders, and their removal.

* Names: a client's name is reduced to one harmless file name before it touches a disk or a
  key (`safe_filename`, the one such function).
* Isolation: inputs are stored in `input/job-<id>/` and the graph's references to them
  rewritten; outputs get the same folder through their `filename_prefix` (a literal one is
  prefixed, a linked one is put behind the folder with ComfyUI's StringConcatenate). And every
  output node carries the job's folder as an extra input (`JOB_INPUT`): ComfyUI ignores inputs
  a node does not declare, but they are part of its cache key. Without it ComfyUI reports a
  cached output node's earlier file, which the earlier job's cleanup already removed
  (recorded from a real ComfyUI in `tests/protocol/cached_outputs.json`).
* Local folders: when we launched ComfyUI (or its folders were named in the settings), files
  are written and read directly instead of through HTTP. Every path is resolved and must stay
  inside its folder.
* Cleanup: a worker runs thousands of jobs; files left behind fill the disk and can leak one
  client's data to the next. Files are removed only when ComfyUI's folders are on this
  machine; the history entry is removed through ComfyUI's API either way.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import unicodedata
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .comfyui.client import ComfyClient
from .comfyui.wire import UploadedFile
from .errors import ComfyUIUnavailable

log = logging.getLogger(__name__)

PREFIX_INPUT = "filename_prefix"
JOB_INPUT = "comfy_worker_job"
CONCAT_CLASS = "StringConcatenate"
_UNSAFE = re.compile(r"[^A-Za-z0-9._ ()+-]")
_MAX_SUFFIX = 16


# --- names ------------------------------------------------------------------------------------
def safe_filename(
    name: str, *, fallback: str = "input", keep_unicode: bool = False, max_chars: int = 128
) -> str:
    """A plain file name with no path and no control characters; the extension is kept, also
    when the name is shortened. By default only ASCII letters, digits and `._ ()+-` survive
    (names on ComfyUI's disk); `keep_unicode` keeps readable letters (object-store keys)."""
    name = name.replace("\\", "/").split("/")[-1]
    if keep_unicode:
        name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    else:
        name = _UNSAFE.sub("_", unicodedata.normalize("NFKC", name))
    name = name.strip(" .")
    if len(name) > max_chars:
        suffix = PurePosixPath(name).suffix
        suffix = suffix if len(suffix) <= _MAX_SUFFIX else ""
        name = name[: max_chars - len(suffix)].rstrip(" .") + suffix
    return name or fallback


def job_folder(job_id: str) -> str:
    # The random tail keeps a retried job (same id) clear of its earlier attempt's files.
    return f"job-{safe_filename(job_id).replace(' ', '_')[:64]}-{uuid.uuid4().hex[:8]}"


# --- isolation --------------------------------------------------------------------------------
def isolate(
    graph: dict[str, Any],
    folder: str,
    uploaded: dict[str, UploadedFile],
    *,
    output_nodes: Collection[str] = (),
    can_concat: bool = False,
) -> dict[str, Any]:
    """A copy of `graph` reading its inputs from, and saving its outputs to, `folder`.

    `output_nodes` are the classes ComfyUI treats as outputs; `can_concat` says whether it has
    StringConcatenate, which a linked `filename_prefix` needs to land in `folder`.
    """
    paths = {name: file.graph_path for name, file in uploaded.items()}
    isolated: dict[str, Any] = {}
    for node_id, node in graph.items():
        inputs = {key: paths.get(value, value) if isinstance(value, str) else value
                  for key, value in node.get("inputs", {}).items()}
        prefix = inputs.get(PREFIX_INPUT)
        if isinstance(prefix, str):
            inputs[PREFIX_INPUT] = f"{folder}/{prefix.lstrip('/')}"
        elif _is_link(prefix) and can_concat:
            concat_id = f"comfy_worker_prefix_{node_id}"
            isolated[concat_id] = {"class_type": CONCAT_CLASS, "inputs": {
                "string_a": f"{folder}/", "string_b": prefix, "delimiter": ""}}
            inputs[PREFIX_INPUT] = [concat_id, 0]
        if node.get("class_type") in output_nodes:
            inputs[JOB_INPUT] = folder
        isolated[node_id] = {**node, "inputs": inputs}
    return isolated


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


def public_subfolder(subfolder: str, folder: str) -> str:
    """The subfolder as the client's graph named it, without our per-job folder."""
    if subfolder == folder:
        return ""
    return subfolder.removeprefix(folder + "/")


# --- ComfyUI's folders on this machine --------------------------------------------------------
@dataclass(frozen=True)
class ComfyFolders:
    input: Path
    output: Path
    temp: Path

    def root(self, folder_type: str) -> Path | None:
        return {"input": self.input, "output": self.output, "temp": self.temp}.get(folder_type)

    def inside(self, folder_type: str, *parts: str) -> Path | None:
        """The path of `parts` under that folder, or None if it would leave it."""
        root = self.root(folder_type)
        if root is None or not root.is_dir():
            return None
        resolved_root = root.resolve()
        target = resolved_root.joinpath(*[p for p in parts if p]).resolve()
        if target == resolved_root or resolved_root not in target.parents:
            return None
        return target

    def existing(self, folder_type: str, subfolder: str, filename: str) -> Path | None:
        """The file's path, if it is there and inside its folder."""
        path = self.inside(folder_type, subfolder, filename)
        return path if path is not None and path.is_file() else None

    def write_input(self, data: bytes, filename: str, *, subfolder: str) -> UploadedFile | None:
        """Store an input where ComfyUI's upload would; None if the folder is not here."""
        path = self.inside("input", subfolder, filename)
        if path is None:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written under a temporary name and renamed, so ComfyUI never sees half a file.
        partial = path.with_name(f".{path.name}.part")
        partial.write_bytes(data)
        os.replace(partial, path)
        return UploadedFile(name=path.name, subfolder=subfolder, type="input")


# --- cleanup ----------------------------------------------------------------------------------
FileRef = tuple[str, str, str]  # (folder type, subfolder, filename), as ComfyUI reports files


class JobCleaner:
    def __init__(self, client: ComfyClient, folders: ComfyFolders | None) -> None:
        self.client = client
        self.folders = folders

    def clean(
        self, *, job_id: str, folder: str, prompt_id: str | None, written: Iterable[FileRef]
    ) -> None:
        """Remove the job's folders, the files its run reported and its history entry;
        failures are logged, never raised."""
        self._remove_tree("input", folder, job_id)
        self._remove_tree("output", folder, job_id)
        for folder_type, subfolder, filename in written:
            self._remove_file(folder_type, subfolder, filename, job_id)
        if prompt_id is None:
            return
        try:
            self.client.delete_history([prompt_id])
        except ComfyUIUnavailable as exc:
            log.warning("job %s: cleanup could not reach ComfyUI: %s", job_id, exc.message)

    def _remove_tree(self, folder_type: str, folder: str, job_id: str) -> None:
        target = self.folders.inside(folder_type, folder) if self.folders else None
        if target is not None and target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
            log.debug("job %s: removed %s", job_id, target)

    def _remove_file(self, folder_type: str, subfolder: str, filename: str, job_id: str) -> None:
        if self.folders is None:
            return
        target = self.folders.inside(folder_type, subfolder, filename)
        root = self.folders.root(folder_type)
        if target is None or root is None:
            return
        try:
            target.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("job %s: could not remove %s: %s", job_id, target, exc)
            return
        # Remove subfolders a prefix like "video/x" created, once they are empty.
        resolved_root = root.resolve()
        parent = target.parent
        while parent != resolved_root and resolved_root in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
