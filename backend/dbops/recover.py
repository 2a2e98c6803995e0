"""`invoke db.recover`: finish what a killed run left halfway.

- A rollback that was interrupted is finished from the deploy's undo log (always the way
  forward: the database goes back to how it was before that deploy).
- A restore that was interrupted is finished (the dump loaded again) or, with --undo, undone
  (the tables it replaced put back).
- A deploy that was interrupted while it changed the database is undone with --undo, from
  its undo log.
- A revision left half-applied by a plain `db.upgrade` or `db.downgrade` (no undo log) is
  settled by building the schema the revision should have produced (--finish) or started
  from (--undo) in a scratch database and converging the live schema to it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field

from ..config import Settings
from . import alembic_setup, authoring, journal, migrate, revision_graph
from .connection import connect
from .converge import align_column_order, converge, reflect_schema
from .deploy import finish_rollback
from .deploy_history import FAILED, RESTORE_TARGET, ROLLING_BACK, RUNNING, load_records, record_update
from .errors import DbOpsError, Refused, RevisionError
from .lock import HeldLock, migration_lock
from .restore import resume
from .schema import differing_tables, read_schema
from .scratch import ScratchUnavailable
from .tool_tables import ignored_tables
from .undo import log
from .undo.session import Session

Say = Callable[[str], None]


@dataclass
class Recovered:
    what: str  # one line: what was recovered
    revision_now: tuple[str, ...]
    operations: list[str] = field(default_factory=list)
    data_lost: list[str] = field(default_factory=list)
    remaining: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The operations run, then a warning naming the tables whose data the schema could not bring back."""
        lines = [f"  {operation}" for operation in self.operations]
        if self.data_lost:
            lines.append(
                f"⚠️  data in {', '.join(self.data_lost)} could not come back from the schema alone: "
                "restore those tables from a backup if it matters"
            )
        return lines

    def outcome(self) -> str:
        """One line: what was recovered, or (a ❌ line) what still differs."""
        if self.remaining:
            return f"❌ {self.what}; still differs: {', '.join(self.remaining)}"
        return f"✅ {self.what}; the database is at {', '.join(self.revision_now) or 'base'}"


def recover(
    settings: Settings, mode: str | None = None, lock: HeldLock | None = None, say: Say = lambda line: None
) -> Recovered:
    """mode None finishes an interrupted rollback or restore; 'undo' and 'finish' as the module says."""
    if mode not in (None, "undo", "finish"):
        raise RevisionError("choose --undo or --finish")
    with ExitStack() as stack:
        held = lock or stack.enter_context(migration_lock(settings, f"recover ({mode or 'resume'})"))
        journal.ensure_journal(held.connection)
        records = load_records(held.connection, (RUNNING, ROLLING_BACK))
        with_log = {
            entry.deploy_id
            for entry in log.entries(Session.of(held.connection))
            if entry.status not in (log.SETTLED, log.UNDONE)
        }
        restore = next((record for record in records if record.target == RESTORE_TARGET), None)
        if restore is not None:
            what = resume(settings, held, restore, undo=mode == "undo", say=say)
            return Recovered(what, alembic_setup.current(settings))
        rolling = next((record for record in records if record.status == ROLLING_BACK), None)
        if rolling is not None:
            if mode == "finish":
                raise RevisionError(
                    f"the rollback of deploy {rolling.id[:8]} was interrupted: it can only be "
                    "finished back to the state before that deploy (`invoke db.recover`)"
                )
            return _undo_deploy(settings, held, rolling, what="its interrupted rollback finished", say=say)
        left = journal.unfinished(held.connection)
        interrupted = next((record for record in reversed(records) if record.id in with_log), None)
        if mode == "undo" and interrupted is not None:
            return _undo_deploy(settings, held, interrupted, what="undone", say=say)
        if not left:
            raise RevisionError(
                "nothing to recover: no interrupted rollback, restore or deploy, and no "
                "half-applied revision in the journal"
            )
        if mode is None:
            raise RevisionError(f"{left[-1].describe()}: choose --undo or --finish")
        recovered = _converge_half_applied(settings, held, left, mode)
        for record in records:
            if record.id == left[-1].deploy_id:
                record.status = FAILED
                record.message = (
                    f"interrupted; its half-applied revision {left[-1].revision} "
                    f"{'undone' if mode == 'undo' else 'finished'} by db.recover"
                )
                record_update(held.connection, record, final=True)
        return recovered


def _undo_deploy(settings: Settings, held: HeldLock, record, *, what: str, say: Say) -> Recovered:
    record.status = ROLLING_BACK
    record_update(held.connection, record)
    finish_rollback(settings, held, record, failure="deploy failed: interrupted", say=say)
    record_update(held.connection, record, final=True)
    if record.status == ROLLING_BACK:
        raise RevisionError(record.message)
    remaining = [] if record.status != "rollback incomplete" else [record.message]
    return Recovered(
        f"deploy {record.id[:8]} {what}: {record.message}", alembic_setup.current(settings), remaining=remaining
    )


def _converge_half_applied(settings: Settings, held: HeldLock, left: list, mode: str) -> Recovered:
    script = alembic_setup.script_directory(settings)
    entry = left[-1]
    with alembic_setup.alembic_errors():
        revision = script.get_revision(entry.revision)
        if revision is None:
            raise RevisionError(f"revision {entry.revision} is not in {script.versions}: check out its code")
        before, after = revision_graph.states_around(
            script, revision.revision, entry.direction, alembic_setup.current(settings)
        )
    target = before if mode == "undo" else after
    shown = ", ".join(target) or "base"

    with ExitStack() as scratch_stack:
        try:
            scratch = scratch_stack.enter_context(authoring.scratch_database(settings, target))
        except (ScratchUnavailable, Refused):
            raise  # no scratch database to build it in: the migrations are not at fault
        except DbOpsError as exc:
            raise RevisionError(
                f"cannot {mode}: the migrations fail to build revision {shown} in a scratch database too ({exc})"
            ) from exc
        reference = reflect_schema(scratch)
        converged = converge(settings, reference)
        align_column_order(settings, scratch, sorted(reference.tables))
        with connect(scratch) as connection:
            wanted = read_schema(connection, scratch.database, exclude=ignored_tables(settings))
    with connect(settings) as connection:
        live = read_schema(connection, settings.database, exclude=ignored_tables(settings))
    # The journal first: stamp would otherwise mark the entry merely 'resolved'.
    for stale in left:
        journal.finish(
            held.connection,
            stale.id,
            journal.UNDONE if mode == "undo" else journal.APPLIED,
            f"recovered ({mode}): {entry.error or 'process died'}",
        )
    now = migrate.stamp(settings, target, lock=held)
    return Recovered(
        f"{entry.describe()}: {'undone' if mode == 'undo' else 'finished'}",
        now,
        converged.operations,
        sorted(converged.data_lost),
        differing_tables(wanted, live),
    )
