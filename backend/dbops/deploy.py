"""`invoke db.deploy`: lock, preflight, backup, upgrade, verify, restart, unlock.

A failure in upgrade or verify puts the database back the way it was (see rollback.py)
and the restart does not run. Every deploy is recorded in alembic_deploys.
"""

from __future__ import annotations

import functools
import getpass
import json
import re
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Settings
from . import migrate
from .check import run_check
from .connection import connect
from .errors import DbOpsError
from .lock import migration_lock
from .migrate import DEPLOYS_TABLE
from .snapshot import row_counts, schema_snapshot

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

Say = Callable[[str], None]

DEPLOYS_TABLE_DDL = f"""
CREATE TABLE IF NOT EXISTS {DEPLOYS_TABLE} (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    started_at DATETIME(6) NOT NULL,
    finished_at DATETIME(6) NULL,
    os_user VARCHAR(128) NOT NULL,
    host VARCHAR(255) NOT NULL,
    environment VARCHAR(32) NOT NULL,
    target VARCHAR(64) NOT NULL,
    from_revision VARCHAR(255) NOT NULL,
    to_revision VARCHAR(255) NULL,
    status VARCHAR(32) NOT NULL,
    backup_file VARCHAR(1024) NULL,
    steps TEXT NOT NULL,
    message TEXT NULL,
    KEY ix_{DEPLOYS_TABLE}_started_at (started_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""

SUCCEEDED, ROLLED_BACK, FAILED, RUNNING = "succeeded", "rolled back", "failed", "running"
ROLLBACK_INCOMPLETE = "rollback incomplete"


class DeployFailed(DbOpsError):
    """The deploy did not succeed; record says what state the database is in."""

    def __init__(self, message: str, record: DeployRecord) -> None:
        super().__init__(message)
        self.record = record


@dataclass
class StepResult:
    name: str
    status: str  # ok, failed, skipped
    seconds: float
    detail: str = ""


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


@dataclass
class DeployPlan:
    steps: tuple[str, ...]
    current: tuple[str, ...]
    target: tuple[str, ...]
    pending: list[tuple[str, str]]  # (revision, message), oldest first
    sql: str


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def make_plan(settings: Settings, target: str = "head") -> DeployPlan:
    """What a deploy would do, read without changing anything."""
    script = migrate.script_directory(settings)
    wanted = migrate.resolve_target(script, target)
    current = migrate.current(settings)
    steps = migrate.pending(script, current, target)
    sql = migrate.offline_sql(settings, ",".join(current) or "base", target) if steps else ""
    return DeployPlan(settings.deploy_steps, current, wanted,
                      [(step.revision, (step.doc or "").strip()) for step in steps], sql)


def _record_start(connection: Connection, record: DeployRecord) -> None:
    from sqlalchemy import text

    connection.execute(text(DEPLOYS_TABLE_DDL))
    connection.execute(
        text(f"INSERT INTO {DEPLOYS_TABLE} (id, started_at, os_user, host, environment, target, from_revision, "
             "status, steps) VALUES (:id, UTC_TIMESTAMP(6), :user, :host, :env, :target, :from_rev, :status, '[]')"),
        {"id": record.id, "user": record.os_user, "host": record.host, "env": record.environment,
         "target": record.target, "from_rev": ",".join(record.from_revision) or "base", "status": record.status},
    )


def _record_update(connection: Connection, record: DeployRecord, final: bool = False) -> None:
    from sqlalchemy import text

    connection.execute(
        text(f"UPDATE {DEPLOYS_TABLE} SET status = :status, to_revision = :to_rev, backup_file = :backup, "
             "steps = :steps, message = :message"
             + (", finished_at = UTC_TIMESTAMP(6)" if final else "") + " WHERE id = :id"),
        {"status": record.status, "to_rev": None if record.to_revision is None else
         (",".join(record.to_revision) or "base"), "backup": record.backup_file,
         "steps": json.dumps([asdict(step) for step in record.steps]), "message": record.message[:4000],
         "id": record.id},
    )


def list_deploys(settings: Settings, limit: int = 20) -> list[dict]:
    """Recorded deploys, newest first."""
    from sqlalchemy import inspect, text

    with connect(settings) as connection:
        if DEPLOYS_TABLE not in inspect(connection).get_table_names():
            return []
        rows = connection.execute(
            text(f"SELECT * FROM {DEPLOYS_TABLE} ORDER BY started_at DESC LIMIT :limit"), {"limit": limit}
        ).mappings()
        return [{**row, "steps": json.loads(row["steps"] or "[]")} for row in rows]


class _StepError(Exception):
    """A step's checks failed (as opposed to raising)."""


def deploy(settings: Settings, target: str = "head", say: Say = print, progress=None) -> DeployRecord:
    """Run the configured steps under the migration lock; raise DeployFailed unless all pass."""
    migrate.validate_revision_argument(target)
    if target not in ("head", "heads", "base") and not re.fullmatch(r"[+-]\d+", target):
        # An unknown revision is bad input: refused before the lock is taken or a deploy recorded.
        migrate.resolve_target(migrate.script_directory(settings), target)
    record = DeployRecord(
        id=str(uuid.uuid4()), database=settings.database, environment=settings.environment, target=target,
        os_user=getpass.getuser(), host=socket.gethostname(), started_at=_now(),
    )
    with migration_lock(settings, f"deploy to {target}") as lock:
        with connect(settings) as connection:
            record.from_revision = list(migrate.current_heads(connection))
            snapshot_before = schema_snapshot(connection, settings.database, exclude=migrate.TOOL_TABLES)
        _record_start(lock.connection, record)
        run = _DeployRun(settings, target, record, lock, say, progress, snapshot_before)
        try:
            run.execute()
        finally:
            record.finished_at = _now()
            try:
                _record_update(lock.connection, record, final=True)
            except Exception:
                pass  # the server is gone; the record keeps status 'running' and says so
    if record.status != SUCCEEDED:
        raise DeployFailed(record.message, record)
    return record


class _DeployRun:
    """One deploy's state as its steps run."""

    def __init__(self, settings, target, record, lock, say, progress, snapshot_before) -> None:
        self.settings, self.target, self.record, self.lock = settings, target, record, lock
        self.say, self.progress = say, progress
        self.snapshot_before = snapshot_before
        self.rows_before: dict[str, int] = {}
        self.backup_path: Path | None = None
        self.schema_before_step = None
        self.failed_step = None

    @functools.cached_property
    def pending(self) -> list[str]:
        script = migrate.script_directory(self.settings)
        return [step.revision for step in migrate.pending(script, tuple(self.record.from_revision), self.target)]

    def execute(self) -> None:
        record = self.record
        for name in self.settings.deploy_steps:
            started = time.monotonic()
            self.say(f"▶ {name}")
            try:
                detail = getattr(self, f"step_{name}")()
            except Exception as exc:
                seconds = time.monotonic() - started
                message = migrate.first_line(exc)
                record.steps.append(StepResult(name, "failed", round(seconds, 3), message))
                self._fail(name, exc, message)
                return
            record.steps.append(StepResult(name, "skipped" if detail.startswith("skipped") else "ok",
                                           round(time.monotonic() - started, 3), detail))
            self.say(f"  {detail}")
            _record_update(self.lock.connection, record)
        record.status = SUCCEEDED
        record.to_revision = list(migrate.current(self.settings))
        applied = len(record.applied)
        record.message = (f"deployed {applied} revision(s); {self.settings.database} is at "
                          f"{', '.join(record.to_revision) or 'base'}")

    # ---- steps: each returns a one-line detail or raises

    def step_preflight(self) -> str:
        from .ddl_guard import check as ddl_check

        report = run_check(self.settings)
        if not report.ok:
            raise _StepError("; ".join(f"{item.name}: {item.detail}" for item in report.failures))
        for statement in ddl_check(self.settings, self.target):
            self.say(f"  ddl: {statement.describe()}")
        return f"checks passed; {len(self.pending)} revision(s) to apply" + (
            f": {', '.join(self.pending)}" if self.pending else "")

    def step_backup(self) -> str:
        from .backup import backup

        if not self.pending:
            return "skipped: nothing to apply"
        result = backup(self.settings, progress=self.progress)
        self.backup_path = Path(result.path)
        self.record.backup_file = str(self.backup_path)
        self.rows_before = dict(result.manifest["tables"])
        return f"{self.backup_path.name}, {result.manifest['bytes'] / 1e6:,.1f} MB"

    def step_upgrade(self) -> str:
        from .converge import reflect_schema

        if not self.rows_before:
            with connect(self.settings) as connection:
                names = [name for name in self.snapshot_before if name not in migrate.TOOL_TABLES]
                self.rows_before = row_counts(connection, names)

        def before_each(step, direction: str) -> None:
            # What the schema was before this step, to undo it if it fails halfway.
            self.schema_before_step = reflect_schema(self.settings)
            self.say(f"  → {step.revision}  {(step.doc or '').strip()}")

        applied = migrate.upgrade(self.settings, self.target, on_step=before_each, lock=self.lock,
                                  deploy_id=self.record.id)
        self.record.applied = applied
        return f"applied {len(applied)} revision(s)" if applied else "skipped: nothing to apply"

    def step_verify(self) -> str:
        from .verify import verify

        report = verify(self.settings, self.target, self.rows_before)
        if not report.ok:
            raise _StepError("; ".join(f"{item.name}: {item.detail}" for item in report.failures))
        return "; ".join(f"{item.name} ok" for item in report.items)

    def step_restart(self) -> str:
        from .restart import restart

        result = restart(self.settings, expected_revision=",".join(migrate.current(self.settings)) or "base")
        return f"restarted in {result.command_seconds:.1f} s; {result.health.describe()}"

    # ---- failure handling

    def _fail(self, step: str, exc: Exception, message: str) -> None:
        record = self.record
        record.to_revision = list(migrate.current(self.settings)) if _reachable(self.settings) else None
        if step not in ("upgrade", "verify"):
            record.status = FAILED
            state = ("unchanged" if step in ("preflight", "backup") else
                     f"at {', '.join(record.to_revision or []) or 'base'} (upgraded; restart failed)")
            record.message = f"{step} failed: {message}; the database is {state}"
            self.say(f"  {record.message}")
            return
        self.say(f"  {step} failed: {message}")
        self.say("↩ rollback")
        from .rollback import rollback

        try:
            outcome = rollback(
                self.settings, self.lock, record.id, tuple(record.from_revision),
                exc if isinstance(exc, migrate.MigrationFailed) else None, self.schema_before_step,
                self.snapshot_before, self.rows_before, self.backup_path, lambda line: self.say(f"  {line}"),
            )
        except Exception as error:
            # The server (or the lock's connection) went away: nothing can be put back now, and
            # the journal still says which revision was left half-applied.
            reachable = _reachable(self.settings)
            record.status = ROLLBACK_INCOMPLETE
            record.to_revision = list(migrate.current(self.settings)) if reachable else None
            reason = migrate.first_line(error) if reachable else "the server cannot be reached"
            record.message = (f"{step} failed: {message}; rollback impossible ({reason}): "
                              f"{self.settings.database} may be half-changed; once the server answers, "
                              "settle it with `invoke db.recover --undo` or `--finish`")
            return
        record.to_revision = list(migrate.current(self.settings))
        before = ", ".join(record.from_revision) or "base"
        if outcome.complete:
            record.status = ROLLED_BACK
            record.message = (f"{step} failed: {message}; rolled back: {self.settings.database} is as before "
                              f"the deploy, at {before}")
        else:
            record.status = ROLLBACK_INCOMPLETE
            backup_hint = (f"restore {self.backup_path} with `invoke db.restore`" if self.backup_path
                           else "no backup was taken")
            record.message = (f"{step} failed: {message}; rollback incomplete, still differing: "
                              f"{', '.join(outcome.remaining)}; {backup_hint}")


def _reachable(settings: Settings) -> bool:
    try:
        migrate.current(settings)
        return True
    except DbOpsError:
        return False
