"""Lint revisions for operations that hurt on MySQL/MariaDB (`invoke db.lint`).

Reads what the revisions will actually do: each upgrade() runs against an offline
Operations object that records the operation objects (alembic.operations.ops) instead of
touching a database (capture.py), and raw SQL in op.execute() is read with the shared MySQL
tokenizer (sql.py: quotes, escapes and comments as the server reads them) into the same
operations (raw_sql.py). The rules (rules.py) then walk those operations over the schema the
earlier revisions produce (schema.py): built in a scratch database when a server is configured,
else replayed from the operations; the configured database answers table sizes and duplicates
(live.py).

Silencing: `# lint: ignore[rule-id] reason` on the operation's line (or any line of a call
spanning several) silences that finding; on a line of its own, the rule for the whole file.
A silence without a reason silences nothing and is reported (silences.py).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ...config import PROJECT_ROOT, Settings
from .. import alembic_setup, authoring, revision_graph
from ..connection import connect
from ..ddl_guard import schema_change_mode
from ..errors import DbOpsError, RevisionError, first_line
from ..schema import Schema, Table, read_schema
from ..tool_tables import TOOL_TABLES
from .capture import Source, call_spans, capture, finding_in
from .live import Live
from .raw_sql import RawCopy, expand
from .report import ERROR, RULES, WARNING, Finding, LintReport
from .rules import Check, check_downgrade, check_revision
from .schema import apply_operation, from_live
from .silences import read_ignores, silence

if TYPE_CHECKING:
    from alembic.script import Script, ScriptDirectory

__all__ = ["LARGE_TABLE_BYTES", "LARGE_TABLE_ROWS", "RULES", "Finding", "LintReport", "lint"]


# Tables above either size are "large" for large-table-copy (about 10 s of copying on a small server).
LARGE_TABLE_ROWS = 1_000_000
LARGE_TABLE_BYTES = 512 * 1024 * 1024


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def _load(script: Script) -> Source:
    path = Path(script.path)
    text = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(text)
    except SyntaxError:
        tree = None
    source = Source(script=script, path=path, display=_display(path), tree=tree)
    source.call_spans = call_spans(tree)
    read_ignores(source, text)
    source.upgrade, source.upgrade_error = capture(source, "upgrade")
    return source


def _ordered(script: ScriptDirectory) -> list[Script]:
    """Every revision, oldest first (parents before children)."""
    with alembic_setup.alembic_errors():
        return list(reversed(list(script.walk_revisions())))


def _parents(script: Script) -> tuple[str, ...]:
    down = script.down_revision
    if down is None:
        return ()
    return (down,) if isinstance(down, str) else tuple(down)


def _select(
    settings: Settings,
    script: ScriptDirectory,
    ordered: list[Script],
    revision: str | None,
    all_revisions: bool,
    live_ok: bool,
    report: LintReport,
) -> list[Script]:
    if revision:
        alembic_setup.validate_revision_argument(revision)
        with alembic_setup.alembic_errors():
            found = script.get_revision(revision)
        if found is None:
            raise RevisionError(f"unknown revision {revision!r}: see `invoke db.history`")
        return [found]
    if all_revisions or not live_ok:
        return ordered
    try:
        current = alembic_setup.current(settings)
        pending = {step.revision for step in revision_graph.pending(script, current, "heads")}
    except DbOpsError as exc:
        report.notes.append(f"linting every revision: pending ones unknown ({exc})")
        return ordered
    report.notes.append(
        f"{len(pending)} revision(s) pending against {settings.database} "
        f"(at {', '.join(current) or 'base'}); --all lints every revision"
    )
    return [rev for rev in ordered if rev.revision in pending]


@contextmanager
def _scratch_schemas(settings: Settings) -> Iterator:
    """A function revision -> schema before it, from a scratch database upgraded step by step."""
    from alembic import command

    with authoring.scratch_database(settings, "base") as scratch:

        def before(rev: Script) -> Schema:
            with alembic_setup.migration_connection(scratch) as (config, connection):
                for parent in _parents(rev):
                    command.upgrade(config, parent)
                connection.commit()
                return from_live(read_schema(connection, scratch.database, TOOL_TABLES))

        yield before


def _replayed(sources: dict[str, Source], ordered: list[Script], wanted: set[str]) -> dict[str, Schema]:
    """Schema before each wanted revision, replayed from the operations of the earlier ones."""
    after: dict[str, Schema] = {}
    before: dict[str, Schema] = {}
    for rev in ordered:
        tables: dict[str, Table] = {}
        for parent in _parents(rev):
            for name, table in after.get(parent, Schema()).tables.items():
                tables.setdefault(name, table)
        state = Schema(tables)
        if rev.revision in wanted:
            before[rev.revision] = state
        if not set(wanted) - set(before):
            break
        for item in expand(sources[rev.revision].upgrade):
            if not isinstance(item.operation, RawCopy):
                state = apply_operation(state, item.operation)
        after[rev.revision] = state
    return before


def lint(
    settings: Settings,
    revisions: Sequence[str] | None = None,
    database_checks: bool = True,
    all_revisions: bool = False,
    large_table_rows: int = LARGE_TABLE_ROWS,
    large_table_bytes: int = LARGE_TABLE_BYTES,
) -> LintReport:
    """Lint revisions: `revisions` (ids), or all_revisions, or by default those pending against the
    configured database when it is reachable (all otherwise).

    database_checks=False never connects: the earlier schema is replayed from the revisions'
    operations, and duplicates and table sizes are not looked at.
    """
    report = LintReport()
    online_mode = schema_change_mode(settings)
    script = alembic_setup.script_directory(settings)
    ordered = _ordered(script)
    by_id = {rev.revision: rev for rev in ordered}

    with ExitStack() as stack:
        live: Live | None = None
        if database_checks and settings.is_configured:
            try:
                connection = stack.enter_context(connect(settings))
                live = Live(connection, settings.database)
            except DbOpsError as exc:
                report.notes.append(f"database checks skipped: {exc}")
        elif database_checks:
            report.notes.append("database checks skipped: no database configured")

        selected: list[Script] = []
        wanted: Sequence[str | None] = revisions or [None]
        for revision in wanted:
            for rev in _select(settings, script, ordered, revision, all_revisions, live is not None, report):
                if rev not in selected:
                    selected.append(rev)
        selected.sort(key=ordered.index)
        report.revisions = [rev.revision for rev in selected]

        # Operations of the revisions to lint and of all before them (for the replayed schema).
        last = max((ordered.index(rev) for rev in selected), default=-1)
        sources = {rev.revision: _load(rev) for rev in ordered[: last + 1]}

        before = None
        if database_checks and settings.is_configured and selected:
            try:
                before = stack.enter_context(_scratch_schemas(settings))
            except DbOpsError as exc:
                report.notes.append(f"scratch database unavailable ({exc}): schema replayed from the revisions")
        replayed = None
        sources_used: list[str] = []

        unsized: list[str] = []
        for rev in selected:
            source = sources[rev.revision]
            schema = None
            if before is not None:
                try:
                    schema = before(rev)
                    sources_used.append("scratch database")
                except Exception as exc:
                    # e.g. an earlier revision fails on the server: go on without the scratch database
                    report.notes.append(
                        f"scratch database stopped before {rev.revision} "
                        f"({first_line(exc)}): schema replayed from the revisions"
                    )
                    before = None
            if schema is None:
                if replayed is None:
                    replayed = _replayed(sources, ordered, set(report.revisions))
                schema = replayed.get(rev.revision, Schema())
                sources_used.append("revision operations")
            check = Check(source, schema, live, large_table_rows, large_table_bytes, online_mode)
            check_revision(check)
            if source.upgrade_error:
                message, line = source.upgrade_error
                check.findings.append(
                    finding_in(
                        source,
                        "unreadable-revision",
                        WARNING,
                        line or 1,
                        f"upgrade() raised while its operations were read: {message}; the rules saw only the "
                        "operations before it",
                        "keep upgrade() to op.* calls (op.get_bind() queries do not run offline)",
                    )
                )
            check_downgrade(source, check.findings)
            unsized.extend(check.unsized)
            report.findings.extend(source.bad_ignores)
            silence(report, source, check.findings, check.span)

        heads = script.get_heads()
        if len(heads) > 1:
            head_sources = [sources.get(head) or _load(by_id[head]) for head in sorted(heads)]
            finding = finding_in(
                head_sources[0],
                "multiple-heads",
                ERROR,
                _assignment_line(head_sources[0]),
                f"{len(heads)} heads: {', '.join(sorted(heads))}",
                "join them with `invoke db.merge`",
            )
            reasons = [reason for s in head_sources if (reason := s.file_ignores.get("multiple-heads"))]
            if reasons:
                report.silenced.append((finding, reasons[0]))
            else:
                report.findings.append(finding)
        report.schema_source = ", then ".join(dict.fromkeys(sources_used)) or report.schema_source
        if unsized:
            report.notes.append(
                f"large-table-copy not checked (no database reachable for table sizes): {', '.join(unsized)}"
            )
    return report


def _assignment_line(source: Source) -> int:
    for node in source.tree.body if source.tree else []:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(isinstance(target, ast.Name) and target.id == "down_revision" for target in targets):
            return node.lineno
    return 1
