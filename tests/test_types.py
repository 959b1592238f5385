"""The worker's code type-checks: its type hints are promises, mypy holds it to them."""

from __future__ import annotations

import subprocess
import sys

from comfy_runtime.settings import REPO_ROOT


def test_mypy_finds_no_errors() -> None:
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "comfy_runtime", "handler.py"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
