"""What a ComfyUI the worker launches is told: its command line, its device, its previews,
its environment and its model folders.

Standard library and our settings only, as `supervision`: ComfyUI is launched before the
heavy modules are imported.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from ..settings import Settings

log = logging.getLogger(__name__)


def comfyui_command(
    *,
    python: str,
    port: int,
    log_level: str = "INFO",
    extra_model_paths: Path | None = None,
    extra_args: list[str] | None = None,
) -> list[str]:
    """ComfyUI's command line: headless, loopback only, no metadata, logs on stdout."""
    command = [
        python,
        "-u",
        "main.py",
        "--listen",
        "127.0.0.1",
        "--port",
        str(port),
        "--disable-auto-launch",
        "--disable-metadata",
        "--log-stdout",
        "--verbose",
        log_level.upper(),
    ]
    if extra_model_paths is not None:
        command += ["--extra-model-paths-config", str(extra_model_paths)]
    return command + list(extra_args or [])


# --- cold start -------------------------------------------------------------------------------
# ComfyUI's flags (comfy/cli_args.py) that choose a device, or a VRAM mode (the group --cpu
# belongs to: argparse refuses two of them together). COMFYUI_ARGS with any of these decides.
DEVICE_FLAGS = (
    "--cpu", "--directml", "--cuda-device", "--default-device", "--oneapi-device-selector",
    "--gpu-only", "--highvram", "--normalvram", "--lowvram", "--novram",
)

GpuProbe = Callable[[], "str | None"]


def visible_gpu() -> str | None:
    """What shows that ComfyUI has a GPU to use, or None: an NVIDIA device node or a working
    `nvidia-smi`, AMD's ROCm device (/dev/kfd), or macOS (Apple's MPS)."""
    for device in ("/dev/nvidia0", "/dev/kfd"):
        if os.path.exists(device):
            return device
    if sys.platform == "darwin":
        return "macOS (MPS)"
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        try:
            listed = subprocess.run([smi, "-L"], capture_output=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if listed.returncode == 0 and listed.stdout.strip():
            return "nvidia-smi"
    return None


def device_args(extra_args: list[str], probe: GpuProbe = visible_gpu) -> list[str]:
    """`extra_args` plus `--cpu` when they choose no device and `probe` finds no GPU: without
    it ComfyUI exits at start with "Found no NVIDIA driver" on a machine without one."""
    chosen = [a for a in extra_args if a.split("=", 1)[0] in DEVICE_FLAGS]
    if chosen:
        return list(extra_args)
    found = probe()
    if found is not None:
        return list(extra_args)
    log.warning(
        "no GPU visible (no /dev/nvidia0 or /dev/kfd, no working nvidia-smi) and COMFYUI_ARGS "
        "chooses no device: launching ComfyUI with --cpu (slow; set COMFYUI_ARGS to choose, "
        "e.g. --cuda-device 0)"
    )
    return [*extra_args, "--cpu"]


def launch_command(settings: Settings, gpu_probe: GpuProbe = visible_gpu) -> list[str]:
    """The command `launch_comfyui` runs for `settings`."""
    return comfyui_command(
        python=settings.comfyui_python,
        port=settings.comfyui_port,
        log_level=settings.comfy_log_level,
        extra_model_paths=_model_paths(settings),
        extra_args=[
            *preview_args(settings.comfyui_extra_args, settings.preview_method,
                          settings.preview_max_size),
            *device_args(settings.comfyui_extra_args, gpu_probe),
        ],
    )


def preview_args(extra_args: list[str], method: str, max_size: int) -> list[str]:
    """ComfyUI's preview flags from PREVIEW_METHOD and PREVIEW_MAX_SIZE, each unless
    COMFYUI_ARGS (`extra_args`) gives it already."""
    given = {a.split("=", 1)[0] for a in extra_args}
    added = [] if "--preview-method" in given else ["--preview-method", method]
    if "--preview-size" not in given:
        added += ["--preview-size", str(max_size)]
    return added


def launch_env(command: list[str], environ: Mapping[str, str], jobs_in_flight: int
               ) -> dict[str, str]:
    """The environment ComfyUI runs in: ours, and on the CPU with more than one job in flight,
    OpenMP's idle threads asleep.

    torch's OpenMP threads otherwise spin between parallel regions, on every core, taking
    from the worker the CPU its other job in flight needs, and straggling when it takes them
    back. On 2 cores, going from 1 to 2 jobs in flight, ComfyUI's execution of a small graph
    grew 44 -> 54 ms a job with them spinning and stayed at 42 -> 39 with them asleep
    (bench/concurrency.py). Sampling pays for it: txt2img ran 4% (64x64) to 9% (128x128)
    slower with sleeping threads (bench/omp_policy.py). One job at a time gains nothing, so
    there libgomp's default stays; more than one in flight is chosen for graphs whose own
    work overlaps. A value the user set is kept either way.
    """
    env = dict(environ)
    if "--cpu" in command and jobs_in_flight > 1 and "OMP_WAIT_POLICY" not in env:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
        log.info("ComfyUI runs on the CPU with up to %d jobs in flight: OMP_WAIT_POLICY=PASSIVE, "
                 "so that torch's idle threads sleep instead of spinning on the cores the "
                 "worker uses", jobs_in_flight)
    return env


def model_paths_file() -> Path:
    """Where this process writes ComfyUI's extra model paths: per process, as two workers on
    one machine may have different caches."""
    return Path(tempfile.gettempdir()) / f"comfy-worker-model-paths-{os.getpid()}.yaml"


def _model_paths(settings: Settings) -> Path:
    """ComfyUI's extra model folders: the network volume's, and the model cache's."""
    from ..models.paths import write_model_paths

    dest = model_paths_file()
    found = write_model_paths(settings.network_volume_dir, settings.model_cache_root, dest)
    summary = ", ".join(f"{folder}: {len(files)}" for folder, files in found.items() if files)
    if found:
        log.info("network volume %s: models found (%s)", settings.network_volume_dir,
                 summary or "none")
    log.info("model cache at %s", settings.model_cache_root)
    return dest
