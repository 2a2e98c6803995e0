"""What a deploy must keep to be undone, read from the pending statements before anything runs.

The undo log (undo/capture.py) keeps, while the upgrade runs, exactly what each statement can
destroy: a dropped table is renamed aside (nothing copied), a dropped or narrowed column's key
and values are copied into a holding table, an UPDATE or DELETE keeps the rows it matches. So
the deploy's backup step copies nothing for statements the log can undo, and an additive
revision costs no copy at all. A full dump is taken when DEPLOY_FULL_BACKUP asks for one (per
environment), or when an irreversible statement is allowed to run (--allow-irreversible): the
log cannot bring back what it destroys.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field

from ..config import Settings
from .backup_files import format_size
from .connection import connect
from .offline_sql import offline_steps
from .sql import SQLSyntaxError, split_statements
from .tool_tables import TOOL_TABLES
from .undo import holding, statements
from .undo.refusal import refusal, shortened
from .undo.session import Session, q

SAMPLE_ROWS = 1000  # rows read to estimate a column's average size


@dataclass(frozen=True)
class Kept:
    """One thing the undo log will keep, and about how much it copies (None: not known before it runs)."""

    revision: str
    table: str
    what: str
    how: str
    bytes: int | None = 0

    def line(self) -> str:
        size = "size known once it runs" if self.bytes is None else f"about {format_size(self.bytes)} copied"
        return f"{self.revision} {self.table}: {self.what}: {self.how} ({size})"


@dataclass
class ProtectionPlan:
    kept: list[Kept] = field(default_factory=list)
    irreversible: list[str] = field(default_factory=list)  # what the log cannot undo, and why
    unread: list[str] = field(default_factory=list)  # revisions whose SQL depends on the database

    @property
    def copied_bytes(self) -> int:
        return sum(item.bytes or 0 for item in self.kept)

    def needs_full_dump(self, settings: Settings, allow_irreversible: bool) -> bool:
        return settings.deploy_full_backup or bool(allow_irreversible and self.irreversible)

    def summary(self) -> str:
        if not self.kept:
            return "nothing to keep: every pending statement is additive"
        return f"{len(self.kept)} item(s) kept by the undo log, about {format_size(self.copied_bytes)} copied"

    def lines(self) -> list[str]:
        return [item.line() for item in self.kept] + [
            f"{revision}: its SQL depends on the database: what it changes is kept as it runs"
            for revision in self.unread
        ]


def _rows(session: Session, table: str) -> int:
    return int(
        session.value(
            "SELECT COALESCE(TABLE_ROWS, 0) FROM information_schema.TABLES "
            f"WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = {session.literal(table)}"
        )
        or 0
    )


def _column_bytes(session: Session, table: str, columns: list[str]) -> int:
    """About how many bytes the key and these columns hold over the whole table (from a sample)."""
    wanted = [*(holding.table_key(session, table) or []), *columns]
    present = {
        row[0]
        for row in session.rows(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
            f"WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = {session.literal(table)}"
        )
    }
    sized = [column for column in dict.fromkeys(wanted) if column in present]
    if not sized:
        return 0
    lengths = " + ".join(f"COALESCE(LENGTH({q(column)}), 0)" for column in sized)
    sample = f"SELECT {', '.join(q(c) for c in sized)} FROM {q(table)} LIMIT {SAMPLE_ROWS}"
    average = session.value(f"SELECT AVG({lengths}) FROM ({sample}) AS sample")
    return int(float(average or 0) * _rows(session, table))


def _kept_by(session: Session, revision: str, action: statements.Action, online: bool = False) -> list[Kept]:
    """What the undo log keeps for one statement that it can undo (online: an ALTER the tool runs)."""
    if action.kind == statements.DROP_TABLE:
        return [
            Kept(revision, table, "dropped", "renamed aside, nothing copied")
            for table in action.tables
            if holding.table_exists(session, table)
        ]
    if action.kind == statements.ALTER and action.table and online:
        return [
            Kept(revision, action.table, "altered online", "the original set aside at the cut-over, nothing copied")
        ]
    if action.kind == statements.ALTER and action.table and holding.table_exists(session, action.table):
        changes = action.alter
        columns = [*changes.dropped, *changes.modified, *changes.retyped_renames]
        if changes.converts_charset:
            what = "converted to another character set"
            columns = [
                row[0]
                for row in session.rows(
                    "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
                    f"AND TABLE_NAME = {session.literal(action.table)} AND CHARACTER_SET_NAME IS NOT NULL"
                )
            ]
        elif columns:
            what = f"column(s) {', '.join(columns)} dropped or changed"
        else:
            return []
        return [
            Kept(
                revision,
                action.table,
                what,
                "key and values copied into a holding table",
                _column_bytes(session, action.table, columns),
            )
        ]
    if action.kind == statements.ROWS and action.table and holding.table_exists(session, action.table):
        if action.dml == "insert":
            return [Kept(revision, action.table, "rows it adds", "their keys recorded", None)]
        return [Kept(revision, action.table, f"rows it {action.dml}s", "the rows it matches copied first", None)]
    return []


def plan(
    settings: Settings, target: str = "head", downgrade: bool = False, online: Container[tuple[str, str]] = ()
) -> ProtectionPlan:
    """Read the pending statements (their offline SQL): what the undo log keeps, what it could not undo.
    online: the (revision, table) of the ALTERs that run through the online tool (ddl_guard's routes)."""
    found = ProtectionPlan()
    created: set[str] = set()
    with connect(settings) as connection:
        session = Session.of(connection)
        for step, sql in offline_steps(settings, target, downgrade):
            if sql is None:
                found.unread.append(step.revision)
                continue
            try:
                texts = split_statements(sql)
            except SQLSyntaxError:
                texts = []
            for text in texts:
                action = statements.classify(text)
                if action.kind == statements.NONE or any(name in TOOL_TABLES for name in action.names):
                    continue
                if reason := refusal(session, action, created):
                    found.irreversible.append(f"{step.revision}: `{shortened(text)}` cannot be undone: {reason}")
                elif not (action.table in created or set(action.tables) & created):
                    found.kept += _kept_by(session, step.revision, action, (step.revision, action.table) in online)
                if action.kind == statements.CREATE_TABLE and action.table:
                    created.add(action.table)
                for old, new in action.renames:
                    if old in created:
                        created.add(new)
    return found
