"""The PyMySQL connection and cursor classes behind the engines (connection.py imports this
module when it makes an engine, so that importing the project does not import PyMySQL)."""

from __future__ import annotations

import functools
import ssl
from typing import Any

import pymysql.connections
import pymysql.cursors

from . import mdl
from .sql import first_keyword


@functools.cache
def _preferred_tls_context() -> ssl.SSLContext:
    """What PyMySQL builds for TLS when the server offers it (no CA, so no verification), built once."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class ToolConnection(pymysql.connections.Connection):
    # Between the session's LOCK TABLES and UNLOCK TABLES (set by DDLGuardedCursor).
    tool_tables_locked = False

    # PyMySQL builds a fresh default context for every connection, loading the system's CA
    # store (about 25 ms each, a good part of a deploy's own time) for a context that never
    # verifies. Its public way to pass a context (ssl=) makes TLS required, which a server
    # without TLS would refuse; so this private method, which PyMySQL calls with {} in
    # "preferred" mode. TLS options given explicitly still take PyMySQL's way.
    def _create_ssl_ctx(self, sslp: dict[str, Any]) -> ssl.SSLContext:
        # A private method of PyMySQL's, absent from its type stubs.
        return super()._create_ssl_ctx(sslp) if sslp else _preferred_tls_context()  # type: ignore[misc]


def ddl_guarded_cursor(retries: int, wait_seconds: int) -> type[pymysql.cursors.Cursor]:
    """A PyMySQL cursor that runs each DDL statement as mdl.run_ddl says: waits for the sessions
    holding its table without queuing the application, then at most a 1 s lock wait, retried.
    Under LOCK TABLES the session already holds its tables: statements then run at once."""

    class DDLGuardedCursor(pymysql.cursors.Cursor):
        connection: ToolConnection  # the engines connect with ToolConnection (connection.py)

        def execute(self, query: Any, args: Any = None) -> int:
            sql = query if isinstance(query, str) else str(query)
            connection = self.connection
            keyword = first_keyword(sql)
            if keyword == "UNLOCK":
                connection.tool_tables_locked = False
            if not mdl.is_ddl(sql) or connection.tool_tables_locked:
                return super().execute(query, args)
            database = connection.db.decode() if isinstance(connection.db, bytes) else connection.db or ""
            with pymysql.cursors.Cursor(connection) as probe:
                result = mdl.run_ddl(
                    probe,
                    lambda: super(DDLGuardedCursor, self).execute(query, args),
                    sql,
                    database,
                    retries,
                    wait_seconds,
                )
            if keyword == "LOCK":
                connection.tool_tables_locked = True
            return result

    return DDLGuardedCursor
