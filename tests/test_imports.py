"""The modules under backend/ and tasks/ import each other without a cycle, counting the imports
inside functions too (those under `if TYPE_CHECKING:` never run, so they do not count); nothing
under backend/ imports Invoke."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _module_names(*packages: str) -> dict[str, Path]:
    names = {}
    for path in (path for package in packages for path in (ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _imported(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules that module imports when its code runs, at the top or in a function: the
    project's own (those in modules), and the top-level names of the others."""
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
                found.update(submodules or ({source} & modules.keys()) or {source.split(".")[0]})
            elif isinstance(child, ast.Import):
                found.update(alias.name if alias.name in modules else alias.name.split(".")[0] for alias in child.names)
            visit(child)

    visit(ast.parse(path.read_text()))
    return found - {module}


def test_no_import_cycle_in_backend_or_tasks_not_even_inside_functions():
    modules = _module_names("backend", "tasks")
    graph = {module: _imported(module, path, modules) & modules.keys() for module, path in modules.items()}
    assert "backend.database" in graph["backend.dbops.authoring"]  # imported inside a function: read too
    assert "backend.console" in graph["tasks.db"]
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(reversed(error.args[1]))}") from None


def test_nothing_in_backend_imports_invoke():
    modules = _module_names("backend")
    importing = sorted(module for module, path in modules.items() if "invoke" in _imported(module, path, modules))
    assert not importing, f"backend must not import Invoke (only tasks/ does): {importing}"
