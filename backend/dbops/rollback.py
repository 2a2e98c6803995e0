"""Putting the database back the way it was before a deploy, keeping every write of the application.

The deploy's undo log (undo/) is walked newest first: renamed tables come back, structure is
put back statement by statement, held column values and row before-images are joined back by
key where the application did not change them since. Nothing is reloaded from a backup: that
is a disaster-recovery act a person chooses (`invoke db.restore`). The deploy's record says
'rolling back' while this runs, so that a rollback killed halfway is found by `db.check` and
finished by `db.recover`, which calls this again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..config import Settings
from . import journal
from .connection import connect
from .undo import revert
from .undo.session import Session

if TYPE_CHECKING:
    from .lock import HeldLock

Say = Callable[[str], None]


def rollback(
    settings: Settings, lock: HeldLock, *, deploy_id: str, from_revisions: tuple[str, ...], say: Say
) -> revert.RevertOutcome:
    """Undo what deploy_id changed; alembic_version back to from_revisions. The caller holds the lock
    and has recorded the deploy as rolling back."""
    control = Session.of(lock.connection)
    with connect(settings, guard_ddl=True) as connection:
        session = Session.autocommitting(connection)
        outcome = revert.revert(control, session, deploy_id, say)
        if not session.value(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_NAME = 'alembic_version'"
        ):
            session.run("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        session.run("DELETE FROM alembic_version")
        for revision in from_revisions:
            session.run(f"INSERT INTO alembic_version (version_num) VALUES ({session.literal(revision)})")
    for entry in journal.unfinished(lock.connection):
        if entry.deploy_id == deploy_id:
            journal.finish(lock.connection, entry.id, journal.UNDONE, entry.error)
    return outcome


def settle(settings: Settings, lock: HeldLock, *, deploy_id: str) -> list[str]:
    """Drop the holding tables and triggers a finished deploy kept; return the tables dropped."""
    with connect(settings, guard_ddl=True) as connection:
        return revert.settle(Session.of(lock.connection), Session.autocommitting(connection), deploy_id)
