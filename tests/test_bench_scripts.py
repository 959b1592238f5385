"""The benchmarks stay findable: each script's docstring opens with what it prints, each is
listed in docs/development.md, and a script never imports another script (what two share
lives in an underscore module)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from comfy_runtime.settings import REPO_ROOT

BENCH = REPO_ROOT / "bench"
SCRIPTS = sorted(BENCH.glob("*.py"))


def _imported_modules(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_each_bench_docstring_opens_with_what_it_prints(script: Path) -> None:
    # Not cleaned: cleaning drops leading blank lines, and the opening line is what counts.
    docstring = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8")), clean=False)
    first = docstring.splitlines()[0].strip() if docstring else ""
    assert first, f"{script.name}: its docstring's first line says what figure it prints"


def test_no_bench_script_imports_another() -> None:
    scripts = {path.stem for path in SCRIPTS if not path.stem.startswith("_")}
    offenders = {
        path.name: sorted(_imported_modules(ast.parse(path.read_text(encoding="utf-8"))) & scripts)
        for path in SCRIPTS
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_development_page_lists_every_bench_file() -> None:
    page = (REPO_ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `bench/([\w.]+\.py)` \|", page, flags=re.MULTILINE))
    assert listed == {path.name for path in SCRIPTS}
