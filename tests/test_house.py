"""The house rules, checked on the source tree itself (issue 10).

- no source file over 400 lines;
- no function over 80 lines, not counting its docstring;
- no import cycle between the package's modules (imports inside functions count);
- no private name (``_name``) imported from, or reached as an attribute of, another module
  of the package.

These read the source with `ast`; nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "napari_unet_stack"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    path = MODULES.get(name)
    return path is not None and path.name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom) -> str | None:
    """The absolute module an ``from X import ...`` names, or None outside the package."""
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")
        if not _is_package(module):
            parts = parts[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join([*parts, node.module] if node.module else parts)
    return base if base == PACKAGE or base.startswith(PACKAGE + ".") else None


def _imports(module: str, tree: ast.AST):
    """(target module, imported name or None, line) for every import of a package module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE):
                    yield alias.name, None, node.lineno, alias.asname or alias.name
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            if base is None:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in MODULES:  # ``from . import tiling``: the submodule itself
                    yield sub, None, node.lineno, alias.asname or alias.name
                else:
                    yield base, alias.name, node.lineno, alias.asname or alias.name


def _trees() -> dict[str, ast.AST]:
    return {name: ast.parse(path.read_text(), filename=str(path)) for name, path in MODULES.items()}


TREES = _trees()


def _body_lines(func: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    lines = func.end_lineno - func.lineno + 1
    first = func.body[0] if func.body else None
    if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def test_no_source_file_over_400_lines():
    long = {str(p.relative_to(SRC)): n for p in MODULES.values()
            if p.exists() and (n := len(p.read_text().splitlines())) > MAX_FILE_LINES}
    assert not long, f"files over {MAX_FILE_LINES} lines: {long}"


def test_no_function_over_80_lines():
    long = {}
    for name, tree in TREES.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = _body_lines(node)
                if n > MAX_FUNCTION_LINES:
                    long[f"{name}:{node.lineno} {node.name}"] = n
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (docstring excluded): {long}"


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, tree in TREES.items():
        for target, _imported, _line, _bound in _imports(name, tree):
            if target in MODULES and target != name:
                graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert not _cycles(_graph())


def test_cycle_finder_finds_a_cycle():
    # the checker itself: a two-module cycle and a three-module cycle are reported
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert sorted(_cycles(graph)) == [["a", "b"], ["c", "d", "e"]]


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_uses(name: str, tree: ast.AST) -> list[str]:
    bad = []
    module_aliases = {}
    for target, imported, line, bound in _imports(name, tree):
        if target == name:
            continue
        if imported is not None and _private(imported):
            bad.append(f"{name}:{line} imports {imported} from {target}")
        if imported is None:
            module_aliases[bound.split(".")[0]] = target
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in module_aliases and _private(node.attr)):
            bad.append(f"{name}:{node.lineno} uses {node.value.id}.{node.attr}")
    return bad


def test_no_private_names_across_modules():
    bad = [line for name, tree in TREES.items() for line in _private_uses(name, tree)]
    assert not bad, "private names used across modules:\n" + "\n".join(bad)


@pytest.mark.parametrize("source, expected", [
    ("from .inference import _spec", ["imports _spec from napari_unet_stack.inference"]),
    ("from . import io\nio._kind_of(1)", ["uses io._kind_of"]),
    ("from .inference import spec\nfrom . import io\nio.kind_of(1)", []),
])
def test_private_import_checker(source, expected):
    # the checker itself, on a small module placed in the package's namespace
    found = _private_uses(f"{PACKAGE}.probe", ast.parse(source))
    assert [f.split(" ", 1)[1] for f in found] == expected
