"""The house rules of docs/architecture.md, checked on the source: no import cycle among
flask_observe's modules (type-only and function-local imports included), nothing but the
public API imports the extension, the core imports no feature, and a feature imports only the
core and features set up before it."""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

import flask_observe
from flask_observe.extension import FEATURES

PACKAGE = Path(flask_observe.__file__).parent
#: Modules allowed to import the extension: the public API.
PUBLIC = {"flask_observe"}
#: Folders that are not features: contrib (gunicorn hooks, shipped files) uses any feature.
NOT_FEATURES = {"contrib"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


MODULES = _modules()


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for _ in range(node.level - 1):
        package = package.rsplit(".", 1)[0]
    return f"{package}.{node.module}" if node.module else package


def imports_of(module: str) -> Iterator[str]:
    """Every flask_observe module that ``module`` imports, anywhere in its source."""
    path = MODULES[module]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, path, node)
            # `from pkg import sub` imports the submodule when there is one.
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name.startswith("flask_observe") and name != module:
                yield name


GRAPH = {module: set(imports_of(module)) for module in MODULES}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return found


def _feature_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) > 1 and (PACKAGE / parts[1]).is_dir():
        return parts[1]
    return None


ORDER = [feature.name for feature in FEATURES]


def test_the_import_graph_is_read() -> None:
    """The checks below see real edges (a parser that found none would pass them all)."""
    assert "flask_observe.extension" in GRAPH["flask_observe"]
    assert "flask_observe.metrics" in GRAPH["flask_observe.diagnostics.setup"]
    assert "flask_observe.hooks" in GRAPH["flask_observe.logging.access"]
    assert len(MODULES) > 80


def test_no_import_cycle() -> None:
    """No two modules import each other, directly or through others."""
    assert _cycles() == []


def test_only_the_public_api_imports_the_extension() -> None:
    importers = sorted(m for m, deps in GRAPH.items() if "flask_observe.extension" in deps)
    assert set(importers) <= PUBLIC, importers


def test_every_feature_package_is_in_the_ordered_tuple() -> None:
    """Each folder but contrib is a feature with a ``setup.FEATURE``, listed once in FEATURES,
    named after its package."""
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders - NOT_FEATURES == set(ORDER)
    assert len(ORDER) == len(set(ORDER))
    for feature in FEATURES:
        assert feature.setup.__module__ == f"flask_observe.{feature.name}.setup"


def test_the_core_imports_no_feature() -> None:
    """Top-level modules (but the extension, which lists the features, and the public API)
    import no feature package."""
    for module, deps in GRAPH.items():
        if _feature_of(module) is not None or module in PUBLIC | {"flask_observe.extension"}:
            continue
        features = sorted({f for d in deps if (f := _feature_of(d)) is not None})
        assert features == [], f"{module} imports {features}"


@pytest.mark.parametrize("feature", ORDER)
def test_a_feature_imports_only_the_core_and_earlier_features(feature: str) -> None:
    """Data flows one way: a feature may use what a feature set up before it provides."""
    earlier = set(ORDER[: ORDER.index(feature)])
    wrong: dict[str, set[str]] = defaultdict(set)
    for module, deps in GRAPH.items():
        if _feature_of(module) != feature:
            continue
        for dep in deps:
            other = _feature_of(dep)
            if other is not None and other != feature and other not in earlier:
                wrong[module].add(dep)
    assert dict(wrong) == {}


def test_contrib_does_not_import_the_extension() -> None:
    for module, deps in GRAPH.items():
        if _feature_of(module) == "contrib":
            assert "flask_observe.extension" not in deps, module
