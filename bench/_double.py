"""No figure of its own: the ComfyUI double in its own process, and helpers the benchmarks share.

`double()` starts the ComfyUI double as its own process (so its CPU time is not the worker's)
with explicit input/output/temp folders and optional fault switches (COMFY_DOUBLE_FAULTS),
and points the worker's settings at it through the environment. Import this module before
`handler`: the worker reads its settings when the first job arrives.

COMFY_DOUBLE_REV=<git revision> runs the double as committed at that revision (extracted with
`git archive` into a temporary folder) instead of the working tree's, for figures that must
not depend on uncommitted edits.
"""

from __future__ import annotations

import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@dataclass(frozen=True)
class Double:
    url: str
    root: Path
    input_dir: Path
    output_dir: Path
    temp_dir: Path
    pid: int

    def history_size(self) -> int:
        """Entries in the double's GET /history."""
        with urllib.request.urlopen(self.url + "/history", timeout=10) as response:
            return len(json.loads(response.read()))

    def files(self) -> dict[str, list[str]]:
        """Every file and folder under input/output/temp, relative to each folder."""
        found: dict[str, list[str]] = {}
        for name, folder in (("input", self.input_dir), ("output", self.output_dir),
                             ("temp", self.temp_dir)):
            found[name] = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
        return found


def _double_main() -> Path:
    """The double's main.py: the working tree's, or COMFY_DOUBLE_REV's."""
    revision = os.environ.get("COMFY_DOUBLE_REV")
    if not revision:
        return REPO / "tests/comfy_double/main.py"
    target = Path(tempfile.mkdtemp(prefix="bench-double-src-"))
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", revision, "tests/__init__.py", "tests/comfy_double",
         "tests/protocol"],
        check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "tests/comfy_double/main.py"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def double(
    faults: dict[str, Any] | None = None,
    *,
    tell_worker: bool = True,
    python: str = sys.executable,
) -> Iterator[Double]:
    """The double in its own process, run by `python` (which needs aiohttp and pillow); with
    `tell_worker`, COMFYUI_URL and the three COMFYUI_*_DIR variables are set so the worker
    reads and cleans those folders itself."""
    port = _free_port()
    root = Path(tempfile.mkdtemp(prefix="bench-double-"))
    dirs = {name: root / name for name in ("input", "output", "temp")}
    for folder in dirs.values():
        folder.mkdir()
    env = dict(os.environ)
    env["COMFY_DOUBLE_FAULTS"] = json.dumps(faults or {})
    process = subprocess.Popen(
        [python, str(_double_main()), "--port", str(port),
         "--disable-metadata", "--base-directory", str(root),
         "--input-directory", str(dirs["input"]), "--output-directory", str(dirs["output"]),
         "--temp-directory", str(dirs["temp"])],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(url + "/system_stats", timeout=1)
                break
            except OSError:
                if process.poll() is not None:
                    raise SystemExit(f"the double exited with {process.returncode}")
                time.sleep(0.05)
        if tell_worker:
            os.environ["COMFYUI_URL"] = url
            os.environ["COMFYUI_INPUT_DIR"] = str(dirs["input"])
            os.environ["COMFYUI_OUTPUT_DIR"] = str(dirs["output"])
            os.environ["COMFYUI_TEMP_DIR"] = str(dirs["temp"])
        yield Double(url, root, dirs["input"], dirs["output"], dirs["temp"], process.pid)
    finally:
        process.terminate()
        process.wait(timeout=10)


def noise_png(width: int, height: int | None = None, *, seed: int | None = None) -> bytes:
    """An RGB PNG of random pixels: it does not compress, so its size is about 3 bytes a pixel."""
    import random

    from PIL import Image

    height = height or width
    pixels = (random.Random(seed).randbytes(width * height * 3) if seed is not None
              else os.urandom(width * height * 3))
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def rss_bytes() -> int:
    """This process's resident set size (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time a process has used so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
