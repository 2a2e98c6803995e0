"""The preflight's rehearsal: the pending revisions run first on an empty copy of the schema.

The live tables' structure (SHOW CREATE TABLE, views too) is copied into a scratch database (scratch.py) and
every pending statement runs there in order, so a statement that fails ("Unknown column")
refuses the deploy before anything runs, and, for a deploy to head, the schema it leaves is
compared with the models, as verify will do: a table the models do not own or a change made
by hand is found before the backup (UNMANAGED_TABLES declares tables to leave alone).

On the way, each ALTER TABLE / CREATE INDEX / DROP INDEX of an existing table is tried with an
explicit algorithm: INSTANT, then INPLACE with LOCK=NONE; when the server refuses both, the
statement needs a table copy (or a lock). Such a statement on a table above DDL_GUARD_MAX_ROWS
rows takes the route ONLINE_SCHEMA_CHANGE names: online (through pt-online-schema-change,
online_ddl.py), direct (as written) or refused. A revision decides for its own statements with a
comment: `# ddl-guard: allow-copy <reason>` (direct) or `# ddl-guard: online` (online, any size).
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Settings
from . import alembic_setup, offline_sql, revision_graph
from .connection import connect
from .drift import models_against
from .errors import DbOpsError, first_line
from .identifiers import quote_identifier
from .scratch import scratch_schema
from .servers import find_program
from .sql import first_keyword, split_statements
from .tool_tables import HOLD_PREFIX, TOOL_TABLES, IgnoredTables, ignored_tables

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

INSTANT, INPLACE, COPY, UNKNOWN = "instant", "inplace", "copy", "unknown"
# The server refuses the requested ALGORITHM/LOCK (MySQL and MariaDB share these codes).
ER_ALTER_OPERATION_NOT_SUPPORTED = (1845, 1846)
OPT_IN = re.compile(r"#\s*ddl-guard:\s*allow-copy\s+(\S.*)$", re.M)
ONLINE_ASKED = re.compile(r"#\s*ddl-guard:\s*online\b", re.M)
OSC_TOOL = "pt-online-schema-change"
# Routes of a guarded statement: as written, through the online tool, or refused.
DIRECT, ONLINE, REFUSE = "direct", "online", "refuse"
# What the online copy moves per second, data and indexes, measured here (tests/bench/online.py);
# an estimate for the plan, throttling can only make it slower. 12-14 MB/s copying a 4M-row
# chat_messages (1.29 GB) on MariaDB 10.11, 2 cores shared with other work (load 5-9); up to 30 MB/s
# at 1M rows on a quieter machine: the slower figure, so that the plan does not promise too much.
ONLINE_COPY_BYTES_PER_SECOND = 13e6
ALTER_TABLE = re.compile(r"^\s*ALTER\s+TABLE\s+(`(?:[^`]|``)+`|\w+)\s+(.*)$", re.I | re.S)
_CREATE_INDEX = re.compile(
    r"^\s*CREATE\s+(UNIQUE\s+|FULLTEXT\s+|SPATIAL\s+)?INDEX\s+(\S+)\s+ON\s+(`(?:[^`]|``)+`|\w+)\s*(.*)$", re.I | re.S
)
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
    online_asked: bool = False  # the revision says `# ddl-guard: online`
    bytes: int = 0  # the table's data and indexes
    route: str = ""  # DIRECT, ONLINE or REFUSE when it copies a big table (or the revision asks); "" otherwise

    @property
    def blocking(self) -> bool:
        return self.algorithm == COPY

    def describe(self) -> str:
        text = f"{self.revision} {self.table} ({self.rows:,} rows): {self.algorithm}"
        if self.route == ONLINE:
            text += f", runs online through {OSC_TOOL} (copy of {self.bytes / 1e6:,.0f} MB, about {copy_estimate(self.bytes)})"
        elif self.route == DIRECT and self.blocking:
            text += ", runs as written: writes to the table wait for the copy"
        return text + (f" - {self.note}" if self.note else "")


def copy_estimate(size: int) -> str:
    seconds = size / ONLINE_COPY_BYTES_PER_SECOND
    return f"{seconds:,.0f} s" if seconds >= 1 else "under 1 s"


def schema_change_mode(settings: Settings) -> str:
    """ONLINE_SCHEMA_CHANGE, with auto resolved: online where the tool is installed, else refuse."""
    if settings.online_schema_change != "auto":
        return settings.online_schema_change
    return ONLINE if find_program(OSC_TOOL) else REFUSE


def route(algorithm: str, rows: int, max_rows: int, mode: str, allowed: bool, online_asked: bool) -> str:
    """How a guarded statement runs: DIRECT, ONLINE, REFUSE, or "" (as written, nothing to decide)."""
    if online_asked and algorithm != INSTANT:
        return ONLINE
    if algorithm != COPY or rows <= max_rows:
        return ""
    return DIRECT if allowed else mode


def _unquote(name: str) -> str:
    return name[1:-1].replace("``", "`") if name.startswith("`") else name


def _probe_forms(statement: str, scratch: str) -> tuple[str, list[tuple[str, str]]] | None:
    """(table, [(algorithm, sql against the scratch copy), ...]) for a statement the guard knows."""
    if match := ALTER_TABLE.match(statement):
        table, rest = _unquote(match.group(1)), match.group(2)
        target = f"{scratch}.{quote_identifier(table, 'table name')}"
        return table, [
            (INSTANT, f"ALTER TABLE {target} {rest}, ALGORITHM=INSTANT"),
            (INPLACE, f"ALTER TABLE {target} {rest}, ALGORITHM=INPLACE, LOCK=NONE"),
        ]
    if match := _CREATE_INDEX.match(statement):
        kind, index, table, rest = match.group(1) or "", match.group(2), _unquote(match.group(3)), match.group(4)
        target = f"{scratch}.{quote_identifier(table, 'table name')}"
        return table, [(INPLACE, f"ALTER TABLE {target} ADD {kind}INDEX {index} {rest}, ALGORITHM=INPLACE, LOCK=NONE")]
    if match := _DROP_INDEX.match(statement):
        index, table = match.group(1), _unquote(match.group(2))
        target = f"{scratch}.{quote_identifier(table, 'table name')}"
        return table, [
            (INSTANT, f"ALTER TABLE {target} DROP INDEX {index}, ALGORITHM=INSTANT"),
            (INPLACE, f"ALTER TABLE {target} DROP INDEX {index}, ALGORITHM=INPLACE, LOCK=NONE"),
        ]
    return None


# Statements that change neither schema nor rows but may act outside the copy (GET_LOCK, SLEEP).
NOT_REHEARSED = frozenset({"SELECT", "DO"})
# Objects the copy leaves out (triggers, routines, events): a statement that misses one is not
# the revision's fault here.
NOT_COPIED = (1360, 1305, 1539)


class RehearsalFailed(DbOpsError):
    pass


@dataclass
class Rehearsal:
    statements: list[DDLStatement] = field(default_factory=list)  # guarded statements on existing tables
    failure: str = ""  # the first statement that failed, and why
    model_differences: list[str] = field(default_factory=list)  # at head: rehearsed schema vs models


def _table_sizes(connection: Connection, database: str) -> dict[str, tuple[int, int]]:
    """{table: (rows, bytes of data and indexes)}, the server's estimates."""
    from sqlalchemy import text

    rows = connection.execute(
        text(
            "SELECT TABLE_NAME, TABLE_ROWS, DATA_LENGTH + INDEX_LENGTH FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = :db AND TABLE_TYPE = 'BASE TABLE'"
        ),
        {"db": database},
    )
    return {name: (int(count or 0), int(size or 0)) for name, count, size in rows}


def _error_code(exc) -> int | None:
    orig = getattr(exc, "orig", None)
    return orig.args[0] if orig is not None and orig.args and isinstance(orig.args[0], int) else None


def _classify(connection: Connection, statement: str, forms: list[tuple[str, str]]) -> tuple[str, str]:
    """Run the statement on the copy with the cheapest algorithm the server accepts: (algorithm, note)."""
    from sqlalchemy.exc import DBAPIError

    for algorithm, sql in forms:
        try:
            connection.exec_driver_sql(sql)
            return algorithm, ""
        except DBAPIError as exc:
            if _error_code(exc) not in ER_ALTER_OPERATION_NOT_SUPPORTED:
                # Not a refused algorithm: the statement as written decides (and fails if it is wrong).
                connection.exec_driver_sql(statement)
                return UNKNOWN, f"could not be probed: {first_line(exc.orig or exc)}"
    connection.exec_driver_sql(statement)
    return COPY, "needs a table copy or a lock"


def _copy_structure(connection: Connection, live: str, ignored: Container[str]) -> None:
    """The live tables and views, empty, in the scratch schema (foreign keys included)."""
    from sqlalchemy.exc import DBAPIError

    source = quote_identifier(live)
    objects = connection.exec_driver_sql(
        "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (live,)
    ).all()
    connection.exec_driver_sql("SET SESSION foreign_key_checks = 0")
    views = []
    for name, kind in objects:
        if name in ignored:
            continue
        quoted = quote_identifier(name, "table name")
        if kind == "VIEW":
            views.append(quoted)
            continue
        # Base tables, MariaDB's sequences and system-versioned tables.
        definition = connection.exec_driver_sql(f"SHOW CREATE TABLE {source}.{quoted}").one()[1]
        connection.exec_driver_sql(definition)
    # Views may use each other: create them until no more can be.
    while views:
        left = []
        for quoted in views:
            definition = connection.exec_driver_sql(f"SHOW CREATE VIEW {source}.{quoted}").one()[1]
            definition = re.sub(r"\bDEFINER=\S+\s", "", definition, count=1).replace(f"{source}.", "")
            try:
                connection.exec_driver_sql(definition)
            except DBAPIError:
                left.append(quoted)
        if len(left) == len(views):
            break  # these views read something not copied: statements on them are not rehearsed
        views = left
    connection.exec_driver_sql("SET SESSION foreign_key_checks = 1")


def rehearse(settings: Settings, target: str = "head", downgrade: bool = False) -> Rehearsal:
    """Run the revisions pending up to target (or reverted down to it) on an empty copy."""
    from sqlalchemy.exc import DBAPIError

    script = alembic_setup.script_directory(settings)
    to_head = not downgrade and set(revision_graph.resolve_target(script, target)) == set(script.get_heads())
    rehearsal = Rehearsal()
    steps = list(offline_sql.offline_steps(settings, target, downgrade))
    compare_models = to_head and settings.verify_models
    if not steps and not compare_models:
        return rehearsal
    ignored = ignored_tables(settings)
    with connect(settings) as connection:
        if not steps:  # nothing to run: the live schema is what verify will compare
            rehearsal.model_differences = _model_differences(connection, ignored)
            return rehearsal
        sizes = _table_sizes(connection, settings.database)
    mode = schema_change_mode(settings)
    with scratch_schema(settings, "rehearsal") as scratch, connect(scratch) as connection:
        _copy_structure(connection, settings.database, TOOL_TABLES)
        for step, sql in steps:
            if sql is None:
                return rehearsal  # the revision reads the database to decide what to run: the rest cannot be rehearsed
            source = Path(step.path).read_text(errors="replace")
            reason, online_asked = _opt_in(source), bool(ONLINE_ASKED.search(source))
            for statement in split_statements(sql):
                if "alembic_version" in statement:
                    continue  # the copy has no revision table; the real run records the revision
                if first_keyword(statement) in NOT_REHEARSED:
                    continue
                forms = _probe_forms(statement, quote_identifier(scratch.database))
                table = forms[0] if forms else None
                try:
                    if forms and table in sizes:
                        algorithm, note = _classify(connection, statement, forms[1])
                        rows, size = sizes[table]
                        way = route(algorithm, rows, settings.ddl_guard_max_rows, mode, bool(reason), online_asked)
                        if way == ONLINE and not ALTER_TABLE.match(statement):
                            way = DIRECT if online_asked else mode  # only ALTER TABLE goes through the tool
                        rehearsal.statements.append(
                            DDLStatement(
                                step.revision,
                                table,
                                " ".join(statement.split()),
                                algorithm,
                                rows,
                                reason,
                                note,
                                online_asked,
                                size,
                                way,
                            )
                        )
                    else:
                        connection.exec_driver_sql(statement)
                except DBAPIError as exc:
                    if _error_code(exc) in NOT_COPIED:
                        continue
                    rehearsal.failure = (
                        f"{step.revision}: {' '.join(statement.split())[:160]}: {first_line(exc.orig or exc)}"
                    )
                    return rehearsal
        if compare_models:
            rehearsal.model_differences = _model_differences(connection, ignored)
    return rehearsal


def _model_differences(connection: Connection, ignored: IgnoredTables) -> list[str]:
    return [difference.text() for difference in models_against(connection, ignored, "models", "the database")]


def inspect_pending(settings: Settings, target: str = "head") -> list[DDLStatement]:
    """How every guarded statement of the revisions pending up to target would run."""
    return rehearse(settings, target).statements


def _opt_in(source: str) -> str:
    match = OPT_IN.search(source)
    return match.group(1).strip() if match else ""


def refused(statements: list[DDLStatement]) -> list[DDLStatement]:
    """Statements that would copy or lock a big table and that nothing lets through."""
    return [item for item in statements if item.route == REFUSE]


def online_problems(settings: Settings, statements: list[DDLStatement]) -> list[str]:
    """Why the statements routed online cannot run through the tool, one line each."""
    online = [item for item in statements if item.route == ONLINE]
    if not online:
        return []
    if not find_program(OSC_TOOL):
        return [
            f"{online[0].revision} must run online ({online[0].table}) but {OSC_TOOL} is not installed: "
            "install percona-toolkit, or set ONLINE_SCHEMA_CHANGE=direct to run it as written"
        ]
    from .undo.holding import table_key, table_triggers
    from .undo.session import Session

    problems = []
    tables = [item.table for item in online]
    twice = sorted({table for table in tables if tables.count(table) > 1})
    if twice:
        problems.append(
            f"{twice[0]} would be altered online more than once in one deploy: the tool cannot run beside the "
            "triggers the first run leaves until the deploy settles; put the changes into one ALTER TABLE"
        )
    with connect(settings) as connection:
        session = Session.of(connection)
        for table in dict.fromkeys(tables):
            if table_key(session, table) is None:
                problems.append(
                    f"{table} has no primary key or unique key of NOT NULL columns: {OSC_TOOL} copies by key; "
                    "give it one in an earlier revision"
                )
            triggers = [trigger["name"] for trigger in table_triggers(session, table)]
            if triggers:
                ours = all(name.startswith(HOLD_PREFIX) for name in triggers)
                problems.append(
                    f"{table} has triggers ({', '.join(triggers)}), beside which pt-online-schema-change cannot run: "
                    + ("settle the earlier deploy first (`invoke db.settle`)" if ours else "drop them first")
                )
    return problems


def check(settings: Settings, target: str = "head", downgrade: bool = False) -> list[DDLStatement]:
    """Raise before anything runs when the rehearsal fails, when the rehearsed schema would fail
    verify, or when a statement would copy a big table; else return the guarded statements."""
    rehearsal = rehearse(settings, target, downgrade)
    if rehearsal.failure:
        raise RehearsalFailed(
            f"a statement fails on an empty copy of the schema, so the deploy would fail there: {rehearsal.failure}"
        )
    if rehearsal.model_differences:
        differences = rehearsal.model_differences
        more = f" (and {len(differences) - 1} more: `invoke db.drift`)" if len(differences) > 1 else ""
        raise RehearsalFailed(
            f"after the deploy the schema would not match backend/database.py, so verify would fail: "
            f"{differences[0]}{more}; fix the models or the schema, or declare tables the application does not "
            "manage in UNMANAGED_TABLES"
        )
    statements = rehearsal.statements
    bad = refused(statements)
    if bad:
        first = bad[0]
        raise DDLGuardRefused(
            f"{first.revision} would copy or lock {first.table} ({first.rows:,} rows > DDL_GUARD_MAX_ROWS="
            f"{settings.ddl_guard_max_rows:,}): {first.sql[:120]}; install percona-toolkit to run it online "
            "(ONLINE_SCHEMA_CHANGE), rewrite it, or add '# ddl-guard: allow-copy <reason>' to the revision"
        )
    problems = online_problems(settings, statements)
    if problems:
        raise DDLGuardRefused(problems[0])
    return statements
