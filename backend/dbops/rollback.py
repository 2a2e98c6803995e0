"""Putting the database back the way it was before a deploy.

1. The revision that failed halfway is undone by comparing the live schema with the one
   reflected before that revision and running the reverse difference (converge.py).
2. Fully applied revisions of the deploy are downgraded.
3. Tables whose structure or rows still differ from the pre-deploy state (data the failure
   destroyed) come back from the deploy's backup.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Settings
from . import journal, migrate
from .connection import connect
from .converge import converge
from .snapshot import Snapshot, differing_tables, row_counts, schema_snapshot

if TYPE_CHECKING:
    from sqlalchemy import MetaData

    from .lock import HeldLock

Say = Callable[[str], None]


@dataclass
class RollbackOutcome:
    actions: list[str] = field(default_factory=list)
    remaining: list[str] = field(default_factory=list)  # tables still not as before

    @property
    def complete(self) -> bool:
        return not self.remaining


def state_differences(settings: Settings, snapshot_before: Snapshot, rows_before: Mapping[str, int]) -> list[str]:
    """Tables whose structure differs from snapshot_before or that hold fewer rows than before."""
    with connect(settings) as connection:
        now = schema_snapshot(connection, settings.database, exclude=migrate.TOOL_TABLES)
        changed = set(differing_tables(snapshot_before, now))
        comparable = [name for name in rows_before if name in now and name not in changed]
        counts = row_counts(connection, comparable)
    changed.update(name for name in comparable if counts[name] < rows_before[name])
    return sorted(changed)


def rollback(
    settings: Settings,
    lock: HeldLock,
    deploy_id: str,
    from_revisions: tuple[str, ...],
    failed: migrate.MigrationFailed | None,
    schema_before_failed_step: MetaData | None,
    snapshot_before: Snapshot,
    rows_before: Mapping[str, int],
    backup_path: Path | None,
    say: Say,
) -> RollbackOutcome:
    outcome = RollbackOutcome()
    data_lost: set[str] = set()
    if failed is not None and failed.direction == "upgrade" and schema_before_failed_step is not None:
        try:
            undone = converge(settings, schema_before_failed_step)
            data_lost = undone.data_lost
            outcome.actions.append(f"undid the half-applied {failed.revision}: "
                                   f"{', '.join(undone.operations) or 'nothing had changed'}")
        except Exception as exc:
            outcome.actions.append(f"could not undo {failed.revision} by schema difference: {migrate.first_line(exc)}")
        say(outcome.actions[-1])
        for entry in journal.unfinished(lock.connection):
            if entry.deploy_id == deploy_id:
                journal.finish(lock.connection, entry.id, journal.UNDONE, entry.error)

    target = from_revisions[0] if len(from_revisions) == 1 else "base" if not from_revisions else None
    if target is not None and set(migrate.current(settings)) != set(from_revisions):
        try:
            reverted = migrate.downgrade(settings, target, lock=lock, deploy_id=deploy_id)
            outcome.actions.append(f"downgraded {len(reverted)} revision(s) to {target}")
        except Exception as exc:
            outcome.actions.append(f"downgrade to {target} failed: {migrate.first_line(exc)}")
        say(outcome.actions[-1])

    # Tables the failure destroyed data in come back from the backup even when their structure matches again.
    differing = sorted(set(_remaining(settings, from_revisions, snapshot_before, rows_before)) | data_lost)
    if differing and backup_path is not None:
        from .backup import restore_tables

        try:
            restore_tables(settings, backup_path, differing)
            outcome.actions.append(f"restored {', '.join(differing)} from {backup_path.name}")
        except Exception as exc:
            outcome.actions.append(f"restoring {', '.join(differing)} from the backup failed: {migrate.first_line(exc)}")
        say(outcome.actions[-1])
        differing = _remaining(settings, from_revisions, snapshot_before, rows_before)
    outcome.remaining = differing
    return outcome


def _remaining(settings: Settings, from_revisions: tuple[str, ...], snapshot_before: Snapshot,
               rows_before: Mapping[str, int]) -> list[str]:
    differing = state_differences(settings, snapshot_before, rows_before)
    if set(migrate.current(settings)) != set(from_revisions):
        differing.append("alembic_version")
    return differing
