"""Scratch databases: where the tool builds throwaway schemas on the configured server.

Autogenerate, drift, recover and lint build the schema of a revision there; the DDL probe
copies tables there to try an ALTER. By default each use creates a database of its own
(`<database>_autogen_<hex>`, `<database>_rehearsal_<hex>`) and drops it afterwards, holding a
named lock on it meanwhile: one a killed run left behind is dropped by the next. An account
that may not create databases names one with SCRATCH_DATABASE instead: the tool empties it
before and after each use, holds a named lock on it meanwhile so that two runs never share
it at once, and refuses the managed database itself, a system schema, or a database that
holds the tool's deploy history (a managed database, not a scratch one).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from typing import TYPE_CHECKING

from ..config import Settings
from . import admin
from .connection import connect, require_configured
from .errors import AccessDenied, DbOpsError, Refused
from .identifiers import SYSTEM_SCHEMAS, quote_identifier
from .lock import MAX_LOCK_NAME
from .privileges import SCHEMA_PRIVILEGES, like_escape
from .tool_tables import HISTORY_TABLES

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

# What the tool builds in created scratch databases (part of their names).
PURPOSES = ("autogen", "rehearsal")


class ScratchUnavailable(DbOpsError):
    """No scratch database can be had: the account may not create one, or the configured one is busy."""


def generated_name(settings: Settings, purpose: str, suffix: str | None = None) -> str:
    """The name of a database created for one use, e.g. emotional_chat_autogen_1a2b3c4d."""
    return f"{settings.database[:40]}_{purpose}_{suffix or secrets.token_hex(4)}"


def refusal(settings: Settings) -> str | None:
    """Why SCRATCH_DATABASE may not be emptied and reused, from its name alone (None: it may)."""
    name = settings.scratch_database
    quote_identifier(name, "SCRATCH_DATABASE")
    if name == settings.database:
        return f"SCRATCH_DATABASE {name!r} is the managed database itself: name a database the tool may empty"
    if name.lower() in SYSTEM_SCHEMAS:
        return f"SCRATCH_DATABASE {name!r} is a system schema of the server: name a database the tool may empty"
    return None


def unusable(connection: Connection, settings: Settings) -> str | None:
    """Why SCRATCH_DATABASE cannot be used now (None: it can): its name, or it is missing, or it is managed."""
    from sqlalchemy import bindparam, text

    reason = refusal(settings)
    if reason:
        return reason
    name = settings.scratch_database
    if (
        connection.execute(
            text("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :name"), {"name": name}
        ).first()
        is None
    ):
        return (
            f"SCRATCH_DATABASE {name!r} does not exist on {settings.address}: create it and grant "
            f"{settings.user} the privileges `invoke db.check` names on it"
        )
    held = (
        connection.execute(
            text(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = :name AND TABLE_NAME IN :tables "
                "ORDER BY TABLE_NAME"
            ).bindparams(bindparam("tables", expanding=True)),
            {"name": name, "tables": list(HISTORY_TABLES)},
        )
        .scalars()
        .all()
    )
    if held:
        return (
            f"SCRATCH_DATABASE {name!r} holds {', '.join(held)}: it is a database the tool manages, not a scratch one"
        )
    return None


def _lock_name(name: str) -> str:
    lock = f"alembic-scratch:{name}"
    return lock if len(lock) <= MAX_LOCK_NAME else "alembic-scratch:" + hashlib.sha256(name.encode()).hexdigest()[:40]


def _empty(scratch: Settings) -> None:
    """Drop every table, view, routine and event of the scratch database."""
    from sqlalchemy import text

    admin.empty_database(scratch)
    with connect(scratch) as connection:
        routines = connection.execute(
            text("SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = :name"),
            {"name": scratch.database},
        ).all()
        events = connection.execute(
            text("SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = :name"),
            {"name": scratch.database},
        ).all()
        for kind, name in routines:
            connection.exec_driver_sql(f"DROP {kind} IF EXISTS {quote_identifier(name, 'routine name')}")
        for (name,) in events:
            connection.exec_driver_sql(f"DROP EVENT IF EXISTS {quote_identifier(name, 'event name')}")


@contextmanager
def _holding_lock(settings: Settings, name: str, wait: int) -> Iterator[Connection | None]:
    """A server-level connection holding the named lock on scratch database name for the block; None
    when another run holds it beyond wait seconds. The server releases it if this process dies."""
    from sqlalchemy import text

    lock = _lock_name(name)
    with connect(settings, database=None) as control:
        control = control.execution_options(isolation_level="AUTOCOMMIT")
        if control.execute(text("SELECT GET_LOCK(:name, :wait)"), {"name": lock, "wait": wait}).scalar() != 1:
            yield None
            return
        try:
            yield control
        finally:
            with suppress(Exception):  # the connection is gone: the server released the lock with it
                control.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": lock})


@contextmanager
def _configured(settings: Settings) -> Iterator[Settings]:
    reason = refusal(settings)
    if reason:
        raise Refused(reason)
    name = settings.scratch_database
    scratch = replace(settings, database=name)
    with _holding_lock(settings, name, settings.lock_timeout) as control:
        if control is None:
            raise ScratchUnavailable(
                f"SCRATCH_DATABASE {name!r} is in use by another run; gave up after {settings.lock_timeout} s"
            )
        reason = unusable(control, settings)
        if reason:
            raise Refused(reason)
        _empty(scratch)
        try:
            yield scratch
        finally:
            _empty(scratch)


def _drop_abandoned(control: Connection, settings: Settings) -> None:
    """Drop the scratch databases of this database whose run died (SIGKILL) before it dropped them:
    a created scratch database is named by generated_name and locked by its run for its whole life."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    generated = re.compile(re.escape(settings.database[:40]) + f"_({'|'.join(PURPOSES)})_[0-9a-f]{{8}}")
    names = (
        control.execute(
            text("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE :p"),
            {"p": like_escape(settings.database[:40] + "_") + "%"},
        )
        .scalars()
        .all()
    )
    for name in names:
        if (
            generated.fullmatch(name)
            and control.execute(text("SELECT IS_FREE_LOCK(:n)"), {"n": _lock_name(name)}).scalar() == 1
        ):
            with suppress(DBAPIError):  # gone meanwhile, or not ours to drop
                control.exec_driver_sql(f"DROP DATABASE IF EXISTS {quote_identifier(name)}")


@contextmanager
def _created(settings: Settings, purpose: str) -> Iterator[Settings]:
    scratch = replace(settings, database=generated_name(settings, purpose))
    with _holding_lock(settings, scratch.database, 0) as control:
        if control is None:  # a new random name: taken only by a collision, or GET_LOCK failed
            raise ScratchUnavailable(f"could not lock the new scratch database name {scratch.database!r}")
        _drop_abandoned(control, settings)
        try:
            admin.create_database(scratch, like=settings.database)
        except AccessDenied:
            raise ScratchUnavailable(
                f"user {settings.user} may not create the scratch database {scratch.database!r}: grant it "
                f"{', '.join(SCHEMA_PRIVILEGES)} ON `{like_escape(settings.database[:40] + '_')}%`.*, or set "
                "SCRATCH_DATABASE to a database it may empty"
            ) from None
        try:
            yield scratch
        finally:
            admin.drop_database(scratch)


@contextmanager
def scratch_schema(settings: Settings, purpose: str) -> Iterator[Settings]:
    """Settings of an empty database for a throwaway schema, emptied or dropped when the block ends.

    purpose names a created database (autogen, rehearsal); SCRATCH_DATABASE, when set, is used instead.
    """
    require_configured(settings)
    with _configured(settings) if settings.scratch_database else _created(settings, purpose) as scratch:
        yield scratch
