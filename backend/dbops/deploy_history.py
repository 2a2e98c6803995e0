"""The deploy history (`invoke db.deploys`): every deploy, downgrade, restore and adoption,
one row each in alembic_deploys (tool_schema.DEPLOYS), written as it runs.

A run records itself 'running' before it changes anything and updates its row after each
step, so that one killed halfway is found by `db.check` and finished by `db.recover`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from ..config import Settings
from .connection import connect
from .tool_schema import DEPLOYS, CreateIfMissing
from .undo import log
from .undo.session import Session

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from .lock import HeldLock

SUCCEEDED, ROLLED_BACK, FAILED, RUNNING = "succeeded", "rolled back", "failed", "running"
ROLLBACK_INCOMPLETE, ROLLING_BACK = "rollback incomplete", "rolling back"
# A restore is recorded beside the deploys, with this target; a downgrade with this prefix.
RESTORE_TARGET = "restore"
DOWNGRADE_PREFIX = "down:"
FINISHED = (SUCCEEDED, ROLLED_BACK, FAILED, ROLLBACK_INCOMPLETE)


@dataclass
class StepResult:
    name: str
    status: str  # ok, failed, skipped
    seconds: float
    detail: str = ""
    hosts: list[dict] = field(default_factory=list)  # the restart step's per-host outcomes (APP_HOSTS)


@dataclass
class DeployRecord:
    id: str
    database: str
    environment: str
    target: str
    os_user: str
    host: str
    started_at: str
    from_revision: list[str] = field(default_factory=list)
    to_revision: list[str] | None = None
    status: str = RUNNING
    backup_file: str | None = None
    steps: list[StepResult] = field(default_factory=list)
    message: str = ""
    finished_at: str | None = None
    applied: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def record_start(connection: Connection, record: DeployRecord) -> None:
    from sqlalchemy import text

    connection.execute(CreateIfMissing(DEPLOYS))
    connection.execute(
        text(
            f"INSERT INTO {DEPLOYS.name} (id, started_at, os_user, host, environment, target, from_revision, "
            "status, backup_file, steps) VALUES (:id, UTC_TIMESTAMP(6), :user, :host, :env, :target, :from_rev, "
            ":status, :backup, '[]')"
        ),
        {
            "id": record.id,
            "user": record.os_user,
            "host": record.host,
            "env": record.environment,
            "target": record.target,
            "from_rev": ",".join(record.from_revision) or "base",
            "status": record.status,
            "backup": record.backup_file,
        },
    )


def record_update(connection: Connection, record: DeployRecord, final: bool = False) -> None:
    from sqlalchemy import text

    connection.execute(
        text(
            f"UPDATE {DEPLOYS.name} SET status = :status, to_revision = :to_rev, backup_file = :backup, "
            "steps = :steps, message = :message"
            + (", finished_at = UTC_TIMESTAMP(6)" if final else "")
            + " WHERE id = :id"
        ),
        {
            "status": record.status,
            "to_rev": None if record.to_revision is None else (",".join(record.to_revision) or "base"),
            "backup": record.backup_file,
            "steps": json.dumps([asdict(step) for step in record.steps]),
            "message": record.message[:4000],
            "id": record.id,
        },
    )


def list_deploys(settings: Settings, limit: int = 20) -> list[dict]:
    """Recorded deploys, newest first."""
    from sqlalchemy import inspect, text

    with connect(settings) as connection:
        if DEPLOYS.name not in inspect(connection).get_table_names():
            return []
        rows = connection.execute(
            text(f"SELECT * FROM {DEPLOYS.name} ORDER BY started_at DESC LIMIT :limit"), {"limit": limit}
        ).mappings()
        return [{**row, "steps": json.loads(row["steps"] or "[]")} for row in rows]


def deploy_lines(row: dict) -> list[str]:
    """`db.deploys`'s lines for one row of list_deploys: when, who, where, status and timings;
    the backup and, unless it succeeded, the message."""
    mark = "✅" if row["status"] == "succeeded" else "⏳" if row["status"] == "running" else "❌"
    timings = " ".join(f"{step['name']}={step['seconds']:.1f}s" for step in row["steps"])
    lines = [
        f"{mark} {row['started_at']:%Y-%m-%d %H:%M:%S} {row['os_user']}@{row['host']} [{row['environment']}] "
        f"{row['from_revision']} -> {row['to_revision'] or '?'} {row['status']}  {timings}"
    ]
    if row["backup_file"]:
        lines.append(f"     backup: {row['backup_file']}")
    if row["status"] != "succeeded" and row["message"]:
        lines.append(f"     {row['message']}")
    return lines


def _revisions(value: str) -> list[str]:
    """Read back the column's `",".join(revisions) or "base"`."""
    return [] if value == "base" else value.split(",")


def load_records(
    connection: Connection, statuses: tuple[str, ...] = (), finished_before_hours: float | None = None
) -> list[DeployRecord]:
    """Recorded deploys and restores, oldest first, filtered by status or finish time."""
    from sqlalchemy import bindparam, inspect, text

    if DEPLOYS.name not in inspect(connection).get_table_names():
        return []
    where: list[str] = []
    params: dict[str, object] = {}
    if statuses:
        where.append("status IN :statuses")
        params["statuses"] = list(statuses)
    if finished_before_hours is not None:
        where.append("finished_at <= UTC_TIMESTAMP(6) - INTERVAL :seconds SECOND")
        params["seconds"] = int(finished_before_hours * 3600)
    query = text(
        f"SELECT id, environment, target, os_user, host, started_at, from_revision, to_revision, status, "
        f"backup_file, steps, message, finished_at FROM {DEPLOYS.name}"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY started_at"
    )
    if statuses:
        query = query.bindparams(bindparam("statuses", expanding=True))
    return [
        DeployRecord(
            id=row.id,
            database="",
            environment=row.environment,
            target=row.target,
            os_user=row.os_user,
            host=row.host,
            started_at=f"{row.started_at:%Y-%m-%d %H:%M:%S}",
            from_revision=_revisions(row.from_revision),
            to_revision=None if row.to_revision is None else _revisions(row.to_revision),
            status=row.status,
            backup_file=row.backup_file,
            steps=[StepResult(**step) for step in json.loads(row.steps or "[]")],
            message=row.message or "",
            finished_at=None if row.finished_at is None else f"{row.finished_at:%Y-%m-%d %H:%M:%S}",
        )
        for row in connection.execute(query, params)
    ]


def close_abandoned(lock: HeldLock, own_deploy: str) -> None:
    """Deploys a killed run left 'running' before they changed anything: recorded as failed."""
    changed = {entry.deploy_id for entry in log.entries(Session.of(lock.connection))}
    for record in load_records(lock.connection, (RUNNING,)):
        if record.id != own_deploy and record.id not in changed and record.target != RESTORE_TARGET:
            record.status = FAILED
            record.message = "interrupted before it changed the database"
            record_update(lock.connection, record, final=True)
