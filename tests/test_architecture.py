"""The package keeps the shape a newcomer can find their way in: layers that point one way,
no import cycle, modules and functions one person can hold in their head, and a map of the
package (in `comfy_runtime/__init__.py` and docs/development.md) that is the package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from comfy_runtime.settings import REPO_ROOT

PACKAGE = REPO_ROOT / "comfy_runtime"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50

# Lower layers never import higher ones. Within a layer, imports may go either way (but the
# cycle check below still holds).
LAYERS: list[set[str]] = [
    {"settings", "errors", "wire", "events", "blocking", "address_policy", "model_paths",
     "model_inputs"},
    {"graph_checks", "contract", "client", "event_hub", "run_record", "diagnosis", "progress",
     "job_files", "url_fetch", "bucket_location", "node_definitions", "model_fetch",
     "model_part", "model_store", "model_obtain", "model_cache"},
    {"prompt_run", "input_types", "inputs", "outputs", "delivery", "storage", "workflows",
     "info", "supervision", "workflow_source", "job_models"},
    {"job"},
    {"worker"},
]


def _modules() -> dict[str, ast.Module]:
    return {
        path.stem: ast.parse(path.read_text(), filename=str(path))
        for path in sorted(PACKAGE.glob("*.py"))
        if path.stem != "__init__"
    }


def _imports(tree: ast.Module, names: set[str]) -> set[str]:
    """The package's modules this module imports (at any depth: lazy imports count too)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 1 and module in names:
                found.add(module)
            elif node.level == 1 and not module:
                found.update(alias.name for alias in node.names if alias.name in names)
            elif module.startswith("comfy_runtime.") and module.split(".")[1] in names:
                found.add(module.split(".")[1])
    return found


def _layer(module: str) -> int:
    return next(index for index, layer in enumerate(LAYERS) if module in layer)


def test_every_module_has_a_layer() -> None:
    assert set(_modules()) == set().union(*LAYERS), "place new modules in LAYERS"


def test_no_module_imports_a_layer_above_it() -> None:
    modules = _modules()
    upward = [
        f"{name} (layer {_layer(name)}) imports {target} (layer {_layer(target)})"
        for name, tree in modules.items()
        for target in _imports(tree, set(modules))
        if _layer(target) > _layer(name)
    ]
    assert upward == []


def test_no_import_cycle() -> None:
    modules = _modules()
    graph = {name: _imports(tree, set(modules)) for name, tree in modules.items()}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in visiting:
            pytest.fail("import cycle: " + " -> ".join([*visiting[visiting.index(name):], name]))
        if name in done:
            return
        visiting.append(name)
        for target in sorted(graph[name]):
            visit(target)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def _subpackages() -> set[str]:
    return {path.parent.name for path in PACKAGE.glob("*/__init__.py")}


def test_modules_and_functions_stay_small() -> None:
    too_long: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        if len(source.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{path.name}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.name}: {node.name}() is {length} lines")
    assert too_long == []


def test_every_module_says_why_it_exists() -> None:
    missing = [name for name, tree in _modules().items() if not ast.get_docstring(tree)]
    assert missing == []


def _map_lines(text: str) -> list[str]:
    return re.findall(r"^ {4}([a-z_]+ \.+ .+)$", text, flags=re.MULTILINE)


def test_the_package_map_is_the_package() -> None:
    listed = [line.split(" ", 1)[0] for line in _map_lines(ast.get_docstring(
        ast.parse((PACKAGE / "__init__.py").read_text())) or "")]
    assert sorted(listed) == sorted(set(_modules()) | _subpackages())


def test_the_development_page_map_equals_the_package_map() -> None:
    package_map = _map_lines(ast.get_docstring(
        ast.parse((PACKAGE / "__init__.py").read_text())) or "")
    page = (REPO_ROOT / "docs" / "development.md").read_text()
    assert package_map and _map_lines(page) == package_map, (
        "copy the map in comfy_runtime/__init__.py into docs/development.md's package map"
    )


def test_no_test_imports_from_conftest() -> None:
    offenders = [
        str(path.relative_to(REPO_ROOT))
        for path in Path(REPO_ROOT / "tests").rglob("*.py")
        if re.search(r"from (tests)?\.conftest import", path.read_text())
    ]
    assert offenders == []
