"""The operations a revision's upgrade() performs, recorded offline with the line that called each.

upgrade() runs against an Operations object bound to an offline MigrationContext: the module-level
`op` proxy is pointed at it through Alembic's private _install_proxy/_remove_proxy (pinned in
requirements.txt, checked by tests/test_lint.py), its `invoke` records each operation object, and
the call frames lead back to the revision's line.
"""

from __future__ import annotations

import ast
import io
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import first_line
from .report import Finding

if TYPE_CHECKING:
    from alembic.script import Script


@dataclass
class Captured:
    operation: Any
    line: int
    end_line: int


@dataclass
class Source:
    """One revision file: its operations, text and silences."""

    script: Script
    path: Path
    display: str
    tree: ast.Module | None
    upgrade: list[Captured] = field(default_factory=list)
    upgrade_error: tuple[str, int] | None = None  # (message, line)
    call_spans: list[tuple[int, int]] = field(default_factory=list)
    line_ignores: dict[int, dict[str, str]] = field(default_factory=dict)  # line -> rule -> reason
    file_ignores: dict[str, str] = field(default_factory=dict)
    bad_ignores: list[Finding] = field(default_factory=list)


# Operations methods that are helpers, not schema operations.
_NOT_OPERATIONS = frozenset(
    {
        "f",
        "inline_literal",
        "get_bind",
        "get_context",
        "implementation_for",
        "register_operation",
        "batch_alter_table",
        "invoke",
        "context",
        "run_async",
    }
)


def call_spans(tree: ast.Module | None) -> list[tuple[int, int]]:
    """(first, last) line of every `x.operation(...)` call in the file."""
    if tree is None:
        return []
    from alembic.operations import Operations

    names = {name for name in dir(Operations) if not name.startswith("_")} - _NOT_OPERATIONS
    return sorted(
        (node.lineno, node.end_lineno or node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in names
    )


def _span_for(spans: list[tuple[int, int]], line: int) -> tuple[int, int]:
    """The innermost operation call containing line (the frame may point inside a long call)."""
    containing = [span for span in spans if span[0] <= line <= span[1]]
    return min(containing, key=lambda span: span[1] - span[0]) if containing else (line, line)


def _line_in(path: Path, frame) -> int:
    target = os.path.realpath(path)
    while frame is not None:
        if os.path.realpath(frame.f_code.co_filename) == target:
            return frame.f_lineno
        frame = frame.f_back
    return 0


def capture(source: Source, function: str) -> tuple[list[Captured], tuple[str, int] | None]:
    """Run the revision's upgrade() (or another of its functions) against a recording, offline Operations."""
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    body = getattr(source.script.module, function, None)
    if body is None:
        return [], None
    context = MigrationContext.configure(
        dialect_name="mysql", opts={"as_sql": True, "output_buffer": io.StringIO(), "literal_binds": True}
    )
    operations = Operations(context)
    captured: list[Captured] = []
    # An operation called from a helper in another file is placed on the `def` line.
    fallback = getattr(getattr(body, "__code__", None), "co_firstlineno", 1)

    def recorder(real_invoke):
        def invoke(operation):
            line = _line_in(source.path, sys._getframe(1)) or fallback
            first, last = _span_for(source.call_spans, line)
            captured.append(Captured(operation, first, last))
            try:
                return real_invoke(operation)  # renders SQL into the buffer; create_table returns its Table
            except Exception:
                return None

        return invoke

    real_batch = operations.batch_alter_table

    @contextmanager
    def batch_alter_table(*args, **kwargs):
        with real_batch(*args, **kwargs) as batch:
            batch.invoke = recorder(batch.invoke)  # type: ignore[method-assign]  # wrapped on the instance, see below
            yield batch

    # Instance attributes: the module-level `op` proxy looks methods up on the instance (mypy
    # rejects assigning to a method; wrapping the instance's is the point here).
    operations.invoke = recorder(operations.invoke)  # type: ignore[method-assign]
    operations.batch_alter_table = batch_alter_table  # type: ignore[method-assign]
    operations._install_proxy()
    try:
        body()
    except Exception as exc:
        line = 0
        tb = exc.__traceback__
        while tb is not None:
            if os.path.realpath(tb.tb_frame.f_code.co_filename) == os.path.realpath(source.path):
                line = tb.tb_lineno
            tb = tb.tb_next
        return captured, (first_line(exc), line)
    finally:
        operations._remove_proxy()
    return captured, None


def finding_in(source: Source, rule: str, severity: str, line: int, message: str, fix: str) -> Finding:
    return Finding(
        rule, severity, source.script.revision, source.display, line, " ".join(message.split()), " ".join(fix.split())
    )
