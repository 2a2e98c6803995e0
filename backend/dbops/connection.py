"""Engines, connections and the translation of driver errors into one-line messages."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import Settings
from . import mdl
from .errors import (
    AccessDenied,
    DbOpsError,
    NotConfigured,
    ServerError,
    ServerUnreachable,
    UnknownDatabase,
    one_line,
)
from .identifiers import validate_identifier

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection, Engine

    from .undo.session import Session

NOT_CONFIGURED_HELP = (
    "no database configured: set MYSQL_HOST, MYSQL_USER, MYSQL_PASSWORD and MYSQL_DATABASE "
    "in config.env (see config.env.example) or start a local one with `invoke sandbox.up`"
)

# MySQL client/server error codes we explain in words.
ER_DBACCESS_DENIED = 1044
ER_ACCESS_DENIED = 1045
ER_BAD_DB = 1049
# MariaDB's answer for a user it does not know; MySQL's for one that must log in another way (a socket).
ER_ACCESS_DENIED_NO_PASSWORD = 1698
CR_CONNECTION_ERROR = 2002
CR_CONN_HOST_ERROR = 2003
CR_UNKNOWN_HOST = 2005
CR_SERVER_GONE = 2006
CR_SERVER_LOST = 2013


def require_configured(settings: Settings) -> None:
    if not settings.is_configured:
        raise NotConfigured(NOT_CONFIGURED_HELP)


def make_url(settings: Settings, database: str | None = "") -> URL:
    """The SQLAlchemy URL, without the password (make_engine passes it apart); database=None
    connects to the server without a default schema."""
    from sqlalchemy.engine import URL

    name = settings.database if database == "" else database
    if name:
        validate_identifier(name)
    return URL.create(
        "mysql+pymysql",
        username=settings.user,
        host=settings.host,
        port=settings.port,
        database=name or None,
        query={"charset": "utf8mb4"},
    )


def make_engine(settings: Settings, database: str | None = "", guard_ddl: bool = False) -> Engine:
    """The engine for these settings, database (None: the server) and guard_ddl, made once per
    process and shared; guard_ddl makes DDL wait for the table's holders, then at most 1 s."""
    ddl_guard = (settings.ddl_retries, settings.ddl_wait_seconds) if guard_ddl else None
    return _engine(make_url(settings, database), settings.password, settings.connect_timeout, ddl_guard)


# Keyed on what an engine depends on, so settings differing elsewhere share one. 32 is more than
# the schemas one process works on (the database, the server, a few throwaway ones); an engine
# holds no connection, so one dropped from the cache costs only its rebuilding.
@functools.lru_cache(maxsize=32)
def _engine(url: URL, password: str, connect_timeout: int, ddl_guard: tuple[int, int] | None) -> Engine:
    """An engine without pooling: every connect() is a new session, as kills, locks held on
    their own session and session state (LOCK TABLES, isolation, sql_mode) need; nor does a
    forked child inherit a pooled connection. ddl_guard: (retries, wait seconds) for DDL."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.pool import NullPool

    from .driver import ToolConnection, ddl_guarded_cursor

    # The password as UTF-8 bytes, as the command-line clients send it: PyMySQL would encode a
    # str as latin-1, failing on other characters and sending other bytes for the rest.
    connect_args: dict = {"connect_timeout": connect_timeout, "password": password.encode()}
    if ddl_guard is not None:
        # The session variable tells the tool's triggers that a write is the tool's, not the application's.
        connect_args["init_command"] = (
            f"SET SESSION lock_wait_timeout = {mdl.LOCK_WAIT_SECONDS}, @alembic_tool_session = 1"
        )
        connect_args["cursorclass"] = ddl_guarded_cursor(*ddl_guard)
    engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
    event.listen(engine, "do_connect", lambda dialect, record, cargs, cparams: ToolConnection(*cargs, **cparams))
    return engine


def _driver_error(exc: BaseException) -> tuple[int | None, str]:
    orig = getattr(exc, "orig", exc)
    args: tuple[object, ...] = getattr(orig, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        return args[0], str(args[1])
    return None, str(orig)


def translate_error(exc: BaseException, settings: Settings, database: str | None = "") -> DbOpsError:
    """Map a PyMySQL/SQLAlchemy error to a one-line DbOpsError without secrets."""
    if isinstance(exc, DbOpsError):
        return exc
    code, message = _driver_error(exc)
    name = settings.database if database == "" else database
    if code == ER_ACCESS_DENIED:
        return AccessDenied(f"access denied for {settings.user}@{settings.host}: check MYSQL_USER and MYSQL_PASSWORD")
    if code == ER_ACCESS_DENIED_NO_PASSWORD:
        return AccessDenied(
            f"access denied for {settings.user}@{settings.host}: no such user logs in with a "
            "password from this host; check MYSQL_USER"
        )
    if code == ER_DBACCESS_DENIED:
        # The server names the database refused, which may not be the connection's (CREATE DATABASE).
        named = re.search(r"to database '(.*)'$", message)
        return AccessDenied(f"user {settings.user} may not use database {(named.group(1) if named else name)!r}")
    if code == ER_BAD_DB:
        return UnknownDatabase(
            f"database {name!r} does not exist on {settings.address}: run `invoke db.init` to create it"
        )
    if code in (CR_CONNECTION_ERROR, CR_CONN_HOST_ERROR, CR_UNKNOWN_HOST):
        return ServerUnreachable(f"cannot reach the MySQL server at {settings.address}: is it running?")
    if code in (CR_SERVER_GONE, CR_SERVER_LOST):
        return ServerUnreachable(f"lost the connection to the MySQL server at {settings.address}")
    line = one_line(message) or type(exc).__name__
    if settings.password:
        line = line.replace(settings.password, "***")
    return ServerError(f"server error {code}: {line}" if code else line)


@contextmanager
def connect(settings: Settings, database: str | None = "", guard_ddl: bool = False) -> Iterator[Connection]:
    """A connection to the configured database (or another one, or None for the server)."""
    from sqlalchemy.exc import DBAPIError

    if database == "":
        require_configured(settings)
    try:
        connection = make_engine(settings, database, guard_ddl).connect()
    except DBAPIError as exc:
        raise translate_error(exc, settings, database) from None
    with connection:
        try:
            yield connection
        except DBAPIError as exc:
            raise translate_error(exc, settings, database) from exc


@contextmanager
def connect_session(settings: Settings) -> Iterator[Session]:
    """A PyMySQL connection to the configured database, as connect()'s but without SQLAlchemy:
    importing and unloading it costs a process about a third of a second, which a backup, whose
    time is the dump's, does not spend."""
    import pymysql

    from .driver import ToolConnection
    from .undo.session import Session

    require_configured(settings)
    try:
        connection = ToolConnection(
            host=settings.host,
            port=settings.port,
            user=settings.user,
            password=settings.password.encode(),  # UTF-8, as in _engine
            database=validate_identifier(settings.database),
            charset="utf8mb4",
            connect_timeout=settings.connect_timeout,
        )
    except pymysql.MySQLError as exc:
        raise translate_error(exc, settings) from None
    try:
        yield Session(connection)
    except pymysql.MySQLError as exc:
        raise translate_error(exc, settings) from exc
    finally:
        with suppress(pymysql.MySQLError):  # already lost: the error above says so
            connection.close()


@dataclass(frozen=True)
class ServerInfo:
    flavour: str  # "mariadb" or "mysql"
    version: str  # e.g. "10.11.19"
    full_version: str  # as the server reports it

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.version.split("."))

    def __str__(self) -> str:
        name = "MariaDB" if self.flavour == "mariadb" else "MySQL"
        return f"{name} {self.version}"


def parse_server_version(full_version: str) -> ServerInfo:
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", full_version)
    version = ".".join(match.groups()) if match else full_version
    flavour = "mariadb" if "mariadb" in full_version.lower() else "mysql"
    return ServerInfo(flavour=flavour, version=version, full_version=full_version)


def server_info(connection: Connection) -> ServerInfo:
    from sqlalchemy import text

    return parse_server_version(connection.execute(text("SELECT VERSION()")).scalar_one())
