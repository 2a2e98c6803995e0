"""The undo log (alembic_undo): what each statement of a deploy changed and where its before-image is.

An entry is written 'prepared' before its statement runs and 'done' after; a rollback walks a
deploy's entries newest first and marks each 'undone' once its data is back; settling drops
the holding objects and marks them 'settled'. Every step checks the live state before acting,
so that a rollback or settle killed halfway resumes where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..tool_schema import UNDO, create_statement
from .session import Session

# Kinds of entries
CREATE_TABLE = "create-table"  # undo: drop it
DROP_TABLE = "drop-table"  # run as a rename to the holding name; undo: rename it back
RENAME_TABLE = "rename-table"  # undo: rename back
ALTER = "alter"  # undo: the table's structure back, held column values joined back by key
ONLINE_ALTER = "online-alter"  # run by the online tool, the original set aside; undo: renamed back (online_alter.py)
ROWS = "rows"  # undo: before-images back where the application did not change the row since
OBJECT = "object"  # views, triggers, routines, events; undo: the old definition back
IRREVERSIBLE = "irreversible"  # run on the operator's word; a rollback names it as not undone
REPLACED_TABLE = "replaced-table"  # a restore renamed the table aside; undo: rename it back

# Statuses
PREPARED, DONE, FAILED, UNDONE, SETTLED = "prepared", "done", "failed", "undone", "settled"


@dataclass
class UndoEntry:
    id: int
    deploy_id: str
    revision: str | None
    kind: str
    table: str | None
    hold: str | None
    status: str
    detail: dict[str, Any] = field(default_factory=dict)

    def table_name(self) -> str:
        """The table of the kinds that always name one (all but rename-table, object and irreversible)."""
        if self.table is None:
            raise RuntimeError(f"undo log entry {self.id} ({self.kind}) names no table")
        return self.table

    def describe(self) -> str:
        where = f" {self.table}" if self.table else ""
        return f"{self.kind}{where}" + (f" ({self.revision})" if self.revision else "")


def ensure_table(session: Session) -> None:
    session.run(create_statement(UNDO))


def add(
    session: Session,
    deploy_id: str,
    revision: str | None,
    kind: str,
    table: str | None = None,
    hold: str | None = None,
    detail: dict | None = None,
) -> UndoEntry:
    detail = detail or {}
    values = ", ".join(
        session.literal(value) for value in (deploy_id, revision, kind, table, hold, PREPARED, json.dumps(detail))
    )
    session.run(
        f"INSERT INTO {UNDO.name} (deploy_id, revision, kind, table_name, hold_table, status, detail, "
        f"created_at) VALUES ({values}, UTC_TIMESTAMP(6))"
    )
    entry_id = int(session.value("SELECT LAST_INSERT_ID()"))
    return UndoEntry(entry_id, deploy_id, revision, kind, table, hold, PREPARED, detail)


def save(session: Session, entry: UndoEntry, status: str | None = None) -> None:
    """Write the entry's detail and holding table, and its new status when given."""
    if status is not None:
        entry.status = status
    finished = ", finished_at = UTC_TIMESTAMP(6)" if status in (UNDONE, SETTLED) else ""
    session.run(
        f"UPDATE {UNDO.name} SET status = {session.literal(entry.status)}, "
        f"detail = {session.literal(json.dumps(entry.detail))}, hold_table = {session.literal(entry.hold)}, "
        f"table_name = {session.literal(entry.table)}{finished} WHERE id = {int(entry.id)}"
    )


def entries(session: Session, deploy_id: str | None = None, statuses: tuple[str, ...] = ()) -> list[UndoEntry]:
    """Entries of one deploy (or all), oldest first, optionally of some statuses only."""
    if not session.value(
        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
        f"AND TABLE_NAME = {session.literal(UNDO.name)}"
    ):
        return []
    where = []
    if deploy_id is not None:
        where.append(f"deploy_id = {session.literal(deploy_id)}")
    if statuses:
        where.append(f"status IN ({', '.join(session.literal(status) for status in statuses)})")
    rows = session.rows(
        f"SELECT id, deploy_id, revision, kind, table_name, hold_table, status, detail FROM {UNDO.name}"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY id"
    )
    return [
        UndoEntry(row[0], row[1], row[2], row[3], row[4], row[5], row[6], json.loads(row[7] or "{}")) for row in rows
    ]
