"""Adopt a database this tool did not build (`invoke db.adopt`): what Flyway calls baseline.

A database made by the old Makefile + db_manager.py tool holds that tool's revision ids in
alembic_version ('001', ...); one made by hand has no alembic_version at all. Neither can be
upgraded: Alembic does not know where it stands. Adopting builds a revision's schema in a
scratch database, compares it with the live one table by table (the tool's own tables and
alembic_version left out), and only when they match records that revision: alembic_version
replaced, the revision files' checksums in the journal (so `db.check` notices a later edit),
and the adoption in the deploy history (`db.deploys`).
"""

from __future__ import annotations

import getpass
import socket
import time
import uuid
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Settings
from . import alembic_setup, authoring, journal, migrate, revision_graph
from .connection import connect, require_configured
from .deploy_history import SUCCEEDED, DeployRecord, StepResult, record_start, record_update
from .drift import LIVE, MIGRATIONS
from .errors import RevisionError
from .lock import migration_lock
from .schema import Difference, Schema, diff, read_schema
from .tool_tables import ignored_tables

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import Connection

# How an adoption is recorded in alembic_deploys, beside deploys and restores.
ADOPT_TARGET = "adopt"
# A different column order is reported but does not block: fixing it would copy the table.
COLUMN_ORDER = "column order"


@dataclass
class Adoption:
    database: str
    revision: str  # the revision id compared (and recorded when it matched)
    was: tuple[str, ...]  # what alembic_version held before; empty when it held nothing or did not exist
    tables: list[str]  # the application's tables compared
    differences: list[Difference] = field(default_factory=list)  # block the adoption
    notes: list[Difference] = field(default_factory=list)  # reported only
    recorded: bool = False
    live: Schema = field(default_factory=Schema, repr=False)  # the schema compared

    @property
    def matches(self) -> bool:
        return not self.differences

    def describe_was(self) -> str:
        return ", ".join(self.was) or "no revision"

    def match_lines(self) -> list[str]:
        """What a person confirms before the revision is recorded: the match, then each note."""
        return [
            f"✅ the {len(self.tables)} table(s) of {self.database} match revision {self.revision} "
            "(built in a scratch database)",
            *(f"⚠️  {note.text()}: left as it is" for note in self.notes),
        ]

    def difference_lines(self) -> list[str]:
        return [f"     {difference.text()}" for difference in self.differences + self.notes]

    def outcome(self) -> str:
        """One line: adopted, or why nothing was recorded (a ❌ line)."""
        if not self.matches:
            return (
                f"❌ {self.database} differs from revision {self.revision} in {len(self.differences)} "
                "place(s): nothing recorded"
            )
        return (
            f"✅ {self.database} adopted at {self.revision} (alembic_version held {self.describe_was()}); "
            "`invoke db.upgrade` applies the revisions after it"
        )


def unknown_revisions(script: ScriptDirectory, current: Sequence[str]) -> list[str]:
    """Ids in alembic_version that are not exactly the id of a revision file (a partial id is not one either)."""
    known = {revision.revision for revision in script.walk_revisions()}
    return [revision for revision in current if revision not in known]


def application_tables(connection: Connection, ignored: Container[str]) -> list[str]:
    from sqlalchemy import inspect

    return sorted(name for name in inspect(connection).get_table_names() if name not in ignored)


def adoption_hint(
    connection: Connection, script: ScriptDirectory, current: Sequence[str], ignored: Container[str]
) -> str | None:
    """Why the database looks like one to adopt (unknown revision ids, or tables but no revision), else None."""
    unknown = unknown_revisions(script, current)
    if unknown:
        return (
            f"the database is at revision {', '.join(unknown)}, which is not in {script.versions}: when the old "
            "tool (db_manager.py) or another made it, record the matching revision with `invoke db.adopt`; "
            "else check out the code that made it"
        )
    if current:
        return None
    tables = application_tables(connection, ignored)
    if not tables:
        return None
    shown = ", ".join(tables[:3]) + (" ..." if len(tables) > 3 else "")
    return (
        f"no revision recorded, but {len(tables)} table(s) exist ({shown}): when they were made by hand or by "
        "another tool, record their revision with `invoke db.adopt`"
    )


def _live_state(settings: Settings) -> tuple[tuple[str, ...], Schema]:
    with connect(settings) as connection:
        migrate.refuse_unfinished(connection)
        return (
            alembic_setup.current_heads(connection),
            read_schema(connection, settings.database, ignored_tables(settings)),
        )


def compare(settings: Settings, revision: str = "head") -> Adoption:
    """Compare the live database with the schema revision builds in a scratch database; change nothing."""
    require_configured(settings)
    script = alembic_setup.script_directory(settings)
    wanted = revision_graph.resolve_target(script, revision)
    if not wanted:
        raise RevisionError("adopt needs a revision with a schema to compare, not base: use an id or head")
    target = wanted[0]
    was, live = _live_state(settings)
    if was and not unknown_revisions(script, was):
        raise RevisionError(
            f"{settings.database} is already at {', '.join(was)}, a revision of this code: "
            "nothing to adopt (see `invoke db.check`)"
        )
    if not live.tables:
        raise RevisionError(f"{settings.database} has no tables to adopt: `invoke db.upgrade` builds it")
    with authoring.scratch_database(settings, target) as scratch, connect(scratch) as connection:
        built = read_schema(connection, scratch.database, ignored_tables(settings))
    found = diff(built, live, MIGRATIONS, LIVE)
    return Adoption(
        settings.database,
        target,
        was,
        live.names(),
        differences=[difference for difference in found if difference.item != COLUMN_ORDER],
        notes=[difference for difference in found if difference.item == COLUMN_ORDER],
        live=live,
    )


def adopt(
    settings: Settings, revision: str = "head", confirm: Callable[[Adoption], None] = lambda adoption: None
) -> Adoption:
    """Record revision as the database's when its schema matches the one the migrations build.

    Differences: returned unrecorded, nothing changed. A match: confirm(adoption) may raise to
    refuse; then, under the migration lock and only if the database did not change meanwhile,
    alembic_version is replaced, the journal and the deploy history updated.
    """
    started = time.monotonic()
    adoption = compare(settings, revision)
    seconds = time.monotonic() - started
    if not adoption.matches:
        return adoption
    confirm(adoption)

    with migration_lock(settings, f"adopt {adoption.revision}") as held:
        was, live = _live_state(settings)
        if (sorted(was), live) != (sorted(adoption.was), adoption.live):
            raise RevisionError(
                f"{settings.database} changed while it was compared: nothing recorded; run `invoke db.adopt` again"
            )
        migrate.stamp(settings, adoption.revision, lock=held)
        _record(settings, held.connection, adoption, seconds)
    adoption.recorded = True
    return adoption


def _record(settings: Settings, control: Connection, adoption: Adoption, seconds: float) -> None:
    """The revisions' checksums in the journal, the adoption (seconds: its comparison) in the deploy history."""
    script = alembic_setup.script_directory(settings)
    journal.ensure_journal(control)
    for step in revision_graph.pending(script, (), adoption.revision):
        journal.record_adopted(control, step.revision, journal.file_checksum(Path(step.path)))
    record = DeployRecord(
        id=str(uuid.uuid4()),
        database=settings.database,
        environment=settings.environment,
        target=ADOPT_TARGET,
        os_user=getpass.getuser(),
        host=socket.gethostname(),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        from_revision=list(adoption.was),
        to_revision=[adoption.revision],
        status=SUCCEEDED,
        steps=[StepResult("adopt", "ok", round(seconds, 3), f"{len(adoption.tables)} table(s) matched")],
        message=f"adopted at {adoption.revision} (alembic_version held {adoption.describe_was()})",
    )
    record_start(control, record)
    record_update(control, record, final=True)
