"""ComfyUI's input, output and temp folders, when they are on this machine.

When we launched ComfyUI (or its folders were named in the settings), a job's files can be
written and read directly instead of through HTTP: the same bytes, without a multipart
upload or a `/view` download of several megabytes on each job. Every path is resolved and
must stay inside its folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .client import UploadedFile


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
