"""Where ComfyUI puts and finds files: annotated names, /view and /upload rules, save counters."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Dirs:
    input: Path
    output: Path
    temp: Path

    def by_type(self, kind: str) -> Path | None:
        return {"input": self.input, "output": self.output, "temp": self.temp}.get(kind)


_ANNOTATIONS = {" [input]": "input", " [output]": "output", " [temp]": "temp",
                "[input]": "input", "[output]": "output", "[temp]": "temp"}


def split_annotation(name: str) -> tuple[str, str | None]:
    """"a.png [output]" -> ("a.png", "output"); names without an annotation keep None."""
    for suffix, kind in _ANNOTATIONS.items():
        if name.endswith(suffix):
            return name[: -len(suffix)], kind
    return name, None


def resolve_annotated(dirs: Dirs, name: str, default: str = "input") -> Path:
    """The file a node input such as LoadImage's `image` refers to."""
    bare, kind = split_annotation(name)
    base = dirs.by_type(kind or default)
    assert base is not None
    return base / bare


def view_path(dirs: Dirs, query: dict[str, str]) -> tuple[int, Path | None]:
    """Resolve a /view query to (status, file). ComfyUI's answers: 404 without a filename or
    when the file is missing, 400 for '..' or an absolute name or an unknown type, 403 for a
    subfolder leaving the directory."""
    if "filename" not in query:
        return 404, None
    name, kind = split_annotation(query["filename"])
    if not name:
        return 400, None
    if name.startswith("/") or ".." in name:
        return 400, None
    base = dirs.by_type(kind or query.get("type", "output"))
    if base is None:
        return 400, None
    base = base.resolve()
    folder = base
    if "subfolder" in query:
        folder = Path(os.path.abspath(base / query["subfolder"]))
        if os.path.commonpath((folder, base)) != str(base):
            return 403, None
    candidate = folder / os.path.basename(name)
    if not candidate.is_file():
        return 404, None
    return 200, candidate


def upload_target(base: Path, subfolder: str, filename: str, data: bytes,
                  overwrite: bool) -> tuple[Path | None, str, bool]:
    """Pick the file an upload lands in: (path or None when refused, final name, duplicate).

    Without overwrite a clashing name becomes "name (1).ext", "name (2).ext"...; a clash with
    identical bytes keeps that existing name and writes nothing (ComfyUI's duplicate check).
    """
    base = base.resolve()
    folder = Path(os.path.abspath(base / os.path.normpath(subfolder)))
    target = Path(os.path.abspath(folder / filename))
    if os.path.commonpath((base, target)) != str(base):
        return None, filename, False
    if overwrite:
        return target, filename, False
    stem, ext = os.path.splitext(filename)
    digest = hashlib.sha256(data).digest()
    attempt = 1
    while target.exists():
        if hashlib.sha256(target.read_bytes()).digest() == digest:
            return target, filename, True
        filename = f"{stem} ({attempt}){ext}"
        target = folder / filename
        attempt += 1
    return target, filename, False


@dataclass
class SaveSlot:
    """Where a save node writes: the folder, the bare name, the next counter, the subfolder."""

    folder: Path
    name: str
    counter: int
    subfolder: str

    def file_name(self, ext: str, batch_number: int = 0) -> str:
        name = self.name.replace("%batch_num%", str(batch_number))
        return f"{name}_{self.counter:05}_.{ext}"


def save_slot(base: Path, prefix: str) -> SaveSlot:
    """ComfyUI's naming: a '/' in the prefix makes a subfolder, the counter continues after the
    highest `{name}_NNNNN_` already in that folder."""
    normalised = os.path.normpath(prefix)
    subfolder = os.path.dirname(normalised)
    name = os.path.basename(normalised)
    base = base.resolve()
    folder = Path(os.path.abspath(base / subfolder))
    if os.path.commonpath((base, folder)) != str(base):
        raise ValueError(
            "**** ERROR: Saving image outside the output folder is not allowed."
            f"\n full_output_folder: {folder}\n         output_dir: {base}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    highest = 0
    lead = f"{name}_"
    for existing in os.listdir(folder):
        if not os.path.normcase(existing).startswith(os.path.normcase(lead)):
            continue
        digits = existing[len(lead):].split("_")[0]
        if digits.isdigit() and existing[len(lead) + len(digits):].startswith("_"):
            highest = max(highest, int(digits))
    return SaveSlot(folder=folder, name=name, counter=highest + 1, subfolder=subfolder)
