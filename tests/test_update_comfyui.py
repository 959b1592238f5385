"""docker/update_comfyui.sh: one command moves every pin a ComfyUI version decides.

The script runs on a copy of the files it edits, against a local git repository standing in for
ComfyUI (no network): `uv` is replaced by a stand-in that records its arguments and writes the
lock, so what is checked is the script's own work. A ComfyUI checkout named by COMFYUI_DIR and
COMFYUI_PYTHON (opt-in) is compared with the model folder data the worker ships.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from comfy_runtime.models.paths import FOLDERS

REPO = Path(__file__).resolve().parent.parent
DATA_FILE = REPO / "comfy_runtime" / "models" / "data" / "comfyui_model_folders.json"
# Read at import: the suite's conftest clears the worker's settings (COMFYUI_DIR is one) from
# the environment before each test.
CHECKOUT = os.environ.get("COMFYUI_DIR", "/nonexistent")
CHECKOUT_PYTHON = os.environ.get("COMFYUI_PYTHON", "")
NEW_REQUIREMENTS = "comfyui-frontend-package==9.9.9\ntorch\nnumpy>=1.25.0\n"

pytestmark = pytest.mark.skipif(
    shutil.which("git") is None or shutil.which("bash") is None, reason="git and bash are needed"
)


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          timeout=30).stdout.strip()


def _fake_comfyui(path: Path, version: str) -> str:
    """A git repository with ComfyUI's two files at one commit; returns the commit."""
    path.mkdir()
    _git("init", "-q", cwd=path)
    _git("config", "user.email", "test@example.invalid", cwd=path)
    _git("config", "user.name", "test", cwd=path)
    (path / "comfyui_version.py").write_text(f'__version__ = "{version}"\n', encoding="utf-8")
    (path / "requirements.txt").write_text(NEW_REQUIREMENTS, encoding="utf-8")
    _git("add", ".", cwd=path)
    _git("commit", "-qm", f"ComfyUI v{version}", cwd=path)
    return _git("rev-parse", "HEAD", cwd=path)


def _repo_copy(root: Path) -> Path:
    root.mkdir()
    (root / "docker").mkdir()
    for name in ("Dockerfile", "requirements.txt"):
        shutil.copy(REPO / name, root / name)
    for path in (REPO / "docker").iterdir():
        shutil.copy(path, root / "docker" / path.name)
    return root


def _run(repo: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    calls = tmp_path / "uv-calls.txt"
    fake_uv = tmp_path / "fake-uv"
    # Writes the -o file as uv would, so the script's later steps see a lock.
    fake_uv.write_text(
        f'#!/bin/bash\necho "$@" >> "{calls}"\n'
        'while [ $# -gt 0 ]; do [ "$1" = -o ] && echo "torch==2.14.1" > "$2"; shift; done\n',
        encoding="utf-8")
    fake_uv.chmod(0o755)
    return subprocess.run(["bash", str(repo / "docker" / "update_comfyui.sh"), *args],
                          check=False, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "UV": str(fake_uv)})


def test_update_comfyui_moves_every_pin(tmp_path: Path) -> None:
    commit = _fake_comfyui(tmp_path / "ComfyUI", "9.8.7")
    repo = _repo_copy(tmp_path / "repo")
    old_copies = sorted(p.name for p in (repo / "docker").glob("comfyui-v*-requirements.txt"))
    assert old_copies, "the repository has a requirements copy to replace"

    run = _run(repo, tmp_path, "9.8.7", commit, "--source", str(tmp_path / "ComfyUI"))

    assert run.returncode == 0, run.stderr
    copy = repo / "docker" / "comfyui-v9.8.7-requirements.txt"
    assert copy.read_text(encoding="utf-8") == NEW_REQUIREMENTS  # byte for byte
    assert sorted(p.name for p in (repo / "docker").glob("comfyui-v*-requirements.txt")) == [
        copy.name]
    dockerfile = (repo / "Dockerfile").read_text(encoding="utf-8")
    assert "ARG COMFYUI_VERSION=v9.8.7\n" in dockerfile
    assert f"ARG COMFYUI_COMMIT={commit}\n" in dockerfile
    assert f"cmp -s /comfyui/requirements.txt /opt/docker/{copy.name}" in dockerfile
    for old in old_copies:
        assert old not in dockerfile
    (compile_call,) = (tmp_path / "uv-calls.txt").read_text(encoding="utf-8").splitlines()
    words = compile_call.split()
    assert words[:2] == ["pip", "compile"]
    assert words[words.index("--python-version") + 1] == "3.12"
    assert {"requirements.txt", f"docker/{copy.name}", "docker/torch-requirements.txt"} <= set(
        words)
    assert (repo / "docker" / "requirements.lock").read_text(encoding="utf-8") == "torch==2.14.1\n"


@pytest.mark.parametrize("case", ["wrong-version", "short-commit", "unknown-commit"])
def test_update_comfyui_refuses_what_it_cannot_vouch_for(tmp_path: Path, case: str) -> None:
    commit = _fake_comfyui(tmp_path / "ComfyUI", "9.8.7")
    repo = _repo_copy(tmp_path / "repo")
    before = (repo / "Dockerfile").read_bytes()
    version, pinned = {"wrong-version": ("9.8.8", commit), "short-commit": ("9.8.7", commit[:12]),
                       "unknown-commit": ("9.8.7", "0" * 40)}[case]

    run = _run(repo, tmp_path, version, pinned, "--source", str(tmp_path / "ComfyUI"))

    assert run.returncode != 0
    assert "error" in run.stderr.lower() or "fatal" in run.stderr.lower(), run.stderr
    assert (repo / "Dockerfile").read_bytes() == before, "a refused update changed the Dockerfile"
    assert not (tmp_path / "uv-calls.txt").exists()


_FOLDERS_OF_COMFYUI = """
import json, os, folder_paths
print(json.dumps({name: [[os.path.basename(p) for p in paths], sorted(exts)]
                  for name, (paths, exts) in folder_paths.folder_names_and_paths.items()}))
"""


def test_model_folder_data_matches_a_real_checkout() -> None:
    """Opt-in: COMFYUI_DIR and COMFYUI_PYTHON name a checkout of the version the data is from."""
    comfy_dir, python = Path(CHECKOUT), CHECKOUT_PYTHON
    if not (comfy_dir / "folder_paths.py").is_file() or not shutil.which(python):
        pytest.skip("set COMFYUI_DIR and COMFYUI_PYTHON to a ComfyUI checkout and its python")
    data = json.loads(DATA_FILE.read_text(encoding="utf-8"))
    version = (comfy_dir / "comfyui_version.py").read_text(encoding="utf-8")
    if f'"{data["comfyui_version"]}"' not in version:
        pytest.skip(f"COMFYUI_DIR is not ComfyUI {data['comfyui_version']}")
    run = subprocess.run([python, "-c", _FOLDERS_OF_COMFYUI], cwd=comfy_dir, check=True,
                         capture_output=True, text=True, timeout=120)
    real = json.loads(run.stdout.strip().splitlines()[-1])
    real.pop("custom_nodes")
    kinds = {"weights": sorted(data["supported_pt_extensions"]), "yaml": [".yaml"],
             "folder": ["folder"], "no_extension": [""], "any": []}
    assert list(real) == list(FOLDERS), "the folder list differs from this ComfyUI's"
    for name, folder in FOLDERS.items():
        assert real[name] == [list(folder.dirs), kinds[folder.kind]], name
