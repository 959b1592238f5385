"""pytest plugin: `pytest_plugins = ["tests.comfy_double.fixtures"]` gives the `comfy_double`
fixture, a fresh started double per test in the test's tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .double import ComfyDouble


@pytest.fixture
def comfy_double(tmp_path: Path) -> Iterator[ComfyDouble]:
    double = ComfyDouble(tmp_path / "comfy")
    double.start()
    try:
        yield double
    finally:
        double.stop()
