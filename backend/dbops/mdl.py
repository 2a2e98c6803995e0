"""Metadata locks: DDL that never makes the application wait more than a second.

A DDL statement needs an exclusive metadata lock on its table; while it waits for one, every
new query of the application on that table queues behind it. So before each attempt the tool
looks for sessions that hold the table (MySQL's performance_schema.metadata_locks, MariaDB's
METADATA_LOCK_INFO when the plugin is loaded, else transactions open for over a second) and
waits for them without queuing; then it issues the statement with a lock wait of one second,
and on a timeout backs off and tries again. When it gives up, the error names the holders.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from .sql import SQLSyntaxError, Statement, first_keyword
from .tool_tables import TOOL_TABLES

logger = logging.getLogger(__name__)

# The lock wait of every DDL statement the tool issues, in seconds: the longest the
# application can be queued behind it.
LOCK_WAIT_SECONDS = 1
ER_LOCK_WAIT_TIMEOUT = 1205
POLL_SECONDS = 0.1
_DDL = frozenset({"ALTER", "CREATE", "DROP", "RENAME", "TRUNCATE", "OPTIMIZE", "LOCK"})
# Transactions younger than this are the application's short ones: the lock wait covers them.
LONG_TRANSACTION_SECONDS = 1

_DESCRIBE = (
    "SELECT p.ID, p.USER, p.TIME, p.COMMAND, LEFT(COALESCE(p.INFO, ''), 60), t.trx_started "
    "FROM information_schema.PROCESSLIST p LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID "
    "WHERE p.ID IN ({ids}) ORDER BY p.TIME DESC LIMIT 3"
)
_LONG_TRANSACTIONS = (
    "SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id <> CONNECTION_ID() "
    f"AND trx_started < NOW() - INTERVAL {LONG_TRANSACTION_SECONDS} SECOND"
)
_MYSQL_HOLDERS = (
    "SELECT DISTINCT t.PROCESSLIST_ID FROM performance_schema.metadata_locks m "
    "JOIN performance_schema.threads t ON t.THREAD_ID = m.OWNER_THREAD_ID "
    "WHERE m.OBJECT_TYPE = 'TABLE' AND m.LOCK_STATUS = 'GRANTED' AND m.OBJECT_SCHEMA = %s "
    "AND m.OBJECT_NAME IN ({names}) AND t.PROCESSLIST_ID <> CONNECTION_ID()"
)
_MDL_INSTRUMENTED = (
    "SELECT 1 FROM performance_schema.setup_instruments WHERE @@performance_schema = 1 "
    "AND NAME = 'wait/lock/metadata/sql/mdl' AND ENABLED = 'YES'"
)
_MARIADB_HOLDERS = (
    "SELECT DISTINCT THREAD_ID FROM information_schema.METADATA_LOCK_INFO WHERE TABLE_SCHEMA = %s "
    "AND TABLE_NAME IN ({names}) AND THREAD_ID <> CONNECTION_ID()"
)


def is_ddl(sql: str) -> bool:
    return first_keyword(sql) in _DDL


def ddl_tables(sql: str) -> list[str]:
    """The tables a DDL statement needs an exclusive metadata lock on (best effort; [] when unknown)."""
    try:
        statement = Statement.parse(sql)
    except SQLSyntaxError:
        return []
    tokens = statement.tokens
    words = statement.words(4)
    names: list[str] = []
    skip = 1 if words[0] == "LOCK TABLES" else 2
    if words[0] == "LOCK TABLES" or words[:2] in (
        ("ALTER", "TABLE"),
        ("DROP", "TABLE"),
        ("RENAME", "TABLE"),
        ("TRUNCATE", "TABLE"),
    ):
        names = [
            token.text
            for token in tokens[skip:]
            if token.is_name
            and token.depth == 0
            and token.word not in ("IF", "EXISTS", "TO", "WRITE", "READ", "LOCAL", "AS", "LOW_PRIORITY")
        ]
        if words[0] == "ALTER":
            names = names[:1]
    elif "INDEX" in words or "TRIGGER" in words:  # CREATE/DROP INDEX ... ON t, CREATE TRIGGER ... ON t
        on = statement.find("ON")
        if on is not None and on + 1 < len(tokens) and tokens[on + 1].is_name:
            names = [tokens[on + 1].text]
    return [name for name in names if name.upper() not in ("TABLE", "TABLES")]


def _query_ids(cursor, sql: str, args: Iterable = ()) -> set[int] | None:
    try:
        cursor.execute(sql, tuple(args))
        return {int(row[0]) for row in cursor.fetchall() if row[0] is not None}
    except Exception:
        return None  # no such table, or no privilege to read it


def holders(cursor, database: str, tables: list[str]) -> set[int]:
    """Sessions that hold a metadata lock on any of the tables (or, when the server cannot
    say, that have a transaction open for over a second)."""
    names = ", ".join(["%s"] * len(tables))
    if _query_ids(cursor, _MDL_INSTRUMENTED):  # performance_schema on, metadata locks instrumented (MySQL's default)
        found = _query_ids(cursor, _MYSQL_HOLDERS.format(names=names), [database, *tables])
        if found is not None:
            return found
    found = _query_ids(cursor, _MARIADB_HOLDERS.format(names=names), [database, *tables])
    if found is not None:
        return found
    return _query_ids(cursor, _LONG_TRANSACTIONS) or set()


def describe(cursor, ids: set[int]) -> str:
    if not ids:
        return "no session visible to this user"
    try:
        cursor.execute(_DESCRIBE.format(ids=", ".join(str(int(pid)) for pid in sorted(ids))))
        rows = cursor.fetchall()
    except Exception:
        return ", ".join(f"session {pid}" for pid in sorted(ids))
    return "; ".join(
        f"session {pid} of {user} ({command} for {seconds} s{', open transaction' if started else ''}"
        f"{': ' + info if info else ''})"
        for pid, user, seconds, command, info, started in rows
    ) or ", ".join(f"session {pid}" for pid in sorted(ids))


class MetadataLockTimeout(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(ER_LOCK_WAIT_TIMEOUT, message)


def run_ddl(cursor, execute: Callable[[], object], sql: str, database: str, retries: int, wait_seconds: float):
    """Run execute() (a DDL statement on cursor's connection) the way the module docstring says.

    Waiting is logged (logger backend.dbops.mdl, level WARNING): the command line shows it."""
    import pymysql

    # Nobody else uses the tool's own tables: nobody to wait for there.
    tables = [name for name in ddl_tables(sql) if name not in TOOL_TABLES]
    for attempt in range(retries + 1):
        deadline = time.monotonic() + wait_seconds
        waited = False
        # Without a known table (CREATE TABLE, DROP TRIGGER) there is nobody to wait for.
        while tables and (found := holders(cursor, database, tables)) and time.monotonic() < deadline:
            if not waited:
                logger.warning(
                    "waiting for %s to finish before: %s", describe(cursor, found), " ".join(sql.split())[:80]
                )
            waited = True
            time.sleep(POLL_SECONDS)
        try:
            return execute()
        except pymysql.err.OperationalError as exc:
            if exc.args[0] != ER_LOCK_WAIT_TIMEOUT:
                raise
            if attempt == retries:
                raise pymysql.err.OperationalError(
                    ER_LOCK_WAIT_TIMEOUT,
                    f"DDL waited for a metadata lock {retries + 1} times ({LOCK_WAIT_SECONDS} s each); held by: "
                    f"{describe(cursor, holders(cursor, database, tables) if tables else set())}",
                ) from exc
            time.sleep(min(0.25 * 2**attempt, 5.0))
