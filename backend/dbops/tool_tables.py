"""The tool's own tables, defined once: the lock, journal, deploy history and undo log.

They sit on their own MetaData, apart from the application's models, and are created when
first needed with create_statement(). Together with alembic_version and the holding tables
(HOLD_PREFIX) they are the tables verify, drift, autogenerate, snapshots and the preflight
leave alone; the history tables are left out of backups and survive restores, so the history
of a deploy outlives its rollback.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any

from sqlalchemy import CHAR, BigInteger, Column, Index, Integer, MetaData, String, Table, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateTable, ExecutableDDLElement

from ..config import Settings

metadata = MetaData()
_TABLE_OPTIONS: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}
_MICROSECONDS = mysql.DATETIME(fsp=6)

# Who holds the migration lock (lock.py).
LOCK = Table(
    "alembic_lock",
    metadata,
    Column("lock_name", String(64), primary_key=True),
    Column("connection_id", mysql.BIGINT(unsigned=True), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("os_user", String(128), nullable=False),
    Column("purpose", String(255), nullable=False),
    Column("acquired_at", _MICROSECONDS, nullable=False),
    **_TABLE_OPTIONS,
)

# The start and end of every revision step (journal.py).
JOURNAL = Table(
    "alembic_journal",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("deploy_id", String(36), nullable=True),
    Column("revision", String(64), nullable=False),
    Column("direction", String(16), nullable=False),
    Column("checksum", CHAR(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("os_user", String(128), nullable=False),
    Column("started_at", _MICROSECONDS, nullable=False),
    Column("finished_at", _MICROSECONDS, nullable=True),
    Column("error", Text, nullable=True),
    Index("ix_alembic_journal_revision", "revision"),
    Index("ix_alembic_journal_status", "status"),
    **_TABLE_OPTIONS,
)

# Every deploy, restore and adoption (deploy_history.py).
DEPLOYS = Table(
    "alembic_deploys",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("started_at", _MICROSECONDS, nullable=False),
    Column("finished_at", _MICROSECONDS, nullable=True),
    Column("os_user", String(128), nullable=False),
    Column("host", String(255), nullable=False),
    Column("environment", String(32), nullable=False),
    Column("target", String(64), nullable=False),
    Column("from_revision", String(255), nullable=False),
    Column("to_revision", String(255), nullable=True),
    Column("status", String(32), nullable=False),
    Column("backup_file", String(1024), nullable=True),
    Column("steps", Text, nullable=False),
    Column("message", Text, nullable=True),
    Index("ix_alembic_deploys_started_at", "started_at"),
    **_TABLE_OPTIONS,
)

# What each statement of a deploy changed and where its before-image is (undo/log.py).
UNDO = Table(
    "alembic_undo",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("deploy_id", String(36), nullable=False),
    Column("revision", String(64), nullable=True),
    Column("kind", String(16), nullable=False),
    Column("table_name", String(64), nullable=True),
    Column("hold_table", String(64), nullable=True),
    Column("status", String(16), nullable=False),
    Column("detail", mysql.LONGTEXT, nullable=False),
    Column("created_at", _MICROSECONDS, nullable=False),
    Column("finished_at", _MICROSECONDS, nullable=True),
    Index("ix_alembic_undo_deploy", "deploy_id", "id"),
    Index("ix_alembic_undo_status", "status"),
    **_TABLE_OPTIONS,
)

# Alembic's own table (Alembic creates it).
VERSION_TABLE = "alembic_version"
HISTORY_TABLES = tuple(metadata.tables)
# Holding tables keep what a deploy's destructive statements would destroy until it is settled.
HOLD_PREFIX = "alembic_hold_"


class ToolTableNames(frozenset):
    """The tool's tables: `name in TOOL_TABLES` is also true of every holding table."""

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name) or (isinstance(name, str) and name.startswith(HOLD_PREFIX))


TOOL_TABLES = ToolTableNames({VERSION_TABLE, *HISTORY_TABLES})


class IgnoredTables:
    """Tables verify, drift, autogenerate and the preflight leave alone: the tool's own and
    those UNMANAGED_TABLES declares (names or fnmatch patterns)."""

    def __init__(self, patterns: Sequence[str] = ()) -> None:
        self.patterns = tuple(patterns)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in TOOL_TABLES or any(fnmatchcase(name, p) for p in self.patterns))

    def include_name(self, name: str | None, type_: str, parent_names: dict) -> bool:
        """Alembic's include_name hook."""
        return not (type_ == "table" and name in self)


def ignored_tables(settings: Settings) -> IgnoredTables:
    return IgnoredTables(settings.unmanaged_tables)


class CreateIfMissing(ExecutableDDLElement):
    """CREATE TABLE IF NOT EXISTS of one tool table with its keys inline: one statement, as MySQL
    has no CREATE INDEX IF NOT EXISTS. (Table.create(checkfirst=True) would add each index in a
    statement of its own; a run killed between them would leave the table without its keys.)"""

    inherit_cache = False

    def __init__(self, table: Table) -> None:
        self.table = table


@compiles(CreateIfMissing, "mysql")
def _create_if_missing(element: CreateIfMissing, compiler, **kw) -> str:
    quote = compiler.preparer.quote
    columns, closing, options = compiler.process(CreateTable(element.table, if_not_exists=True), **kw).rpartition("\n)")
    keys = "".join(
        f",\n\tKEY {quote(index.name)} ({', '.join(quote(column.name) for column in index.columns)})"
        for index in sorted(element.table.indexes, key=lambda index: index.name or "")
    )
    return columns + keys + closing + options


def create_statement(table: Table) -> str:
    """The SQL text of CreateIfMissing(table), for a connection without SQLAlchemy (undo/session.py)."""
    return str(CreateIfMissing(table).compile(dialect=mysql.dialect()))
