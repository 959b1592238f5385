"""The README says what is true and stays short: its error table is the codes a client can
get, its set-up commands are the ones CI runs; the settings table of docs/configuration.md is
the settings class."""

from __future__ import annotations

import re

from comfy_runtime.settings import CONFIGURATION_PAGE, REPO_ROOT, page_with_table

# The README is the page a newcomer reads to the end; the reference lives in docs/.
README_MAX_BYTES = 12_500


def test_settings_table_is_current() -> None:
    page = CONFIGURATION_PAGE.read_text()
    assert page == page_with_table(page), "run: python -m comfy_runtime.settings"


def test_the_readme_stays_short() -> None:
    size = len((REPO_ROOT / "README.md").read_bytes())
    assert size < README_MAX_BYTES, (
        f"README.md is {size} bytes: move the detail into a page under docs/ and link to it"
    )


def test_the_two_setup_commands_are_the_ones_ci_runs() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "pip install -r requirements-dev.txt && python -m pytest" in readme
    assert "pip install --quiet -r requirements-dev.txt" in ci and "python -m pytest" in ci
    assert "docker build -t comfy-worker . && docker run --rm --gpus all comfy-worker" in readme


def _error_table_codes() -> set[str]:
    readme = (REPO_ROOT / "README.md").read_text()
    section = re.split(r"\n#{1,3} ", readme.split("\n### Errors\n", 1)[1], maxsplit=1)[0]
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
