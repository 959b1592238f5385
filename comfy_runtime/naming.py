"""Safe file names: what a client's name becomes before it touches a file system."""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePosixPath

_UNSAFE = re.compile(r"[^A-Za-z0-9._ ()+-]")
_MAX_NAME = 128
_MAX_SUFFIX = 16


def safe_filename(name: str) -> str:
    """A plain file name with no path, no control characters and nothing the shell or the
    file system treats specially; the extension is kept, also when the name is shortened."""
    name = unicodedata.normalize("NFKC", name).replace("\\", "/").split("/")[-1]
    name = _UNSAFE.sub("_", name).strip(" .")
    if len(name) > _MAX_NAME:
        suffix = PurePosixPath(name).suffix
        suffix = suffix if len(suffix) <= _MAX_SUFFIX else ""
        name = name[: _MAX_NAME - len(suffix)].rstrip(" .") + suffix
    return name or "input"
