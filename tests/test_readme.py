"""The README says what is true: its settings table is the settings class, its error table
the codes a client can get."""

from __future__ import annotations

import re

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


def _error_table_codes() -> set[str]:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("### Errors", 1)[1].split("\n### ", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE))


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    return found.union(*(_subclasses(sub) for sub in found)) if found else found


def test_the_error_table_lists_exactly_the_codes_a_client_can_get() -> None:
    # Importing the modules that define errors registers their classes.
    import comfy_runtime.models.fetch  # noqa: F401
    from comfy_runtime.errors import JobCancelled, JobError

    codes = {cls.code for cls in _subclasses(JobError)}
    # The SDK posts no result for a cancelled job: that code can never reach a client.
    assert _error_table_codes() == codes - {JobCancelled.code}
