"""The info request, `{"input": {"info": true}}`: what this worker offers, read live.

Everything comes from the running ComfyUI (version, device, models, samplers) and from our
own settings and bundled workflows, so a client can build its requests from it. Settings
are listed by name; secrets never are, only whether they are set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from . import __version__
from .blocking import FanOut, serial
from .comfyui.client import ComfyClient
from .comfyui.wire import preview_method
from .errors import ComfyUIUnavailable
from .models.cache import CacheInfo
from .settings import Settings
from .workflows import WorkflowRegistry

log = logging.getLogger(__name__)

def worker_info(
    client: ComfyClient,
    settings: Settings,
    workflows: WorkflowRegistry,
    *,
    store_configured: bool,
    warmup_ms: float | None,
    describe_cache: Callable[[], CacheInfo] | None = None,
    fan_out: FanOut = serial,
) -> dict[str, Any]:
    return {
        "worker": {"name": "comfy-worker", "version": __version__},
        "comfyui": _comfyui(client),
        "workflows": {
            name: {
                "description": workflow.spec.description,
                "params_schema": workflow.json_schema(),
            }
            for name, workflow in workflows.workflows.items()
        },
        "models": _models(client, fan_out),
        **_sampling_options(client),
        "limits": {name: getattr(settings, name) for name in _LIMITS},
        "model_cache": describe_cache().model_dump(mode="json") if describe_cache else None,
        "output": {
            "formats": ["png", "jpeg", "webp"],
            "delivery": ["auto", "base64", "s3"] if store_configured else ["auto", "base64"],
            "object_store": store_configured,
            "url_expiry_s": settings.bucket_url_expiry_s if store_configured else None,
        },
        "comfy_org_api_key_configured": settings.comfy_org_api_key is not None,
        "warmup": {"workflow": settings.warmup_workflow, "ms": warmup_ms},
        "stream_results": settings.stream_results,
    }


_LIMITS = (
    "job_timeout_s", "max_input_bytes", "max_inputs", "max_graph_nodes", "max_pixels",
    "max_response_bytes", "max_concurrency", "max_model_bytes", "max_models_per_job",
    "max_workflow_file_bytes",
)


def _comfyui(client: ComfyClient) -> dict[str, Any]:
    stats = client.system_stats()
    system = stats.get("system", {}) if isinstance(stats, dict) else {}
    return {
        "version": system.get("comfyui_version"),
        # The editor the ComfyUI pins: editor-format workflows mean what that frontend makes
        # of them.
        "frontend_version": system.get("required_frontend_version"),
        "python_version": system.get("python_version"),
        "pytorch_version": system.get("pytorch_version"),
        "devices": [
            {k: d.get(k) for k in ("name", "type", "vram_total", "vram_free")}
            for d in stats.get("devices", [])
            if isinstance(d, dict)
        ],
        "preview_method": preview_method(stats),  # `none`: a job's `previews` get none
    }


def _models(client: ComfyClient, fan_out: FanOut) -> dict[str, list[str]]:
    try:
        folders = [str(f) for f in client.models_folders()]
    except ComfyUIUnavailable as exc:
        log.warning("info: ComfyUI would not list model folders: %s", exc.message)
        return {}
    listed = dict(zip(folders, fan_out(_safe_models(client), folders)))
    return {folder: files for folder, files in listed.items() if files}


def _safe_models(client: ComfyClient) -> Any:
    def list_folder(folder: str) -> list[str]:
        try:
            return client.models(folder)
        except ComfyUIUnavailable:
            return []

    return list_folder


def _sampling_options(client: ComfyClient) -> dict[str, list[str]]:
    try:
        spec = client.object_info("KSampler").get("KSampler", {})
        required = spec.get("input", {}).get("required", {})
        return {
            "samplers": list(required.get("sampler_name", [[]])[0]),
            "schedulers": list(required.get("scheduler", [[]])[0]),
        }
    except (ComfyUIUnavailable, AttributeError, IndexError, TypeError):
        return {"samplers": [], "schedulers": []}
