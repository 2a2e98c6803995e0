"""`invoke db.deploy`: lock, preflight, backup, upgrade, verify, restart, unlock.

During the upgrade every statement is made undoable before it runs (undo/capture.py). A
failure in upgrade or verify undoes exactly what the deploy did (rollback.py), keeping the
application's writes, and the restart does not run. Every deploy is recorded in
alembic_deploys; what it kept aside stays until it is settled (db.settle, or after
HOLD_RETENTION_HOURS).
"""

from __future__ import annotations

import functools
import getpass
import json
import os
import re
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..config import Settings
from . import alembic_setup, migrate, offline_sql, revision_graph
from .backup import Progress, backup, data_and_index_bytes
from .backup_files import format_size
from .check import run_check
from .connection import connect
from .ddl_guard import ONLINE, DDLStatement, inspect_pending
from .ddl_guard import check as ddl_check
from .deploy_history import (
    DOWNGRADE_PREFIX,
    FAILED,
    FINISHED,
    ROLLBACK_INCOMPLETE,
    ROLLED_BACK,
    ROLLING_BACK,
    SUCCEEDED,
    DeployRecord,
    StepResult,
    close_abandoned,
    load_records,
    record_start,
    record_update,
)
from .errors import DbOpsError, first_line
from .lock import HeldLock, migration_lock
from .protection import ProtectionPlan
from .protection import plan as protection_plan
from .restart import restart
from .rollback import rollback, settle
from .undo import log
from .undo.capture import DeployCapture
from .undo.session import Session
from .verify import verify

Say = Callable[[str], None]


class DeployFailed(DbOpsError):
    """The deploy did not succeed; record says what state the database is in."""

    def __init__(self, message: str, record: DeployRecord) -> None:
        super().__init__(message)
        self.record = record


@dataclass
class DeployPlan:
    steps: tuple[str, ...]
    current: tuple[str, ...]
    target: tuple[str, ...]
    pending: list[tuple[str, str]]  # (revision, message), oldest first
    sql: str
    protection: ProtectionPlan
    full_dump_bytes: int | None  # None: no full dump
    ddl: list[DDLStatement]  # the guarded statements, with how each runs

    def backup_lines(self) -> list[str]:
        """What the backup step will keep, and how big it is."""
        dump = (
            f"a full dump (DEPLOY_FULL_BACKUP), about {format_size(self.full_dump_bytes)} of data and indexes"
            if self.full_dump_bytes is not None
            else "no dump"
        )
        return [f"  backup: {dump}; {self.protection.summary()}", *(f"    {line}" for line in self.protection.lines())]

    def text(self, where: str) -> str:
        """`db.deploy --dry-run`'s output: the steps, the revisions and the SQL; where names the database."""
        lines = [
            f"Plan for {where}: {' → '.join(self.steps)}",
            f"  from {', '.join(self.current) or 'base'} to {', '.join(self.target) or 'base'}",
            *(f"  → {revision_id}  {message}" for revision_id, message in self.pending),
            *(f"  ddl: {statement.describe()}" for statement in self.ddl),
            *(self.backup_lines() if self.pending and "backup" in self.steps else []),
        ]
        sql = f"-- SQL the upgrade would run:\n{self.sql}" if self.sql else ""
        done = f"✅ dry run: {len(self.pending)} revision(s) to apply; nothing changed\n"
        return "\n".join(lines) + "\n" + sql + done


def report_path(path: str | Path) -> Path:
    """Where `--report` writes the deploy record, checked before the deploy starts: its folder
    exists and is writable, and it is not itself a folder."""
    target = Path(path).expanduser().absolute()
    if not target.parent.is_dir():
        raise DbOpsError(f"cannot write the report to {path}: folder {target.parent} does not exist")
    if target.is_dir():
        raise DbOpsError(f"cannot write the report to {path}: it is a folder")
    if not os.access(target if target.exists() else target.parent, os.W_OK):
        raise DbOpsError(f"cannot write the report to {path}: not writable")
    return target


def write_report(path: Path, record: DeployRecord) -> None:
    """The deploy record as JSON, for CI."""
    try:
        path.write_text(json.dumps(record.to_dict(), indent=2, default=str) + "\n")
    except OSError as exc:
        raise DbOpsError(f"cannot write the report to {path}: {exc.strerror or exc}") from None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def make_plan(settings: Settings, target: str = "head") -> DeployPlan:
    """What a deploy would do, read without changing anything."""
    script = alembic_setup.script_directory(settings)
    wanted = revision_graph.resolve_target(script, target)
    current = alembic_setup.current(settings)
    steps = revision_graph.pending(script, current, target)
    sql = offline_sql.offline_sql(settings, ",".join(current) or "base", target) if steps else ""
    ddl = inspect_pending(settings, target) if steps else []
    protection = protection_plan(settings, target, online=_online(ddl)) if steps else ProtectionPlan()
    full_dump_bytes = None
    if steps and settings.deploy_full_backup:
        with connect(settings) as connection:
            full_dump_bytes = sum(data_and_index_bytes(Session.of(connection)))
    return DeployPlan(
        settings.deploy_steps,
        current,
        wanted,
        [(step.revision, (step.doc or "").strip()) for step in steps],
        sql,
        protection,
        full_dump_bytes,
        ddl,
    )


def _online(statements: list[DDLStatement]) -> set[tuple[str, str]]:
    return {(statement.revision, statement.table) for statement in statements if statement.route == ONLINE}


def settle_deploys(
    settings: Settings, lock, older_than_hours: float | None = None, deploy_id: str | None = None
) -> list[tuple[str, list[str]]]:
    """Drop what finished deploys (and restores) kept aside; [(deploy id, tables dropped)]."""
    control = Session.of(lock.connection)
    unsettled = {entry.deploy_id for entry in log.entries(control) if entry.status != log.SETTLED}
    if not unsettled:
        return []
    done = []
    for record in load_records(lock.connection, FINISHED, finished_before_hours=older_than_hours):
        if record.id in unsettled and record.id.startswith(deploy_id or ""):
            done.append((record.id, settle(settings, lock, deploy_id=record.id)))
    return done


def settle_expired(settings: Settings, lock) -> list[tuple[str, list[str]]]:
    return settle_deploys(settings, lock, older_than_hours=settings.hold_retention_hours)


class _StepError(Exception):
    """A step's checks failed (as opposed to raising)."""


def deploy(
    settings: Settings,
    target: str = "head",
    *,
    say: Say = print,
    progress=None,
    allow_irreversible: bool = False,
    downgrade: bool = False,
) -> DeployRecord:
    """Run the configured steps under the migration lock; raise DeployFailed unless all pass.

    allow_irreversible runs statements a rollback could not undo (they are named if it comes to one).
    downgrade reverts down to target (an id, base or -N) the same way: preflight, backup, the
    steps, verify, the record and a rollback on failure; the service is not restarted."""
    alembic_setup.validate_revision_argument(target)
    if target not in ("head", "heads", "base") and not re.fullmatch(r"[+-]\d+", target):
        # An unknown revision is bad input: refused before the lock is taken or a deploy recorded.
        revision_graph.resolve_target(alembic_setup.script_directory(settings), target)
    record = DeployRecord(
        id=str(uuid.uuid4()),
        database=settings.database,
        environment=settings.environment,
        target=f"{DOWNGRADE_PREFIX}{target}" if downgrade else target,
        os_user=getpass.getuser(),
        host=socket.gethostname(),
        started_at=_now(),
    )
    with migration_lock(settings, f"{'downgrade' if downgrade else 'deploy'} to {target}") as lock:
        with connect(settings) as connection:
            record.from_revision = list(alembic_setup.current_heads(connection))
        record_start(lock.connection, record)
        close_abandoned(lock, record.id)
        for settled, tables in settle_expired(settings, lock):
            say(f"settled deploy {settled[:8]}: dropped {len(tables)} holding table(s)")
        run = _DeployRun(
            settings=settings,
            target=target,
            record=record,
            lock=lock,
            say=say,
            progress=progress,
            allow_irreversible=allow_irreversible,
            downgrade=downgrade,
        )
        try:
            run.execute()
        finally:
            record.finished_at = _now()
            try:
                record_update(lock.connection, record, final=True)
            except Exception:
                pass  # the server is gone; the record keeps status 'running' and says so
    if record.status != SUCCEEDED:
        raise DeployFailed(record.message, record)
    return record


@dataclass(kw_only=True)
class _DeployRun:
    """One deploy's state as its steps run."""

    settings: Settings
    target: str
    record: DeployRecord
    lock: HeldLock
    say: Say
    progress: Progress | None
    allow_irreversible: bool
    downgrade: bool
    backup_path: Path | None = None
    protection: ProtectionPlan | None = None  # read by the preflight
    # The rolling restart's outcome on each host (APP_HOSTS), for the record.
    host_restarts: list[dict] = field(default_factory=list)

    @functools.cached_property
    def pending(self) -> list[str]:
        """The revisions to apply (or, downgrading, to revert, newest first)."""
        script = alembic_setup.script_directory(self.settings)
        current = tuple(self.record.from_revision)
        steps = (
            revision_graph.downgrade_steps(script, current, self.target)
            if self.downgrade
            else revision_graph.pending(script, current, self.target)
        )
        return [step.revision for step in steps]

    @property
    def steps(self) -> tuple[str, ...]:
        if not self.downgrade:
            return self.settings.deploy_steps
        # The service keeps running the code it has; a downgrade only changes the schema.
        return tuple(
            "downgrade" if name == "upgrade" else name for name in self.settings.deploy_steps if name != "restart"
        )

    def execute(self) -> None:
        record = self.record
        for name in self.steps:
            started = time.monotonic()
            self.say(f"▶ {name}")
            try:
                detail = getattr(self, f"step_{name}")()
            except Exception as exc:
                seconds = time.monotonic() - started
                message = first_line(exc)
                record.steps.append(StepResult(name, "failed", round(seconds, 3), message, self._hosts_of(name)))
                self._fail(name, exc, message)
                return
            record.steps.append(
                StepResult(
                    name,
                    "skipped" if detail.startswith("skipped") else "ok",
                    round(time.monotonic() - started, 3),
                    detail,
                    self._hosts_of(name),
                )
            )
            self.say(f"  {detail}")
            record_update(self.lock.connection, record)
        record.status = SUCCEEDED
        record.to_revision = list(alembic_setup.current(self.settings))
        record.message = (
            f"{'reverted' if self.downgrade else 'deployed'} {len(record.applied)} revision(s); "
            f"{self.settings.database} is at {', '.join(record.to_revision) or 'base'}"
        )

    # ---- steps: each returns a one-line detail or raises

    def step_preflight(self) -> str:
        report = run_check(self.settings, own_deploy=self.record.id, rehearse=False)
        if not report.ok:
            raise _StepError("; ".join(f"{item.name}: {item.detail}" for item in report.failures))
        guarded = ddl_check(self.settings, self.target, self.downgrade)
        for statement in guarded:
            self.say(f"  ddl: {statement.describe()}")
        self.protection = protection_plan(self.settings, self.target, self.downgrade, _online(guarded))
        problems = self.protection.irreversible
        if problems and not self.allow_irreversible:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise _StepError(
                f"{problems[0]}{more}: rewrite it, or deploy with --allow-irreversible to run it "
                "anyway (a rollback then names it as not undone)"
            )
        for problem in problems:
            self.say(f"  ⚠️  irreversible, allowed: {problem}")
        return f"checks passed; {len(self.pending)} revision(s) to {'revert' if self.downgrade else 'apply'}" + (
            f": {', '.join(self.pending)}" if self.pending else ""
        )

    def step_backup(self) -> str:
        if not self.pending:
            return "skipped: nothing to apply"
        protection = self.protection or protection_plan(self.settings, self.target, self.downgrade)
        for line in protection.lines():
            self.say(f"  {line}")
        if not protection.needs_full_dump(self.settings, self.allow_irreversible):
            # The undo log keeps what each statement changes as it runs: no copy of the rest.
            return f"no dump needed: {protection.summary()}"
        result = backup(self.settings, progress=self.progress)
        self.backup_path = Path(result.path)
        self.record.backup_file = str(self.backup_path)
        why = "DEPLOY_FULL_BACKUP" if self.settings.deploy_full_backup else "irreversible statements allowed"
        return f"full dump ({why}): {self.backup_path.name}, {result.manifest.bytes / 1e6:,.1f} MB"

    def step_upgrade(self) -> str:
        def before_each(step, direction: str) -> None:
            self.say(f"  {'→' if direction == 'upgrade' else '←'} {step.revision}  {(step.doc or '').strip()}")

        capture = DeployCapture(
            self.lock.connection, self.record.id, self.allow_irreversible, lambda line: self.say(f"    {line}")
        )
        run = migrate.downgrade if self.downgrade else migrate.upgrade
        applied = run(
            self.settings, self.target, on_step=before_each, lock=self.lock, deploy_id=self.record.id, capture=capture
        )
        self.record.applied = applied
        if not applied:
            return "skipped: nothing to apply"
        return f"{'reverted' if self.downgrade else 'applied'} {len(applied)} revision(s)"

    step_downgrade = step_upgrade

    def step_verify(self) -> str:
        if self.downgrade:
            script = alembic_setup.script_directory(self.settings)
            applied = revision_graph.applied_revisions(script, tuple(self.record.from_revision))
            expected = revision_graph.heads_of(script, applied - set(self.pending))
        else:
            expected = None
        report = verify(self.settings, self.target, expected)
        if not report.ok:
            raise _StepError("; ".join(f"{item.name}: {item.detail}" for item in report.failures))
        return "; ".join(f"{item.name} ok" for item in report.items)

    def step_restart(self) -> str:
        revision = ",".join(alembic_setup.current(self.settings)) or "base"
        if not self.settings.app_hosts:
            result = restart(self.settings, expected_revision=revision)
            return f"restarted in {result.command_seconds:.1f} s; {result.health.describe()}"
        # Imported here: SSH (paramiko) costs every command a quarter second to import, and only this needs it.
        from .app_hosts import RollStopped, rolling_restart

        try:
            done = rolling_restart(self.settings, revision, say=lambda line: self.say(f"  {line}"))
        except RollStopped as stopped:
            self.host_restarts = [host.to_dict() for host in stopped.hosts]
            raise
        self.host_restarts = [host.to_dict() for host in done]
        return f"restarted {len(done)} host(s), {self.settings.app_hosts_batch} at a time"

    def _hosts_of(self, step: str) -> list[dict]:
        return self.host_restarts if step == "restart" else []

    # ---- failure handling

    def _fail(self, step: str, exc: Exception, message: str) -> None:
        record = self.record
        record.to_revision = list(alembic_setup.current(self.settings)) if _reachable(self.settings) else None
        failure = f"{step} failed: {message}"
        if step not in ("upgrade", "downgrade", "verify"):
            record.status = FAILED
            state = (
                "unchanged"
                if step in ("preflight", "backup")
                else f"at {', '.join(record.to_revision or []) or 'base'} (upgraded; restart failed)"
            )
            record.message = f"{failure}; the database is {state}"
            self.say(f"  {record.message}")
            return
        self.say(f"  {failure}")
        self.say("↩ rollback")
        record.status = ROLLING_BACK
        record.message = f"{failure}; rolling back"
        try:
            record_update(self.lock.connection, record)
        except Exception:
            pass  # the server is gone: the rollback below fails and says so
        finish_rollback(self.settings, self.lock, record, failure=failure, say=lambda line: self.say(f"  {line}"))


def finish_rollback(settings: Settings, lock, record: DeployRecord, *, failure: str, say: Say) -> None:
    """Undo the deploy's changes and record the outcome, its message beginning with failure ("<step>
    failed: <why>"); also db.recover's way to finish a killed rollback."""
    try:
        outcome = rollback(settings, lock, deploy_id=record.id, from_revisions=tuple(record.from_revision), say=say)
    except Exception as error:
        # The server (or the lock's connection) went away, or an undo failed: the record keeps
        # 'rolling back', which db.check reports and db.recover resumes.
        reachable = _reachable(settings)
        record.to_revision = list(alembic_setup.current(settings)) if reachable else None
        if reachable:
            record.message = (
                f"{failure}; rollback interrupted ({first_line(error)}): "
                f"{settings.database} is half put back; once the cause is fixed, finish it with "
                "`invoke db.recover`"
            )
        else:
            record.message = (
                f"{failure}; rollback impossible (the server cannot be reached): "
                f"{settings.database} may be half-changed; once the server answers, put it back "
                "with `invoke db.recover --undo`"
            )
        return
    record.to_revision = list(alembic_setup.current(settings))
    before = ", ".join(record.from_revision) or "base"
    kept = (
        f"; kept {outcome.kept_application_writes:,} row(s) the application changed meanwhile"
        if outcome.kept_application_writes
        else ""
    )
    if outcome.complete:
        record.status = ROLLED_BACK
        record.message = (
            f"{failure}; rolled back: {settings.database} is as before the deploy, "
            f"at {before}, with every write of the application kept{kept}"
        )
    else:
        record.status = ROLLBACK_INCOMPLETE
        backup_hint = (
            f"; the deploy's backup {record.backup_file} can be restored by a person with `invoke db.restore`"
            if record.backup_file
            else ""
        )
        record.message = (
            f"{failure}; rollback incomplete, not as before: {'; '.join(outcome.remaining)}{kept}{backup_hint}"
        )


def _reachable(settings: Settings) -> bool:
    try:
        alembic_setup.current(settings)
        return True
    except DbOpsError:
        return False
