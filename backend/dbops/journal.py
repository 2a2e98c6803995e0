"""The migration journal: the start and end of every revision step, with its file's checksum.

MySQL DDL commits statement by statement, so a revision that fails (or whose process is
killed) halfway leaves a partial schema and alembic_version unchanged. Alembic cannot see
that; a journal row left 'running' or 'failed' can.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .tool_schema import JOURNAL, CreateIfMissing

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

RUNNING, APPLIED, FAILED = "running", "applied", "failed"
UNDONE = "undone"  # a failed step whose changes a rollback reversed
RESOLVED = "resolved"  # a failed step the user settled with db.stamp
# The direction of a revision recorded by db.adopt: not run, its schema found in place.
ADOPTED = "adopt"


def file_checksum(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def ensure_journal(connection: Connection) -> None:
    connection.execute(CreateIfMissing(JOURNAL))


def start(connection: Connection, revision: str, direction: str, checksum: str, deploy_id: str | None) -> int:
    from sqlalchemy import text

    result = connection.execute(
        text(
            f"INSERT INTO {JOURNAL.name} (deploy_id, revision, direction, checksum, status, host, pid, os_user, "
            "started_at) VALUES (:deploy, :rev, :dir, :sum, :status, :host, :pid, :user, UTC_TIMESTAMP(6))"
        ),
        {
            "deploy": deploy_id,
            "rev": revision,
            "dir": direction,
            "sum": checksum,
            "status": RUNNING,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "user": getpass.getuser(),
        },
    )
    return int(result.lastrowid)


def finish(connection: Connection, entry_id: int, status: str, error: str | None = None) -> None:
    from sqlalchemy import text

    connection.execute(
        text(
            f"UPDATE {JOURNAL.name} SET status = :status, finished_at = UTC_TIMESTAMP(6), error = :error WHERE id = :id"
        ),
        {"status": status, "error": (error or None) and error[:2000], "id": entry_id},
    )


def record_adopted(connection: Connection, revision: str, checksum: str) -> None:
    """A revision db.adopt found in place, recorded as applied in one statement (never left 'running')."""
    from sqlalchemy import text

    connection.execute(
        text(
            f"INSERT INTO {JOURNAL.name} (revision, direction, checksum, status, host, pid, os_user, started_at, "
            "finished_at) VALUES (:rev, :dir, :sum, :status, :host, :pid, :user, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))"
        ),
        {
            "rev": revision,
            "dir": ADOPTED,
            "sum": checksum,
            "status": APPLIED,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "user": getpass.getuser(),
        },
    )


@dataclass(frozen=True)
class JournalEntry:
    id: int
    deploy_id: str | None
    revision: str
    direction: str
    checksum: str
    status: str
    host: str
    pid: int
    started_at: datetime
    finished_at: datetime | None
    error: str | None

    def describe(self) -> str:
        where = f"{self.host} pid {self.pid}"
        return f"{self.direction} {self.revision} started {self.started_at:%Y-%m-%d %H:%M:%S} UTC on {where}: {self.status}"


def unfinished(connection: Connection) -> list[JournalEntry]:
    """Steps left running (process died) or failed and not undone: half-applied revisions."""
    from sqlalchemy import inspect, text

    if JOURNAL.name not in inspect(connection).get_table_names():
        return []
    rows = connection.execute(
        text(
            f"SELECT id, deploy_id, revision, direction, checksum, status, host, pid, started_at, finished_at, error "
            f"FROM {JOURNAL.name} WHERE status IN (:running, :failed) ORDER BY id"
        ),
        {"running": RUNNING, "failed": FAILED},
    )
    return [JournalEntry(*row) for row in rows]


def applied_checksums(connection: Connection) -> dict[str, str]:
    """The checksum recorded when each revision was last applied (or adopted)."""
    from sqlalchemy import inspect, text

    if JOURNAL.name not in inspect(connection).get_table_names():
        return {}
    rows = connection.execute(
        text(
            f"SELECT revision, checksum FROM {JOURNAL.name} WHERE status = :applied "
            "AND direction IN ('upgrade', :adopted) ORDER BY id"
        ),
        {"applied": APPLIED, "adopted": ADOPTED},
    )
    return {revision: checksum for revision, checksum in rows}
