"""What a launched ComfyUI is told: its device (--cpu where no GPU is visible) and its preview
flags (comfy_runtime/comfyui/launch.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from comfy_runtime.comfyui import launch
from comfy_runtime.comfyui.launch import launch_command
from comfy_runtime.settings import Settings
from tests.e2e.worker_process import DOUBLE_DIR, free_port


# --- the device: --cpu where no GPU is visible (issue 14) -------------------------------------
def _settings_with_args(tmp_path: Path, args: str) -> Settings:
    return Settings(comfyui_dir=DOUBLE_DIR, comfyui_port=free_port(), comfyui_args=args,
                    network_volume_dir=tmp_path / "no-volume")


@pytest.mark.parametrize("args", ["", "--disable-smart-memory", "--preview-method auto"])
def test_no_gpu_and_no_device_chosen_launches_on_the_cpu(
    tmp_path: Path, args: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="comfy_runtime.comfyui.launch"):
        command = launch_command(_settings_with_args(tmp_path, args), gpu_probe=lambda: None)
    assert command.count("--cpu") == 1
    assert command[-1] == "--cpu"
    assert "no GPU visible" in caplog.text and "--cpu" in caplog.text


@pytest.mark.parametrize("args", [
    "--cpu", "--directml", "--directml 1", "--cuda-device 0", "--cuda-device=1",
    "--default-device 0", "--oneapi-device-selector level_zero:0", "--gpu-only",
    "--highvram", "--lowvram", "--novram", "--normalvram",
])
def test_a_device_chosen_in_comfyui_args_is_kept(tmp_path: Path, args: str) -> None:
    command = launch_command(_settings_with_args(tmp_path, args), gpu_probe=lambda: None)
    assert command.count("--cpu") == args.split().count("--cpu")
    assert command[-len(args.split()):] == args.split()


def test_a_visible_gpu_launches_without_cpu(tmp_path: Path) -> None:
    command = launch_command(_settings_with_args(tmp_path, ""), gpu_probe=lambda: "/dev/nvidia0")
    assert "--cpu" not in command


def test_the_default_probe_sees_no_gpu_without_device_nodes_or_nvidia_smi(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(launch.os.path, "exists", lambda path: False)
    monkeypatch.setattr(launch.sys, "platform", "linux")
    monkeypatch.setattr(launch.shutil, "which", lambda name: None)
    assert launch.visible_gpu() is None
    monkeypatch.setattr(launch.os.path, "exists", lambda path: path == "/dev/nvidia0")
    assert launch.visible_gpu() == "/dev/nvidia0"


def test_a_launched_comfyui_draws_previews_as_the_settings_say(tmp_path: Path) -> None:
    command = launch_command(_settings_with_args(tmp_path, "--cpu"), gpu_probe=lambda: None)
    assert command[command.index("--preview-method") + 1] == "auto"
    assert command[command.index("--preview-size") + 1] == "256"
    chosen = _settings_with_args(tmp_path, "--cpu --preview-method=taesd")
    command = launch_command(chosen, gpu_probe=lambda: None)
    assert command.count("--preview-method") == 0 and "--preview-method=taesd" in command
    assert command[command.index("--preview-size") + 1] == "256"
