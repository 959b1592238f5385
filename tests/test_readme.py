"""The README says what is true: its settings table is the settings class."""

from __future__ import annotations

from comfy_runtime.settings import REPO_ROOT, readme_with_table


def test_settings_table_is_current() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert readme == readme_with_table(readme), "run: python -m comfy_runtime.settings"


def test_the_two_setup_commands_are_the_ones_ci_runs() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "pip install -r requirements-dev.txt && python -m pytest" in readme
    assert "pip install --quiet -r requirements-dev.txt" in ci and "python -m pytest" in ci
    assert "docker build -t comfy-worker . && docker run --rm --gpus all comfy-worker" in readme
