"""pytest plugin: `pytest_plugins = ["tests.comfy_double.fixtures"]` gives the `comfy_double`
fixture, a fresh started double per test in the test's tmp_path, speaking `comfy_version`
(0.3.64 unless a test parametrizes it: `@pytest.mark.parametrize("comfy_version", VERSIONS)`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .double import ComfyDouble
from .versions import DEFAULT


@pytest.fixture
def comfy_version() -> str:
    return DEFAULT.name


@pytest.fixture
def comfy_double(tmp_path: Path, comfy_version: str) -> Iterator[ComfyDouble]:
    double = ComfyDouble(tmp_path / "comfy", version=comfy_version)
    double.start()
    try:
        yield double
    finally:
        double.stop()
