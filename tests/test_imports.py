"""The modules under backend/ import each other without a cycle, counting the imports inside
functions too (those under `if TYPE_CHECKING:` never run, so they do not count)."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _module_names() -> dict[str, Path]:
    names = {}
    for path in (ROOT / "backend").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _imported(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project's modules that module imports when its code runs, at the top or in a function."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - child.level + 1] if child.level else []
                source = ".".join([*base, *([child.module] if child.module else [])])
                submodules = {f"{source}.{alias.name}" for alias in child.names} & modules.keys()
                found.update(submodules or ({source} & modules.keys()))
            elif isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names if alias.name in modules)
            visit(child)

    visit(ast.parse(path.read_text()))
    return found - {module}


def test_no_import_cycle_in_backend_not_even_inside_functions():
    modules = _module_names()
    graph = {module: _imported(module, path, modules) for module, path in modules.items()}
    assert "backend.dbops.mdl" in graph["backend.dbops.connection"]  # imported inside a function: read too
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(reversed(error.args[1]))}") from None
