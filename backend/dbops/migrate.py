"""Revisions run step by step: each under the migration lock, journaled before and after,
refused over a revision an earlier run left half-applied."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING

from ..config import Settings
from . import admin, journal
from .alembic_setup import (
    alembic_config,
    alembic_errors,
    current_heads,
    migration_connection,
    script_directory,
    validate_revision_argument,
)
from .connection import connect, translate_error
from .errors import DbOpsError, RevisionError, first_line
from .lock import HeldLock, migration_lock
from .online_ddl import OnlineAlterHook
from .revision_graph import applied_revisions, downgrade_steps, parent_ids, pending
from .tool_tables import HISTORY_TABLES

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import Script, ScriptDirectory
    from sqlalchemy.engine import Connection

    from .undo.capture import DeployCapture


class MigrationFailed(RevisionError):
    """A revision step raised; the schema may be half-changed (MySQL DDL is not transactional)."""

    def __init__(self, message: str, revision: str, direction: str) -> None:
        super().__init__(message)
        self.revision = revision
        self.direction = direction


StepHook = Callable[["Script", str], None]
SETTLE_HINT = (
    "settle it with `invoke db.recover --undo` (or `--finish`), or repair it by hand and record the "
    "state with `invoke db.stamp`"
)


def _run_steps(
    settings: Settings,
    lock: HeldLock | None,
    purpose: str,
    plan: Callable[[ScriptDirectory, tuple[str, ...]], list[Script]],
    direction: str,
    on_step: StepHook | None,
    deploy_id: str | None,
    capture: DeployCapture | None = None,
    say: Callable[[str], None] | None = None,
) -> list[str]:
    """Run revision steps one at a time under the migration lock, journaling each; capture (a
    deploy's) makes each statement undoable before it runs; big-table ALTERs may run online
    (online_ddl.py), telling their progress to say.

    A step is journaled once the database is found where it starts, just before its function
    runs: a run that fails before that leaves no entry behind, since it changed nothing."""
    script = script_directory(settings)
    done: list[str] = []
    with ExitStack() as stack:
        held = lock or stack.enter_context(migration_lock(settings, purpose))
        journal.ensure_journal(held.connection)
        refuse_unfinished(held.connection)
        with connect(settings, guard_ddl=True) as connection, alembic_errors():
            config = alembic_config(settings, connection)
            steps = plan(script, current_heads(connection))
            connection.commit()
            online = OnlineAlterHook(
                settings,
                held.connection,
                deploy_id if capture is not None else None,
                capture.say if capture is not None else (say or (lambda line: None)),
            )
            online.attach(connection)  # first: what it runs online, the capture does not see
            if capture is not None:
                stack.enter_context(capture.attached(connection))
            for step in steps:
                held.ensure_held()
                if on_step is not None:
                    on_step(step, direction)
                if capture is not None:
                    capture.revision = step.revision
                online.begin_step(step)
                entries: list[int] = []

                def begin(step: Script = step, entries: list[int] = entries) -> None:
                    entries.append(
                        journal.start(
                            held.connection, step.revision, direction, journal.file_checksum(step.path), deploy_id
                        )
                    )

                try:
                    run_step(config, script, step, direction, begin)
                    connection.commit()
                except BaseException as exc:
                    if entries:
                        _finish_quietly(held, entries[0], journal.FAILED, first_line(exc))
                    if not isinstance(exc, Exception):
                        raise
                    explained = translate_error(exc, settings) if not isinstance(exc, DbOpsError) else exc
                    if not entries:
                        before = f" ({len(done)} revision(s) before it done)" if done else ""
                        raise RevisionError(
                            f"{direction} of {step.revision} did not start{before}: {explained}"
                        ) from exc
                    # A deploy rolls back; a plain run leaves the revision half-applied.
                    settle = "" if deploy_id else f"; {step.revision} is now half-applied: {SETTLE_HINT}"
                    raise MigrationFailed(
                        f"{direction} of {step.revision} failed: {explained}{settle}", step.revision, direction
                    ) from exc
                journal.finish(held.connection, entries[0], journal.APPLIED)
                done.append(step.revision)
    return done


def run_step(config: Config, script: ScriptDirectory, step: Script, direction: str, begin: Callable[[], None]) -> None:
    """Run exactly one revision's upgrade() or downgrade() through env.py, on config's connection.

    alembic_version moves as Alembic's own upgrade or downgrade moves it, across branch and merge
    points too (a merge goes down to all of its parents); no other revision runs. begin() is called
    once the database is found where the step starts, just before the revision's function runs."""
    from alembic.runtime.environment import EnvironmentContext
    from alembic.runtime.migration import MigrationStep

    upgrading = direction == "upgrade"

    def one_step(heads: tuple[str, ...], context) -> Iterator[MigrationStep]:
        applied = applied_revisions(script, heads)
        starts_here = (
            (step.revision not in applied and set(parent_ids(script, step)) <= applied)
            if upgrading
            else step.revision in heads
        )
        if not starts_here:
            raise RevisionError(
                f"the database is at {', '.join(heads) or 'base'}, not where the {direction} of {step.revision} "
                "starts: something else changed alembic_version meanwhile; see `invoke db.current`"
            )
        begin()
        make = MigrationStep.upgrade_from_script if upgrading else MigrationStep.downgrade_from_script
        yield make(script.revision_map, step)

    with EnvironmentContext(config, script, fn=one_step):
        script.run_env()


def _finish_quietly(held: HeldLock, entry: int, status: str, error: str) -> None:
    try:
        journal.finish(held.connection, entry, status, error)
    except Exception:
        pass  # the server may be gone; the entry then stays 'running', which says the same


def refuse_unfinished(control: Connection) -> None:
    """Refuse to migrate over a revision an earlier run left half-applied."""
    left = journal.unfinished(control)
    if left:
        raise RevisionError(f"{left[-1].describe()}; the schema may be half-changed: {SETTLE_HINT}")


def upgrade(
    settings: Settings,
    target: str = "head",
    on_step: StepHook | None = None,
    lock: HeldLock | None = None,
    deploy_id: str | None = None,
    capture: DeployCapture | None = None,
    say: Callable[[str], None] | None = None,
) -> list[str]:
    """Apply pending revisions up to target one at a time; return those applied."""
    validate_revision_argument(target)
    return _run_steps(
        settings,
        lock,
        f"upgrade to {target}",
        lambda script, now: pending(script, now, target),
        "upgrade",
        on_step,
        deploy_id,
        capture,
        say,
    )


def downgrade(
    settings: Settings,
    target: str = "-1",
    on_step: StepHook | None = None,
    lock: HeldLock | None = None,
    deploy_id: str | None = None,
    capture: DeployCapture | None = None,
    say: Callable[[str], None] | None = None,
) -> list[str]:
    """Revert revisions down to target (default: one step); return those reverted, newest first."""
    validate_revision_argument(target)
    return _run_steps(
        settings,
        lock,
        f"downgrade to {target}",
        lambda script, now: downgrade_steps(script, now, target),
        "downgrade",
        on_step,
        deploy_id,
        capture,
        say,
    )


def stamp(settings: Settings, revision: str | Sequence[str], lock: HeldLock | None = None) -> tuple[str, ...]:
    """Record revision (or several, beside each other on branches) in alembic_version without running
    migrations; return the new current.

    Stamping is the user's statement of what the schema is, so it also closes journal
    entries an earlier run left unfinished.
    """
    from alembic import command

    revisions = [revision] if isinstance(revision, str) else list(revision) or ["base"]
    for each in revisions:
        validate_revision_argument(each)
    with ExitStack() as stack:
        held = lock or stack.enter_context(migration_lock(settings, f"stamp {', '.join(revisions)}"))
        with migration_connection(settings) as (config, connection):
            command.stamp(config, revisions if len(revisions) > 1 else revisions[0], purge=True)
            connection.commit()
            now = current_heads(connection)
        journal.ensure_journal(held.connection)
        for entry in journal.unfinished(held.connection):
            journal.finish(held.connection, entry.id, journal.RESOLVED, f"stamped at {', '.join(now) or 'base'}")
        return now


def reset(settings: Settings, say: Callable[[str], None], on_step: StepHook | None = None) -> list[str]:
    """`db.reset`: empty the configured database and upgrade it to head, under the migration lock;
    return the revisions applied. The lock, journal and deploy history tables survive: they are
    the record of what happened."""
    admin.create_database(settings)
    with migration_lock(settings, "reset") as lock:
        dropped = admin.empty_database(settings, keep=HISTORY_TABLES)
        stamp(settings, "base", lock=lock)
        say(f"✅ emptied database {settings.database} ({len(dropped)} tables dropped)")
        return upgrade(settings, "head", on_step=on_step, lock=lock)
