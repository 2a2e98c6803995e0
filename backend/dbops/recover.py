"""`invoke db.recover`: settle a revision an earlier run left half-applied.

The schema the revision should have produced (finish) or started from (undo) is built in
a scratch database by the migrations themselves; the live schema is then converged to it,
columns put back in order, and alembic_version and the journal set accordingly.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field

from ..config import Settings
from . import journal, migrate
from .connection import connect
from .converge import align_column_order, converge, reflect_schema
from .errors import DbOpsError, RevisionError
from .lock import HeldLock, migration_lock
from .snapshot import differing_tables, schema_snapshot


@dataclass
class Recovered:
    entry: journal.JournalEntry
    mode: str
    revision_now: tuple[str, ...]
    operations: list[str] = field(default_factory=list)
    data_lost: list[str] = field(default_factory=list)
    remaining: list[str] = field(default_factory=list)


def recover(settings: Settings, mode: str, lock: HeldLock | None = None) -> Recovered:
    """mode 'undo' returns to the schema before the half-applied step, 'finish' completes it."""
    if mode not in ("undo", "finish"):
        raise RevisionError("choose --undo or --finish")
    script = migrate.script_directory(settings)
    with ExitStack() as stack:
        held = lock or stack.enter_context(migration_lock(settings, f"recover ({mode})"))
        journal.ensure_journal(held.connection)
        left = journal.unfinished(held.connection)
        if not left:
            raise RevisionError("nothing to recover: no half-applied revision in the journal")
        entry = left[-1]
        revision = script.get_revision(entry.revision)
        if revision is None:
            raise RevisionError(f"revision {entry.revision} is not in {script.versions}: check out its code")
        below = migrate.one_step_below(revision)
        before, after = (below, revision.revision) if entry.direction == "upgrade" else (revision.revision, below)
        target = before if mode == "undo" else after

        with ExitStack() as scratch_stack:
            try:
                scratch = scratch_stack.enter_context(migrate.scratch_database(settings, target))
            except DbOpsError as exc:
                raise RevisionError(f"cannot {mode}: the migrations fail to build revision {target} in a scratch "
                                    f"database too ({exc})") from exc
            reference = reflect_schema(scratch)
            converged = converge(settings, reference)
            align_column_order(settings, scratch, sorted(reference.tables))
            with connect(scratch) as connection:
                wanted = schema_snapshot(connection, scratch.database, exclude=migrate.TOOL_TABLES)
        with connect(settings) as connection:
            live = schema_snapshot(connection, settings.database, exclude=migrate.TOOL_TABLES)
        # The journal first: stamp would otherwise mark the entry merely 'resolved'.
        for stale in left:
            journal.finish(held.connection, stale.id, journal.UNDONE if mode == "undo" else journal.APPLIED,
                           f"recovered ({mode}): {entry.error or 'process died'}")
        now = migrate.stamp(settings, target, lock=held)
    return Recovered(entry, mode, now, converged.operations, sorted(converged.data_lost),
                     differing_tables(wanted, live))
