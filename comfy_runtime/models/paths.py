"""Network volume support: let ComfyUI find models on a RunPod network volume.

RunPod mounts an endpoint's network volume at ``/runpod-volume``. The worker expects the
volume to hold ``models/<folder>/...`` with ComfyUI's own folder names (``checkpoints``,
``loras``, ``text_encoders`` or its old name ``clip``, ...), which is also the layout of
runpod-workers/worker-comfyui, so a volume prepared for that worker works unchanged. A volume
that was filled from a RunPod ComfyUI pod (ComfyUI installed at ``/workspace/ComfyUI``) has its
models at ``ComfyUI/models``; that layout is used when ``models/`` is absent.

ComfyUI learns about extra folders from an ``extra_model_paths.yaml`` given with
``--extra-model-paths-config``. The folder list it understands is data, kept in
``data/comfyui_model_folders.json`` together with the ComfyUI version it was read from, so a
ComfyUI upgrade is a data change that the tests check.

Typical use, in the process launcher, before ComfyUI starts::

    found = write_extra_model_paths(DEFAULT_VOLUME_ROOT, run_dir / "extra_model_paths.yaml")
    if found:
        args += ["--extra-model-paths-config", str(run_dir / "extra_model_paths.yaml")]
        log.info("network volume: %s", summarize(found))
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "COMFYUI_VERSION",
    "DEFAULT_VOLUME_ROOT",
    "FOLDERS",
    "MODEL_FOLDERS",
    "SUPPORTED_PT_EXTENSIONS",
    "YAML_SECTION",
    "ModelFolder",
    "find_models_dir",
    "render_extra_model_paths",
    "scan_models",
    "summarize",
    "write_extra_model_paths",
]

logger = logging.getLogger(__name__)

DEFAULT_VOLUME_ROOT = Path("/runpod-volume")
"""Where RunPod mounts a serverless endpoint's network volume."""

YAML_SECTION = "comfy_worker_volume"
"""Top-level key of the written yaml; ComfyUI ignores the name, it only groups the paths."""

_DATA_FILE = Path(__file__).resolve().parent / "data" / "comfyui_model_folders.json"

# A volume can hold tens of thousands of files (datasets, caches); the scan only feeds a log
# line, so it stops early rather than delay ComfyUI's start.
_MAX_FILES_PER_FOLDER = 5000

# Folder names are written into the yaml as plain scalars; anything outside this pattern
# would need quoting, so the data file is refused instead.
_SAFE_NAME = re.compile(r"^[a-z0-9_]+$")

_KINDS = frozenset({"weights", "yaml", "folder", "no_extension", "any"})


@dataclass(frozen=True)
class ModelFolder:
    """One model folder as ComfyUI's folder_paths defines it.

    ``name`` is the key nodes ask for (``text_encoders``); ``dirs`` are the directory names
    ComfyUI searches for it under a models directory (``text_encoders`` and ``clip``);
    ``kind`` says which entries ComfyUI lists from them (see the data file).
    """

    name: str
    dirs: tuple[str, ...]
    kind: str


def _load_data() -> tuple[str, frozenset[str], dict[str, ModelFolder]]:
    raw = json.loads(_DATA_FILE.read_text(encoding="utf-8"))
    folders: dict[str, ModelFolder] = {}
    for name, spec in raw["folders"].items():
        folder = ModelFolder(name=name, dirs=tuple(spec["dirs"]), kind=spec["kind"])
        for word in (folder.name, *folder.dirs):
            if not _SAFE_NAME.match(word):
                raise ValueError(f"{_DATA_FILE.name}: unsafe folder name {word!r}")
        if folder.kind not in _KINDS:
            raise ValueError(f"{_DATA_FILE.name}: unknown kind {folder.kind!r} for {name}")
        folders[name] = folder
    return raw["comfyui_version"], frozenset(raw["supported_pt_extensions"]), folders


COMFYUI_VERSION, SUPPORTED_PT_EXTENSIONS, FOLDERS = _load_data()

MODEL_FOLDERS: tuple[str, ...] = tuple(
    dict.fromkeys(word for folder in FOLDERS.values() for word in (folder.name, *folder.dirs))
)
"""Every model folder name ComfyUI knows, the legacy directory names (``clip``, ``unet``,
``t2i_adapter``) included, in the order of ComfyUI's folder_paths."""


def find_models_dir(volume_root: Path) -> Path | None:
    """Return the volume's models directory, or None when there is no usable volume."""
    for candidate in (volume_root / "models", volume_root / "ComfyUI" / "models"):
        if candidate.is_dir():
            return candidate
    return None


def render_extra_model_paths(models_dir: Path) -> str:
    """The extra_model_paths.yaml text that maps every folder to ``models_dir/<dir>``.

    Written by hand, not with a yaml library, because the runtime does not depend on one; the
    shape is the one ComfyUI's ``utils/extra_config.py`` reads: one top-level section with a
    ``base_path`` and ``folder: relative path`` lines, several paths as a ``|`` block, one a line.
    """
    lines = [
        "# Model folders on the network volume, written by comfy-worker at start",
        f"# (folder list of ComfyUI {COMFYUI_VERSION}). It is rewritten on every start.",
        f"{YAML_SECTION}:",
        # A JSON string is a valid YAML double-quoted scalar, so any path survives quoting.
        f"  base_path: {json.dumps(str(models_dir))}",
    ]
    for folder in FOLDERS.values():
        if len(folder.dirs) == 1:
            lines.append(f"  {folder.name}: {folder.dirs[0]}")
        else:
            lines.append(f"  {folder.name}: |")
            lines.extend(f"    {directory}" for directory in folder.dirs)
    return "\n".join(lines) + "\n"


def _walk_files(root: Path) -> list[str]:
    """Files under root, relative and '/'-separated, as ComfyUI lists them; bounded."""
    found: list[str] = []
    seen_dirs: set[tuple[int, int]] = set()
    # ComfyUI follows symlinks; a link cycle would make os.walk loop, so each real directory
    # is entered once.
    for dirpath, subdirs, filenames in os.walk(root, followlinks=True):
        try:
            stat = os.stat(dirpath)
        except OSError:
            subdirs[:] = []
            continue
        key = (stat.st_dev, stat.st_ino)
        if key in seen_dirs:
            subdirs[:] = []
            continue
        seen_dirs.add(key)
        subdirs[:] = sorted(d for d in subdirs if d != ".git")  # ComfyUI skips .git too
        rel_dir = Path(dirpath).relative_to(root)
        for filename in filenames:
            found.append((rel_dir / filename).as_posix())
            if len(found) >= _MAX_FILES_PER_FOLDER:
                logger.warning("stopped scanning %s after %d files", root, len(found))
                return found
    return found


def _listed(folder: ModelFolder, directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    if folder.kind == "folder":
        return [entry.name for entry in directory.iterdir() if entry.is_dir()]
    names = _walk_files(directory)
    if folder.kind == "weights":
        return [n for n in names if os.path.splitext(n)[1].lower() in SUPPORTED_PT_EXTENSIONS]
    if folder.kind == "yaml":
        return [n for n in names if os.path.splitext(n)[1].lower() == ".yaml"]
    if folder.kind == "any":
        return names
    return [n for n in names if os.path.splitext(n)[1] == ""]


def scan_models(models_dir: Path) -> dict[str, list[str]]:
    """Model entries ComfyUI would list per folder under models_dir, sorted, every folder a key.

    Names are relative to the directory they were found in (``sub/x.safetensors``), which is
    how ComfyUI names them in a workflow.
    """
    result: dict[str, list[str]] = {}
    for folder in FOLDERS.values():
        names: set[str] = set()
        for directory in folder.dirs:
            try:
                names.update(_listed(folder, models_dir / directory))
            except OSError as exc:  # a flaky network mount must not stop the worker's start
                logger.warning("cannot list %s: %s", models_dir / directory, exc)
        result[folder.name] = sorted(names)
    return result


def write_extra_model_paths(volume_root: Path, dest: Path) -> dict[str, list[str]]:
    """Point ComfyUI at the network volume's models, if there is a volume.

    When ``volume_root/models`` (or the pod layout ``volume_root/ComfyUI/models``) is a
    directory, write to ``dest`` an extra_model_paths.yaml that maps every folder in
    ``MODEL_FOLDERS`` to ``<models dir>/<folder>`` and return the model entries found there per
    folder (every folder is a key, empty lists included), for a start-time log line.

    When there is no such directory, return ``{}`` and write nothing: a truthy result is the
    signal to start ComfyUI with ``--extra-model-paths-config <dest>``. The process launcher
    (``comfy_runtime/supervision.py``) calls this once before it starts ComfyUI and passes that
    flag. Models in the image keep precedence over same-named files on the volume, since
    ComfyUI searches its own models directory first.

    The file is replaced atomically, so a ComfyUI started concurrently never reads half of it.
    """
    models_dir = find_models_dir(volume_root)
    if models_dir is None:
        logger.debug("no network volume models at %s", volume_root)
        return {}
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    partial.write_text(render_extra_model_paths(models_dir), encoding="utf-8")
    os.replace(partial, dest)
    logger.debug("wrote %s for %s", dest, models_dir)
    return scan_models(models_dir)


CACHE_SECTION = "comfy_worker_model_cache"


def render_cache_section(cache_root: Path) -> str:
    """The section that makes ComfyUI list the model cache (models downloaded by URL), one
    subfolder per model folder. The subfolders are created here: ComfyUI's validation of a
    loader fails when a folder it lists does not exist."""
    lines = [
        "# The model cache (models on demand), written by comfy-worker at start.",
        f"{CACHE_SECTION}:",
        f"  base_path: {json.dumps(str(cache_root))}",
    ]
    for folder in FOLDERS.values():
        if folder.kind in ("weights", "yaml"):
            (cache_root / folder.name).mkdir(parents=True, exist_ok=True)
            lines.append(f"  {folder.name}: {folder.name}")
    return "\n".join(lines) + "\n"


def write_model_paths(volume_root: Path, cache_root: Path, dest: Path) -> dict[str, list[str]]:
    """Write ComfyUI's extra_model_paths.yaml: the network volume's folders (when there is
    a volume) and the model cache's. Returns the volume's model entries per folder, as
    `write_extra_model_paths` does; the file is replaced atomically."""
    models_dir = find_models_dir(volume_root)
    text = render_extra_model_paths(models_dir) if models_dir is not None else ""
    text += render_cache_section(cache_root)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, dest)
    return scan_models(models_dir) if models_dir is not None else {}


def summarize(found: dict[str, list[str]]) -> str:
    """One log line: how many model entries per non-empty folder."""
    counts = {name: len(entries) for name, entries in found.items() if entries}
    if not counts:
        return "no model files"
    total = sum(counts.values())
    per_folder = ", ".join(f"{name} {count}" for name, count in counts.items())
    return f"{total} model files ({per_folder})"
