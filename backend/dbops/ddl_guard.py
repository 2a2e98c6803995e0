"""Online-DDL guard: how each pending ALTER would run on this server, found out before it runs.

Each ALTER TABLE / CREATE INDEX / DROP INDEX of the pending revisions is run against an
empty copy of its table in a scratch database (scratch.py) with an explicit algorithm: INSTANT, then
INPLACE with LOCK=NONE; when the server refuses both, the statement needs a table copy
(or a lock). The deploy refuses such a statement on a table above DDL_GUARD_MAX_ROWS
rows unless the revision opts in with a comment `# ddl-guard: allow-copy <reason>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Settings
from . import migrate
from .connection import connect
from .errors import DbOpsError
from .identifiers import quote_identifier
from .scratch import scratch_schema
from .sql import split_statements

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

INSTANT, INPLACE, COPY, UNKNOWN = "instant", "inplace", "copy", "unknown"
# The server refuses the requested ALGORITHM/LOCK (MySQL and MariaDB share these codes).
ER_ALTER_OPERATION_NOT_SUPPORTED = (1845, 1846)
OPT_IN = re.compile(r"#\s*ddl-guard:\s*allow-copy\s+(\S.*)$", re.M)
_ALTER = re.compile(r"^\s*ALTER\s+TABLE\s+(`(?:[^`]|``)+`|\w+)\s+(.*)$", re.I | re.S)
_CREATE_INDEX = re.compile(r"^\s*CREATE\s+(UNIQUE\s+|FULLTEXT\s+|SPATIAL\s+)?INDEX\s+(\S+)\s+ON\s+(`(?:[^`]|``)+`|\w+)\s*(.*)$",
                           re.I | re.S)
_DROP_INDEX = re.compile(r"^\s*DROP\s+INDEX\s+(\S+)\s+ON\s+(`(?:[^`]|``)+`|\w+)\s*$", re.I | re.S)


class DDLGuardRefused(DbOpsError):
    pass


@dataclass(frozen=True)
class DDLStatement:
    revision: str
    table: str
    sql: str
    algorithm: str  # instant, inplace, copy or unknown
    rows: int
    allowed_reason: str = ""
    note: str = ""

    @property
    def blocking(self) -> bool:
        return self.algorithm == COPY

    def describe(self) -> str:
        text = f"{self.revision} {self.table} ({self.rows:,} rows): {self.algorithm}"
        return text + (f" - {self.note}" if self.note else "")


def _unquote(name: str) -> str:
    return name[1:-1].replace("``", "`") if name.startswith("`") else name


def _probe_forms(statement: str, scratch: str) -> tuple[str, list[tuple[str, str]]] | None:
    """(table, [(algorithm, sql against the scratch copy), ...]) for a statement the guard knows."""
    if match := _ALTER.match(statement):
        table, rest = _unquote(match.group(1)), match.group(2)
        target = f"{scratch}.{quote_identifier(table, 'table name')}"
        return table, [(INSTANT, f"ALTER TABLE {target} {rest}, ALGORITHM=INSTANT"),
                       (INPLACE, f"ALTER TABLE {target} {rest}, ALGORITHM=INPLACE, LOCK=NONE")]
    if match := _CREATE_INDEX.match(statement):
        kind, index, table, rest = match.group(1) or "", match.group(2), _unquote(match.group(3)), match.group(4)
        target = f"{scratch}.{quote_identifier(table, 'table name')}"
        return table, [(INPLACE, f"CREATE {kind}INDEX {index} ON {target} {rest} ALGORITHM=INPLACE LOCK=NONE")]
    if match := _DROP_INDEX.match(statement):
        index, table = match.group(1), _unquote(match.group(2))
        target = f"{scratch}.{quote_identifier(table, 'table name')}"
        return table, [(INSTANT, f"DROP INDEX {index} ON {target} ALGORITHM=INSTANT"),
                       (INPLACE, f"DROP INDEX {index} ON {target} ALGORITHM=INPLACE LOCK=NONE")]
    return None


def _table_rows(connection: Connection, database: str) -> dict[str, int]:
    from sqlalchemy import text

    rows = connection.execute(text("SELECT TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES "
                                   "WHERE TABLE_SCHEMA = :db AND TABLE_TYPE = 'BASE TABLE'"), {"db": database})
    return {name: int(count or 0) for name, count in rows}


def _classify(connection: Connection, forms: list[tuple[str, str]]) -> tuple[str, str]:
    from sqlalchemy.exc import DBAPIError

    for algorithm, sql in forms:
        try:
            connection.exec_driver_sql(sql)
            return algorithm, ""
        except DBAPIError as exc:
            code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
            if code not in ER_ALTER_OPERATION_NOT_SUPPORTED:
                return UNKNOWN, f"could not be probed: {migrate.first_line(exc.orig)}"
    return COPY, "needs a table copy or a lock"


def inspect_pending(settings: Settings, target: str = "head") -> list[DDLStatement]:
    """Classify every guarded statement of the revisions pending up to target."""
    from sqlalchemy import text

    script = migrate.script_directory(settings)
    current = migrate.current(settings)
    steps = migrate.pending(script, current, target)
    if not steps:
        return []
    source = quote_identifier(settings.database)
    found: list[DDLStatement] = []
    with scratch_schema(settings, "ddlprobe") as probe, connect(settings) as connection:
        scratch = quote_identifier(probe.database)
        sizes = _table_rows(connection, settings.database)
        copied: set[str] = set()
        previous = ",".join(current) or "base"
        for step in steps:
            reason = _opt_in(Path(step.path))
            sql = migrate.offline_sql(settings, previous, step.revision)
            previous = step.revision
            for statement in split_statements(sql):
                forms = _probe_forms(statement, scratch)
                if forms is None:
                    continue
                table, attempts = forms
                if table not in sizes:
                    continue  # created by this deploy: empty, nothing to copy
                if table not in copied:
                    quoted = quote_identifier(table, "table name")
                    connection.execute(text(f"CREATE TABLE {scratch}.{quoted} LIKE {source}.{quoted}"))
                    copied.add(table)
                algorithm, note = _classify(connection, attempts)
                found.append(DDLStatement(step.revision, table, " ".join(statement.split()), algorithm,
                                          sizes[table], reason, note))
    return found


def _opt_in(path: Path) -> str:
    match = OPT_IN.search(path.read_text(errors="replace"))
    return match.group(1).strip() if match else ""


def refused(statements: list[DDLStatement], max_rows: int) -> list[DDLStatement]:
    """Statements that would copy or lock a table above max_rows without the revision's opt-in."""
    return [item for item in statements if item.blocking and item.rows > max_rows and not item.allowed_reason]


def check(settings: Settings, target: str = "head") -> list[DDLStatement]:
    """Raise DDLGuardRefused before anything runs when a statement is refused; else return all."""
    statements = inspect_pending(settings, target)
    bad = refused(statements, settings.ddl_guard_max_rows)
    if bad:
        first = bad[0]
        raise DDLGuardRefused(
            f"{first.revision} would copy or lock {first.table} ({first.rows:,} rows > DDL_GUARD_MAX_ROWS="
            f"{settings.ddl_guard_max_rows:,}): {first.sql[:120]}; rewrite it to run online or add "
            "'# ddl-guard: allow-copy <reason>' to the revision"
        )
    return statements
