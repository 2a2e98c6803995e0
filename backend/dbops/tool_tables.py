"""The tool's own tables by name: the lock, journal, deploy history and undo log (their columns
are in tool_schema.py), alembic_version and the holding tables.

Together they are the tables verify, drift, autogenerate, snapshots and the preflight leave
alone; the history tables are left out of backups and survive restores, so the history of a
deploy outlives its rollback. This module imports no SQLAlchemy: a backup, which needs only the
names, starts a third of a second sooner without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from ..config import Settings

LOCK_TABLE = "alembic_lock"  # who holds the migration lock (lock.py)
JOURNAL_TABLE = "alembic_journal"  # the start and end of every revision step (journal.py)
DEPLOYS_TABLE = "alembic_deploys"  # every deploy, restore and adoption (deploy_history.py)
UNDO_TABLE = "alembic_undo"  # what each statement of a deploy changed (undo/log.py)
HISTORY_TABLES = (LOCK_TABLE, JOURNAL_TABLE, DEPLOYS_TABLE, UNDO_TABLE)

# Alembic's own table (Alembic creates it).
VERSION_TABLE = "alembic_version"
# Holding tables keep what a deploy's destructive statements would destroy until it is settled.
HOLD_PREFIX = "alembic_hold_"


class ToolTableNames(frozenset):
    """The tool's tables: `name in TOOL_TABLES` is also true of every holding table."""

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name) or (isinstance(name, str) and name.startswith(HOLD_PREFIX))


TOOL_TABLES = ToolTableNames({VERSION_TABLE, *HISTORY_TABLES})


class IgnoredTables:
    """Tables verify, drift, autogenerate and the preflight leave alone: the tool's own and
    those UNMANAGED_TABLES declares (names or fnmatch patterns)."""

    def __init__(self, patterns: Sequence[str] = ()) -> None:
        self.patterns = tuple(patterns)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in TOOL_TABLES or any(fnmatchcase(name, p) for p in self.patterns))

    def include_name(self, name: str | None, type_: str, parent_names: dict) -> bool:
        """Alembic's include_name hook."""
        return not (type_ == "table" and name in self)


def ignored_tables(settings: Settings) -> IgnoredTables:
    return IgnoredTables(settings.unmanaged_tables)
