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


def test_preview_cost_balances_which_goes_first_and_brackets_its_median_pair() -> None:
    """bench/preview_cost.py's pairs start as often with either method (one more when odd),
    in an order drawn from its seed, and its bootstrap interval holds the median pair ratio
    and narrows as pairs agree."""
    import random
    import sys

    sys.path.insert(0, str(BENCH))
    import preview_cost

    orders = preview_cost.pair_orders(9, random.Random(0))
    assert sorted(order[0] for order in orders).count("auto") in (4, 5)
    assert {tuple(order) for order in orders} == {("auto", "none"), ("none", "auto")}
    assert orders == preview_cost.pair_orders(9, random.Random(0))
    noise = random.Random(1)
    wide = [noise.gauss(1.0, 0.10) for _ in range(40)]
    narrow = [1.0 + (r - 1.0) / 10 for r in wide]
    mid, low, high = preview_cost.median_interval(wide, random.Random(0))
    assert low <= mid <= high and low < 1.0 < high
    n_mid, n_low, n_high = preview_cost.median_interval(narrow, random.Random(0))
    assert n_high - n_low < (high - low) / 5
    assert preview_cost.median_interval([1.02] * 5, random.Random(0)) == (1.02, 1.02, 1.02)
