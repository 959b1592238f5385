"""Shared fixtures: the ComfyUI double, and a worker attached to it in-process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.comfy_double import ComfyDouble
from tests.harness import WorkerHarness

pytest_plugins = ["tests.comfy_double.fixtures"]


@pytest.fixture
def harness(comfy_double: ComfyDouble) -> Iterator[WorkerHarness]:
    h = WorkerHarness(comfy_double)
    yield h
    h.worker.close()
