"""Write `.runpod/hub.json`, RunPod Hub's manifest, from the worker's own sources.

    python .runpod/generate.py           # rewrite hub.json
    python .runpod/generate.py --check   # exit 1 when hub.json is not what would be written

Where each part comes from, so the listing cannot drift from the worker:
- `config.env`: one entry per user-facing field of `comfy_runtime.settings.Settings` (its
  name, description, default and numeric bounds); the few internal fields are listed in
  `INTERNAL` with the reason they are not offered on the Hub.
- `config.allowedCudaVersions`: the CUDA releases RunPod offers that are not older than the
  Dockerfile's `BASE_IMAGE` (the image refuses to start on an older driver).
- everything else (title, GPU pools, disk): `LISTING` below.

The manifest format is RunPod's "hub.json reference" (docs.runpod.io/hub/publishing-guide).
`tests/test_runpod_hub.py` runs `--check`, and checks the file against `Settings` on its own too.
"""

from __future__ import annotations

import json
import re
import sys
from enum import Enum
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HUB_JSON = REPO / ".runpod" / "hub.json"
DOCKERFILE = REPO / "Dockerfile"

if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from comfy_runtime.settings import Settings

# Settings a person deploying the published image has no reason to change, or must not.
INTERNAL: dict[str, str] = {
    "comfyui_url": "attaches to a ComfyUI elsewhere: for tests and benchmarks; the image runs "
    "its own",
    "comfyui_dir": "set by the image (ENV COMFYUI_DIR); another value finds no ComfyUI",
    "comfyui_python": "set by the image (ENV COMFYUI_PYTHON) to the venv holding torch",
    "comfyui_port": "ComfyUI listens on loopback inside the container; nothing outside uses it",
    "comfyui_input_dir": "ComfyUI's own folder under COMFYUI_DIR; tests point it elsewhere",
    "comfyui_output_dir": "ComfyUI's own folder under COMFYUI_DIR; tests point it elsewhere",
    "comfyui_temp_dir": "ComfyUI's own folder under COMFYUI_DIR; tests point it elsewhere",
    "comfyui_local_files": "always true in the image (ComfyUI runs beside the worker); matters "
    "only with COMFYUI_URL",
    "network_volume_dir": "RunPod always mounts a network volume at /runpod-volume; for local "
    "runs",
    "workflows_dir": "where the image copies the bundled workflows",
    "allow_private_urls": "local testing only: on an endpoint it would let job inputs reach "
    "private networks",
}

# Shown by default; every other user-facing setting is under the Hub's "advanced" fold.
PROMINENT: frozenset[str] = frozenset(
    {
        "comfy_org_api_key",
        "bucket_endpoint_url",
        "bucket_access_key_id",
        "bucket_secret_access_key",
        "job_timeout_s",
    }
)

# The Hub shows `name` as the field's label; the description comes from Settings.
LABELS: dict[str, str] = {
    "comfyui_args": "ComfyUI extra flags",
    "comfyui_boot_timeout_s": "ComfyUI start timeout (s)",
    "comfyui_http_timeout_s": "ComfyUI request timeout (s)",
    "comfy_log_level": "ComfyUI log level",
    "worker_log_level": "Worker log level",
    "job_timeout_s": "Job timeout (s)",
    "stop_grace_s": "Stop grace for an interrupted prompt (s)",
    "warmup_workflow": "Warmup workflow",
    "warmup_required": "Fail on warmup error",
    "comfy_org_api_key": "Comfy.org API key",
    "refresh_worker": "Refresh worker after each job",
    "max_concurrency": "Jobs at once per worker",
    "max_input_bytes": "Largest input (bytes)",
    "max_inputs": "Most input files per job",
    "max_graph_nodes": "Most nodes per graph",
    "max_workflow_file_bytes": "Largest workflow file (bytes)",
    "max_pixels": "Largest input image (pixels)",
    "extra_input_extensions": "More accepted input file types",
    "max_response_bytes": "Largest inline result (bytes)",
    "input_fetch_timeout_s": "URL input download timeout (s)",
    "bucket_endpoint_url": "Object store endpoint URL",
    "bucket_access_key_id": "Object store access key id",
    "bucket_secret_access_key": "Object store secret key",
    "bucket_name": "Object store bucket",
    "bucket_prefix": "Object store key prefix",
    "bucket_region": "Object store region",
    "bucket_url_expiry_s": "Output URL lifetime (s)",
    # models on demand (issue 13)
    "model_cache_dir": "Model cache folder",
    "model_cache_max_bytes": "Model cache size (bytes)",
    "max_model_bytes": "Largest model download (bytes)",
    "max_models_per_job": "Most models by URL per job",
    "model_fetch_timeout_s": "Model download stall timeout (s)",
    "hf_token": "Hugging Face token",
    "civitai_token": "Civitai token",
    # previews and streaming (issue 21)
    "preview_method": "Sampler preview method",
    "preview_max_size": "Largest preview (pixels)",
    "stream_results": "Stream results (/stream)",
}

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
OPTIONS: dict[str, tuple[str, ...]] = {
    "comfy_log_level": LOG_LEVELS,
    "worker_log_level": LOG_LEVELS,
    "preview_method": ("auto", "latent2rgb", "taesd", "none"),
}

# CUDA versions RunPod lets an endpoint allow (newest last); the image's minimum cuts the list.
RUNPOD_CUDA_VERSIONS = ("12.0", "12.1", "12.2", "12.3", "12.4", "12.5", "12.6", "12.7", "12.8",
                        "12.9", "13.0")

LISTING: dict[str, Any] = {
    "title": "comfy-worker: ComfyUI workflows",
    "description": "Run any ComfyUI API workflow, or a bundled txt2img / img2img / upscale "
    "workflow by name, with inputs as base64 or URLs and outputs as base64 or S3 URLs. "
    "Compatible with worker-comfyui 5.x clients. Ships with Stable Diffusion 1.5.",
    "type": "serverless",
    "category": "image",
    "config": {
        "runsOn": "GPU",
        # Inputs, outputs and ComfyUI's temp files of running jobs live on this disk.
        "containerDiskInGb": 20,
        "gpuCount": 1,
        # 16 GB and 24 GB pools: the default image's SD 1.5 needs about 4 GB of VRAM, so the
        # cheapest pools suffice; larger models come on a network volume with a larger GPU.
        "gpuIds": "AMPERE_16,AMPERE_24,ADA_24",
    },
}


def image_cuda_version(dockerfile: Path = DOCKERFILE) -> str:
    """`12.8` from the Dockerfile's `ARG BASE_IMAGE=nvidia/cuda:12.8.1-...`."""
    match = re.search(r"^ARG BASE_IMAGE=nvidia/cuda:(\d+)\.(\d+)", dockerfile.read_text(), re.MULTILINE)
    if match is None:
        raise ValueError(f"{dockerfile}: no `ARG BASE_IMAGE=nvidia/cuda:X.Y...` line")
    return f"{match.group(1)}.{match.group(2)}"


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def allowed_cuda_versions(minimum: str) -> list[str]:
    # Newest first, as RunPod's own manifests list them.
    allowed = [v for v in RUNPOD_CUDA_VERSIONS if _version_key(v) >= _version_key(minimum)]
    return sorted(allowed, key=_version_key, reverse=True)


def user_facing_fields() -> dict[str, FieldInfo]:
    return {name: f for name, f in Settings.model_fields.items() if name not in INTERNAL}


def hub_default(value: Any) -> Any:
    """A Settings default as the Hub shows it: unset is an empty field, whole floats are ints."""
    if value is None:
        return ""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int | float):
        return value
    if isinstance(value, Enum):
        return value.value
    return str(value)


def _annotation_kind(field: FieldInfo) -> str:
    args = getattr(field.annotation, "__args__", None) or (field.annotation,)
    kinds = {a for a in args if a is not type(None)}
    if kinds <= {bool}:
        return "boolean"
    if kinds and kinds <= {int, float}:
        return "number"
    return "string"


def _bounds(field: FieldInfo, kind_is_int: bool) -> dict[str, Any]:
    bounds: dict[str, Any] = {}
    for meta in field.metadata:
        if getattr(meta, "ge", None) is not None:
            bounds["min"] = meta.ge
        if getattr(meta, "gt", None) is not None:
            # The Hub has no exclusive bound: the next whole number is the smallest it offers.
            bounds["min"] = meta.gt + 1 if kind_is_int else int(meta.gt) + 1
        if getattr(meta, "le", None) is not None:
            bounds["max"] = meta.le
        if getattr(meta, "lt", None) is not None:
            bounds["max"] = meta.lt - 1
    return bounds


def env_entry(name: str, field: FieldInfo) -> dict[str, Any]:
    if name not in LABELS:
        raise KeyError(
            f"Settings.{name} is user-facing but has no label: add it to LABELS in "
            f".runpod/generate.py, or to INTERNAL with the reason it is not offered"
        )
    kind = _annotation_kind(field)
    entry: dict[str, Any] = {
        "name": LABELS[name],
        "type": kind,
        "description": field.description or "",
        "default": hub_default(field.get_default(call_default_factory=True)),
        "advanced": name not in PROMINENT,
    }
    if kind == "boolean":
        # The worker reads the variable with pydantic, which takes exactly these spellings.
        entry["trueValue"] = "true"
        entry["falseValue"] = "false"
    elif kind == "number":
        args = getattr(field.annotation, "__args__", None) or (field.annotation,)
        entry.update(_bounds(field, kind_is_int=int in args and float not in args))
    if name in OPTIONS:
        entry["options"] = [{"label": value, "value": value} for value in OPTIONS[name]]
    return {"key": name.upper(), "input": entry}


def build_manifest() -> dict[str, Any]:
    manifest = json.loads(json.dumps(LISTING))
    config = manifest["config"]
    config["allowedCudaVersions"] = allowed_cuda_versions(image_cuda_version())
    config["env"] = [env_entry(name, field) for name, field in user_facing_fields().items()]
    return manifest


def render(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render(build_manifest())
    if "--check" in argv:
        if not HUB_JSON.exists() or HUB_JSON.read_text() != text:
            sys.stderr.write(
                f"{HUB_JSON.relative_to(REPO)} is out of date: run python .runpod/generate.py\n"
            )
            return 1
        return 0
    HUB_JSON.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
