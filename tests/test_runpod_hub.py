"""The RunPod Hub listing (.runpod/) and the release version cannot drift from the worker.

- hub.json is what `.runpod/generate.py` writes from `Settings` and the Dockerfile, and, read
  on its own, offers every user-facing setting, no other, with its description, a default the
  worker reads back as its own default, and the manifest's format (RunPod's hub.json
  reference, docs.runpod.io/hub/publishing-guide).
- tests.json's jobs are valid job inputs that resolve to graphs, include test_input.json's
  model-free job and a txt2img on the image's default model, and run against the ComfyUI double.
- pyproject.toml, comfy_runtime/__init__.py and CHANGELOG.md name the same version.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from comfy_runtime import __version__
from comfy_runtime.contract import parse_job_input
from comfy_runtime.settings import Settings
from comfy_runtime.workflows import WorkflowRegistry
from tests.comfy_double import ComfyDouble
from tests.harness import WorkerHarness

REPO = Path(__file__).resolve().parent.parent
RUNPOD_DIR = REPO / ".runpod"
HUB = json.loads((RUNPOD_DIR / "hub.json").read_text())
TESTS = json.loads((RUNPOD_DIR / "tests.json").read_text())
HUB_ENV = {entry["key"]: entry for entry in HUB["config"]["env"]}

# From the publishing guide's tables.
CATEGORIES = {"audio", "embedding", "language", "video", "image"}
INPUT_TYPES = {"string", "number", "boolean", "huggingface"}
# Graph inputs that name a model file: a "model-free" job has none of them.
MODEL_INPUTS = {"ckpt_name", "unet_name", "vae_name", "clip_name", "clip_name1", "clip_name2",
                "lora_name", "control_net_name", "model_name", "upscale_model_name"}


def _load_generator() -> ModuleType:
    # `.runpod` is not an importable package name: load the script by path.
    spec = importlib.util.spec_from_file_location("hub_generate", RUNPOD_DIR / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _load_generator()


def _default_model_set() -> str:
    match = re.search(r"^ARG MODEL_SET=(\S+)", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    assert match, "Dockerfile has no ARG MODEL_SET default"
    return match.group(1)


def _image_models(model_set: str) -> dict[str, list[str]]:
    """Folder -> files the default image bakes in, from docker/models.tsv."""
    models: dict[str, list[str]] = {}
    lines = [
        line for line in (REPO / "docker" / "models.tsv").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    for row in csv.reader(lines, delimiter="\t"):
        if row[0] in model_set.split(","):
            models.setdefault(row[1], []).append(row[2])
    return models


# ----------------------------------------------------------------------------- hub.json
def test_hub_json_is_what_the_generator_writes() -> None:
    expected = GEN.render(GEN.build_manifest())
    assert (RUNPOD_DIR / "hub.json").read_text() == expected, (
        "hub.json is out of date: run `python .runpod/generate.py`"
    )


def test_hub_json_offers_exactly_the_user_facing_settings() -> None:
    fields = Settings.model_fields
    unknown = sorted(k for k in HUB_ENV if k.lower() not in fields)
    assert not unknown, f"hub.json lists settings Settings does not have: {unknown}"

    stale = sorted(set(GEN.INTERNAL) - set(fields))
    assert not stale, f"generate.py's INTERNAL names settings that no longer exist: {stale}"
    internal_listed = sorted(k for k in HUB_ENV if k.lower() in GEN.INTERNAL)
    assert not internal_listed, f"hub.json offers internal settings: {internal_listed}"

    # User-facing: every setting not in INTERNAL, each of which says why it is left out.
    missing = sorted(n.upper() for n in fields if n not in GEN.INTERNAL and n.upper() not in HUB_ENV)
    assert not missing, f"hub.json omits user-facing settings: {missing}"
    assert all(reason.strip() for reason in GEN.INTERNAL.values())


def test_hub_json_descriptions_types_and_bounds_follow_settings() -> None:
    for key, entry in HUB_ENV.items():
        field = Settings.model_fields[key.lower()]
        spec = entry["input"]
        assert spec["description"] == field.description, key
        assert spec["type"] in INPUT_TYPES, key
        assert spec["name"].strip() and isinstance(spec["advanced"], bool), key
        args = set(getattr(field.annotation, "__args__", None) or (field.annotation,))
        args.discard(type(None))
        if args == {bool}:
            assert spec["type"] == "boolean" and isinstance(spec["default"], bool), key
        elif args <= {int, float}:
            assert spec["type"] == "number" and isinstance(spec["default"], int | float), key
            if "min" in spec and "max" in spec:
                assert spec["min"] <= spec["default"] <= spec["max"], key
        else:
            assert spec["type"] == "string" and isinstance(spec["default"], str), key
        if "options" in spec:
            assert spec["default"] in [o["value"] for o in spec["options"]], key


def test_hub_defaults_read_back_as_the_worker_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the Hub sets in the environment, untouched, is what the worker would have used."""
    for key in list(os.environ):
        if key.lower() in Settings.model_fields:
            monkeypatch.delenv(key)
    defaults = Settings()
    for key, entry in HUB_ENV.items():
        value = entry["input"]["default"]
        as_env = str(value).lower() if isinstance(value, bool) else str(value)
        monkeypatch.setenv(key, as_env)
    from_hub = Settings()
    for key in HUB_ENV:
        name = key.lower()
        got, want = getattr(from_hub, name), getattr(defaults, name)
        if want is None:
            # An empty field stands for "unset": the worker must treat it as off.
            raw = got.get_secret_value() if hasattr(got, "get_secret_value") else got
            assert raw in ("", None), f"{key}: empty Hub default reads as {got!r}"
        else:
            assert got == want, f"{key}: the Hub's default reads as {got!r}, Settings has {want!r}"
    assert not from_hub.object_store_configured
    assert not from_hub.comfy_org_api_key


def test_hub_json_follows_the_manifest_format() -> None:
    for key in ("title", "description", "type", "category", "config"):
        assert HUB.get(key), f"hub.json lacks {key}"
    assert HUB["type"] == "serverless"
    assert HUB["category"] in CATEGORIES
    config = HUB["config"]
    assert config["runsOn"] == "GPU"
    assert isinstance(config["containerDiskInGb"], int) and config["containerDiskInGb"] >= 10
    assert isinstance(config["gpuCount"], int) and config["gpuCount"] >= 1
    assert isinstance(config["gpuIds"], str) and config["gpuIds"].strip()
    for entry in config["env"]:
        assert set(entry) == {"key", "input"}, entry
        assert {"name", "type", "description", "default"} <= set(entry["input"]), entry
    keys = [entry["key"] for entry in config["env"]]
    assert len(keys) == len(set(keys)), "a setting is listed twice"


def test_allowed_cuda_versions_match_the_image() -> None:
    image = GEN.image_cuda_version()
    assert image == "13.0"  # the Dockerfile's base; update this line with a deliberate change
    for versions in (HUB["config"]["allowedCudaVersions"], TESTS["config"]["allowedCudaVersions"]):
        assert image in versions
        too_old = [v for v in versions if GEN._version_key(v) < GEN._version_key(image)]
        assert not too_old, f"the image needs CUDA >= {image}; drivers {too_old} cannot run it"
    assert set(TESTS["config"]["allowedCudaVersions"]) <= set(HUB["config"]["allowedCudaVersions"])


# ---------------------------------------------------------------------------- tests.json
def _test_inputs() -> dict[str, dict[str, Any]]:
    return {test["name"]: test["input"] for test in TESTS["tests"]}


def _resolve(job_input: dict[str, Any], models: dict[str, list[str]]) -> dict[str, Any] | None:
    parsed = parse_job_input(job_input)
    if parsed.info:
        return None
    registry = WorkflowRegistry(REPO / "workflows")
    return registry.resolve(
        parsed.workflow, parsed.params,
        input_names=[f.name for f in parsed.images],
        models=lambda folder: models.get(folder, []),
    )


def test_tests_json_jobs_are_valid_job_inputs() -> None:
    models = _image_models(_default_model_set())
    assert models, "the default MODEL_SET bakes in no models"
    for test in TESTS["tests"]:
        assert set(test) <= {"name", "input", "timeout"}, test["name"]
        # Milliseconds, per the reference: a value in seconds would fail every publish.
        assert isinstance(test["timeout"], int) and 10_000 <= test["timeout"] <= 3_600_000
        graph = _resolve(test["input"], models)  # raises InvalidInput / MissingModel
        if graph is not None:
            assert graph and all("class_type" in node for node in graph.values()), test["name"]


def test_tests_json_covers_the_model_free_graph_and_the_default_model() -> None:
    inputs = _test_inputs()
    local = json.loads((REPO / "test_input.json").read_text())["input"]
    assert local in inputs.values(), "test_input.json's job should be one of the Hub's tests"

    model_free = [
        name for name, job in inputs.items()
        if isinstance(job.get("workflow"), dict) and not any(
            key in MODEL_INPUTS for node in job["workflow"].values() for key in node["inputs"]
        )
    ]
    assert model_free, "no model-free graph job"
    # Model-free means it resolves with no models at all.
    for name in model_free:
        _resolve(inputs[name], {})

    txt2img = [name for name, job in inputs.items() if job.get("workflow") == "txt2img"]
    assert txt2img, "no txt2img job on the default model"
    for name in txt2img:
        assert "checkpoint" not in inputs[name].get("params", {}), (
            "the txt2img test should use the image's default checkpoint, whatever it is"
        )


def test_tests_json_config() -> None:
    config = TESTS["config"]
    assert isinstance(config["gpuTypeId"], str) and config["gpuTypeId"].startswith("NVIDIA ")
    assert isinstance(config["gpuCount"], int) and config["gpuCount"] >= 1
    for entry in config.get("env", []):
        assert set(entry) == {"key", "value"} and isinstance(entry["value"], str), entry
        assert entry["key"].lower() in Settings.model_fields, entry["key"]


def test_tests_json_jobs_run_against_the_double(comfy_double: ComfyDouble) -> None:
    harness = WorkerHarness(comfy_double)
    try:
        for name, job_input in _test_inputs().items():
            result = harness.run(job_input, job_id=f"hub-{name}")
            assert "error" not in result, f"{name}: {result}"
            if job_input.get("info"):
                assert result["worker"]["version"] == __version__
                assert "txt2img" in json.dumps(result)
            else:
                assert result["images"], f"{name}: no images"
                assert result["images"][0]["type"] == "base64"
    finally:
        harness.worker.close()


# ------------------------------------------------------------------------------ release
def test_one_version_everywhere() -> None:
    # A regex, not tomllib: the project supports Python 3.10, which has no tomllib.
    project = (REPO / "pyproject.toml").read_text().split("[project]", 1)[1].split("\n[", 1)[0]
    match = re.search(r'^version\s*=\s*"([^"]+)"', project, re.MULTILINE)
    assert match and match.group(1) == __version__, "pyproject.toml and comfy_runtime/__init__.py disagree"
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(__version__)}\]", changelog, re.MULTILINE), (
        f"CHANGELOG.md has no section for {__version__}"
    )
    assert re.search(r"^## \[Unreleased\]", changelog, re.MULTILINE)
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)
