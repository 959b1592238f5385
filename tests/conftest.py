"""Shared fixtures: the ComfyUI double, and a worker attached to it in-process."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from comfy_runtime.settings import Settings
from tests.comfy_double import ComfyDouble
from tests.harness import WorkerHarness

pytest_plugins = ["tests.comfy_double.fixtures"]

# The one suite that reads the worker's settings from the ambient environment on purpose.
AMBIENT_SETTINGS = {"test_real_comfyui.py"}


@pytest.fixture(autouse=True)
def _settings_from_a_clean_environment(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every test builds its settings (and the environment of the workers it starts) without
    the worker's variables the person running the tests has exported: with COMFYUI_URL set
    for the real-ComfyUI suite, tests that mean to launch would otherwise attach."""
    if request.node.path.name in AMBIENT_SETTINGS:
        return
    for name in Settings.model_fields:
        for key in (name.upper(), name.lower()):
            if key in os.environ:
                monkeypatch.delenv(key)


@pytest.fixture
def harness(comfy_double: ComfyDouble) -> Iterator[WorkerHarness]:
    h = WorkerHarness(comfy_double)
    yield h
    h.worker.close()
