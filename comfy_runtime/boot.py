"""Cold start: put ComfyUI's command line together and launch it (unless attaching).

Standard library plus our light modules only: this runs before the heavy imports.
"""

from __future__ import annotations

import atexit
import logging
import tempfile
from pathlib import Path

from .process import ComfyProcess, comfyui_command
from .settings import Settings

log = logging.getLogger(__name__)


def launch_comfyui(settings: Settings) -> ComfyProcess | None:
    """Start ComfyUI as our child; None when COMFYUI_URL names one that is already running."""
    if settings.comfyui_url:
        log.info("attaching to the ComfyUI at %s", settings.comfyui_url)
        return None
    command = comfyui_command(
        python=settings.comfyui_python,
        port=settings.comfyui_port,
        log_level=settings.comfy_log_level,
        extra_model_paths=_network_volume_models(settings.network_volume_dir),
        extra_args=settings.comfyui_extra_args,
    )
    process = ComfyProcess(command, cwd=settings.comfyui_dir, base_url=settings.comfyui_base_url)
    process.launch()
    atexit.register(process.stop)
    return process


def _network_volume_models(volume: Path) -> Path | None:
    from .model_paths import write_extra_model_paths

    dest = Path(tempfile.gettempdir()) / "comfy-worker-extra-model-paths.yaml"
    found = write_extra_model_paths(volume, dest)
    if not found:
        return None
    summary = ", ".join(f"{folder}: {len(files)}" for folder, files in found.items() if files)
    log.info("network volume %s: models found (%s)", volume, summary or "none")
    return dest
