"""The migration lock: a named server lock (GET_LOCK) held on one dedicated connection.

A holder that dies releases the lock with its connection, so there is never a stale
lock to clear by hand. Who holds it (host, pid, OS user, purpose, since when) is written
to the alembic_lock table so that a waiting run can name the holder.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import Settings
from .connection import connect
from .errors import DbOpsError
from .guards import refuse_read_only
from .tool_schema import LOCK, CreateIfMissing

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

# MySQL 5.7+ allows lock names of at most 64 characters.
MAX_LOCK_NAME = 64


class LockTimeout(DbOpsError):
    pass


class LockLost(DbOpsError):
    pass


def lock_name(database: str) -> str:
    name = f"alembic:{database}"
    if len(name) <= MAX_LOCK_NAME:
        return name
    return "alembic:" + hashlib.sha256(database.encode()).hexdigest()[:40]


@dataclass
class HeldLock:
    """The open control connection that owns the lock; also used for journal writes."""

    name: str
    connection: Connection
    connection_id: int

    def ensure_held(self) -> None:
        from sqlalchemy import text

        try:
            owner = self.connection.execute(text("SELECT IS_USED_LOCK(:name)"), {"name": self.name}).scalar()
        except Exception as exc:
            raise LockLost(f"lost the migration lock {self.name}: {exc.__class__.__name__}") from None
        if owner != self.connection_id:
            raise LockLost(f"lost the migration lock {self.name}: its connection was closed")


def describe_holder(connection: Connection, name: str) -> str:
    """Who holds the lock, in words (from alembic_lock, else the server's process list)."""
    from sqlalchemy import text

    owner = connection.execute(text("SELECT IS_USED_LOCK(:name)"), {"name": name}).scalar()
    if owner is None:
        return "nobody now"
    try:
        row = connection.execute(
            text(
                f"SELECT host, pid, os_user, purpose, acquired_at FROM {LOCK.name} "
                "WHERE lock_name = :name AND connection_id = :owner"
            ),
            {"name": name, "owner": owner},
        ).first()
    except Exception:
        row = None
    if row is not None:
        return f"{row.purpose} by {row.os_user} on {row.host}, pid {row.pid}, since {row.acquired_at:%Y-%m-%d %H:%M:%S} UTC"
    process = connection.execute(
        text("SELECT USER, HOST, TIME FROM information_schema.PROCESSLIST WHERE ID = :owner"), {"owner": owner}
    ).first()
    if process is None:
        return f"server connection {owner}"
    return f"server connection {owner} of {process.USER} from {process.HOST}, connected {process.TIME} s"


@contextmanager
def migration_lock(settings: Settings, purpose: str, timeout: int | None = None) -> Iterator[HeldLock]:
    """Hold the database's migration lock for the duration of the block."""
    from sqlalchemy import text

    name = lock_name(settings.database)
    wait = settings.lock_timeout if timeout is None else timeout
    # guard_ddl: the control connection also creates the holding tables and triggers of a deploy.
    with connect(settings, guard_ddl=True) as connection:
        # Autocommit: the control connection's writes must be visible at once and
        # must not hold row locks while migrations run on another connection.
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        refuse_read_only(connection, settings)  # every run that takes the lock is about to write
        acquired = connection.execute(text("SELECT GET_LOCK(:name, :wait)"), {"name": name, "wait": wait}).scalar()
        if acquired != 1:
            holder = describe_holder(connection, name)
            raise LockTimeout(f"the migration lock on {settings.database!r} is held ({holder}); gave up after {wait} s")
        connection_id = connection.execute(text("SELECT CONNECTION_ID()")).scalar_one()
        try:
            connection.execute(CreateIfMissing(LOCK))
            connection.execute(
                text(
                    f"REPLACE INTO {LOCK.name} (lock_name, connection_id, host, pid, os_user, purpose, acquired_at) "
                    "VALUES (:name, :cid, :host, :pid, :user, :purpose, UTC_TIMESTAMP(6))"
                ),
                {
                    "name": name,
                    "cid": connection_id,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "user": getpass.getuser(),
                    "purpose": purpose[:255],
                },
            )
            yield HeldLock(name, connection, connection_id)
        finally:
            try:
                connection.execute(
                    text(f"DELETE FROM {LOCK.name} WHERE lock_name = :name AND connection_id = :cid"),
                    {"name": name, "cid": connection_id},
                )
                connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})
            except Exception:
                pass  # the connection is gone: the server released the lock with it
