"""The columns and keys of the tool's own tables (their names are in tool_tables.py), on their
own MetaData apart from the application's models, created when first needed with
create_statement()."""

from __future__ import annotations

from typing import Any

from sqlalchemy import CHAR, BigInteger, Column, Index, Integer, MetaData, String, Table, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateTable, ExecutableDDLElement

from .tool_tables import DEPLOYS_TABLE, JOURNAL_TABLE, LOCK_TABLE, UNDO_TABLE

metadata = MetaData()
_TABLE_OPTIONS: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}
_MICROSECONDS = mysql.DATETIME(fsp=6)

# Who holds the migration lock (lock.py).
LOCK = Table(
    LOCK_TABLE,
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
    JOURNAL_TABLE,
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
    DEPLOYS_TABLE,
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
    UNDO_TABLE,
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
