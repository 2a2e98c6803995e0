"""Undo a deploy's entries, newest first, keeping every write of the application.

Walking the log backwards puts the schema back one statement at a time, so each entry is
undone against the schema it was captured in. Each undo looks at the live state first (is the
holding table still there, does the table already match its before-image) and marks its entry
'undone' only once its data is back, so a rollback killed at any point is resumed by running
it again. Row before-images go back only where the application did not change the row since
(its value still equals the after-image); those it did change are counted and kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from . import holding, log, online_alter
from .hold_triggers import locked, trigger_specs
from .session import Session, column_list, key_match, q
from .tabledef import TableDef, alter_statements, parse, read

Say = Callable[[str], None]


@dataclass
class RevertOutcome:
    actions: list[str] = field(default_factory=list)
    remaining: list[str] = field(default_factory=list)  # what is not as before the deploy
    kept_application_writes: int = 0  # rows the application changed after the deploy touched them

    @property
    def complete(self) -> bool:
        return not self.remaining


def revert(control: Session, session: Session, deploy_id: str, say: Say) -> RevertOutcome:
    """Undo every entry of deploy_id not yet undone; session is a fresh tool connection (autocommit)."""
    outcome = RevertOutcome()
    session.run("SET SESSION foreign_key_checks = 0")
    entries = log.entries(control, deploy_id)
    for entry in reversed(entries):
        if entry.status in (log.UNDONE, log.SETTLED, log.FAILED):
            continue
        if entry.kind == log.IRREVERSIBLE:
            outcome.remaining.append(f"`{entry.detail.get('sql')}` ({entry.revision}) was run as irreversible")
            continue
        note = _UNDO[entry.kind](control, session, deploy_id, entry, outcome)
        outcome.actions.append(f"undid {entry.describe()}" + (f": {note}" if note else ""))
        say(outcome.actions[-1])
        log.save(control, entry, log.UNDONE)
    outcome.remaining += _still_differing(session, entries)
    return outcome


def _still_differing(session: Session, entries: list[log.UndoEntry]) -> list[str]:
    """Tables whose structure is not what the deploy's first before-image of them says."""
    first: dict[str, str | None] = {}
    for entry in entries:
        if entry.table is None or entry.table in first:
            continue
        if entry.kind in (log.ALTER, log.ONLINE_ALTER, log.DROP_TABLE, log.REPLACED_TABLE):
            first[entry.table] = entry.detail.get("before")
        elif entry.kind == log.CREATE_TABLE:
            first[entry.table] = None
    differing = []
    for table, before in first.items():
        now = read(session, table)
        if before is None and now is not None:
            differing.append(f"{table} (still exists)")
        elif before is not None and (now is None or not now.same_as(parse(before))):
            differences = "missing" if now is None else "; ".join(now.differences(parse(before)))
            differing.append(f"{table} ({differences})")
    return differing


def _create_table(
    control: Session, session: Session, deploy_id: str, entry: log.UndoEntry, outcome: RevertOutcome
) -> str:
    session.run(f"DROP TABLE IF EXISTS {q(entry.table_name())}")
    return ""


def _rename_table(
    control: Session, session: Session, deploy_id: str, entry: log.UndoEntry, outcome: RevertOutcome
) -> str:
    back = [
        (new, old)
        for old, new in reversed(entry.detail["renames"])
        if holding.table_exists(session, new) and not holding.table_exists(session, old)
    ]
    if back:
        session.run("RENAME TABLE " + ", ".join(f"{q(new)} TO {q(old)}" for new, old in back))
    return ""


def _existing(session: Session, table: str) -> TableDef:
    current = read(session, table)
    if current is None:
        raise RuntimeError(f"{table} is gone")
    return current


def _existing_hold(session: Session, entry: log.UndoEntry) -> str | None:
    """The entry's holding table when it exists (a kill right after the entry was written leaves none)."""
    return entry.hold if entry.hold is not None and holding.table_exists(session, entry.hold) else None


def _converge(session: Session, table: str, before: str) -> bool:
    """Bring table's structure back to before; True when anything had to change."""
    statements = alter_statements(_existing(session, table), parse(before))
    for statement in statements:
        session.run(statement)
    return bool(statements)


def _recreate_triggers(session: Session, triggers: list[dict]) -> None:
    present = {
        row[0]
        for row in session.rows(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()"
        )
    }
    for trigger in triggers:
        if trigger["name"] not in present:
            _run_in_mode(session, trigger["definition"], trigger.get("sql_mode"))


def _run_in_mode(session: Session, definition: str, sql_mode: str | None) -> None:
    if sql_mode is None:
        session.run(definition)
        return
    previous = session.value("SELECT @@SESSION.sql_mode")
    session.run(f"SET SESSION sql_mode = {session.literal(sql_mode)}")
    try:
        session.run(definition)
    finally:
        session.run(f"SET SESSION sql_mode = {session.literal(previous)}")


def _drop_table(
    control: Session, session: Session, deploy_id: str, entry: log.UndoEntry, outcome: RevertOutcome
) -> str:
    table, hold = entry.table_name(), _existing_hold(session, entry)
    if hold is not None:
        if holding.table_exists(session, table):
            raise RuntimeError(f"cannot rename {hold} back: a table {table} exists again")
        session.run(f"RENAME TABLE {q(hold)} TO {q(table)}")
    elif not holding.table_exists(session, table):
        raise RuntimeError(f"{table} and its holding table {entry.hold} are both gone")
    _converge(session, table, entry.detail["before"])  # its foreign keys
    _recreate_triggers(session, entry.detail.get("triggers", []))
    return f"renamed {entry.hold} back"


def _alter(control: Session, session: Session, deploy_id: str, entry: log.UndoEntry, outcome: RevertOutcome) -> str:
    table, detail = entry.table_name(), entry.detail
    new_name = detail.get("new_name")
    if new_name and holding.table_exists(session, new_name) and not holding.table_exists(session, table):
        session.run(f"RENAME TABLE {q(new_name)} TO {q(table)}")
    current = _existing(session, table)
    hold = _existing_hold(session, entry)
    # Held values go back when the statement changed the table; said before the structure
    # changes, so that a rollback resumed after a kill still puts them back.
    if hold is not None and not detail.get("restoring") and not current.same_as(parse(detail["before"])):
        detail["restoring"] = True
        log.save(control, entry)
    for old, new in reversed(detail.get("renames", [])):
        line = current.column(new)
        if line is not None and current.column(old) is None:
            session.run(f"ALTER TABLE {q(table)} CHANGE COLUMN {q(new)} {q(old)}{line[len(q(new)) :]}")
            current = _existing(session, table)
    if hold is None:
        _converge(session, table, detail["before"])
        return ""
    key, dropped, modified = detail["key"], detail.get("dropped", []), detail.get("modified", [])
    # A re-added column is tracked from the moment it exists: the application may write it at once.
    specs = trigger_specs(control, deploy_id, table, extra_tracked={hold: dropped})
    with locked(session, table, specs):
        _converge(session, table, detail["before"])
        holding.install_triggers(session, deploy_id, table, specs)
    note = ""
    if detail.get("restoring"):
        restored = holding.join_back(session, table, hold, key, dropped + modified)
        outcome.kept_application_writes += holding.changed_rows(session, hold, dropped + modified)
        note = f"{restored:,} row(s) of {', '.join(dropped + modified)} back from {hold}"
    # This entry's tracking stops only now, after its values went back.
    holding.install_triggers(session, deploy_id, table, trigger_specs(control, deploy_id, table, without=hold))
    return note


def _rows(control: Session, session: Session, deploy_id: str, entry: log.UndoEntry, outcome: RevertOutcome) -> str:
    table, hold, key = entry.table_name(), _existing_hold(session, entry), entry.detail["key"]
    if hold is None or not holding.table_exists(session, table):
        return "nothing was kept"
    live = {column.name for column in holding.columns(session, table) if not column.generated}
    names = [name for name in entry.detail["columns"] if name in live]
    values = [name for name in names if name not in key]
    image, before, after = q(holding.IMAGE), holding.BEFORE, holding.AFTER
    same = " AND ".join(f"t.{q(c)} <=> a.{q(c)}" for c in values) or "1 = 1"
    hold_q, table_q = q(hold), q(table)
    # Rows it inserted (an after-image, no before-image): deleted where the application left them alone.
    inserted_where = (
        f"FROM {table_q} t JOIN {hold_q} a ON a.{image} = '{after}' AND {key_match(key, 't', 'a')} "
        f"LEFT JOIN {hold_q} b ON b.{image} = '{before}' AND {key_match(key, 'b', 'a')} "
        f"WHERE b.{q(key[0])} IS NULL"
    )
    changed = int(session.value(f"SELECT COUNT(*) {inserted_where} AND NOT ({same})") or 0)
    removed = session.run(f"DELETE t {inserted_where} AND {same}")
    # Rows it updated (both images): each column back where it still holds what the revision wrote.
    both = (
        f"{table_q} t JOIN {hold_q} src ON src.{image} = '{before}' AND {key_match(key, 't', 'src')} "
        f"JOIN {hold_q} a ON a.{image} = '{after}' AND {key_match(key, 'a', 'src')}"
    )
    updated = 0
    if values:
        changed += int(session.value(f"SELECT COUNT(*) FROM {both} WHERE NOT ({same})") or 0)
        assignments = ", ".join(f"t.{q(c)} = IF(t.{q(c)} <=> a.{q(c)}, src.{q(c)}, t.{q(c)})" for c in values)
        updated = holding.chunked(
            session,
            hold,
            key,
            lambda condition: f"UPDATE {both} SET {assignments} WHERE {condition}",
            where=f"{image} = '{before}'",
        )
    # Rows it deleted (a before-image only): inserted again unless the application reused the key.
    deleted_where = (
        f"FROM {hold_q} src LEFT JOIN {hold_q} a ON a.{image} = '{after}' AND {key_match(key, 'a', 'src')} "
        f"WHERE src.{image} = '{before}' AND a.{q(key[0])} IS NULL"
    )
    reused = f"EXISTS (SELECT 1 FROM {table_q} t WHERE {key_match(key, 't', 'src')})"
    changed += int(session.value(f"SELECT COUNT(*) {deleted_where} AND {reused}") or 0)
    restored = session.run(
        f"INSERT INTO {table_q} ({column_list(names)}) SELECT {column_list(names, 'src.')} "
        f"{deleted_where} AND NOT {reused}"
    )
    outcome.kept_application_writes += changed
    parts = [
        f"{count:,} {what}"
        for count, what in (
            (removed, "inserted row(s) removed"),
            (updated, "updated row(s) put back"),
            (restored, "deleted row(s) restored"),
        )
        if count
    ]
    if changed:
        parts.append(f"{changed:,} row(s) the application changed since kept as it left them")
    return "; ".join(parts) or "no rows had changed"


def _online_alter(
    control: Session, session: Session, deploy_id: str, entry: log.UndoEntry, outcome: RevertOutcome
) -> str:
    return online_alter.revert(control, session, deploy_id, entry)


def _object(control: Session, session: Session, deploy_id: str, entry: log.UndoEntry, outcome: RevertOutcome) -> str:
    kind, name, before = entry.detail["type"], entry.detail["name"], entry.detail.get("before")
    session.run(f"DROP {kind} IF EXISTS {q(name)}")
    if before:
        _run_in_mode(session, before["definition"], before.get("sql_mode"))
    return ""


_UNDO = {
    log.CREATE_TABLE: _create_table,
    log.RENAME_TABLE: _rename_table,
    log.DROP_TABLE: _drop_table,
    log.REPLACED_TABLE: _drop_table,
    log.ALTER: _alter,
    log.ONLINE_ALTER: _online_alter,
    log.ROWS: _rows,
    log.OBJECT: _object,
}


def settle(control: Session, session: Session, deploy_id: str) -> list[str]:
    """Drop what a finished deploy kept (triggers first: they write to the holding tables); return the tables."""
    holding.drop_triggers(session, deploy_id)
    session.run(f"DROP TABLE IF EXISTS {q(holding.probe_name(deploy_id))}")  # left by a kill during a probe
    dropped = []
    for entry in log.entries(control, deploy_id):
        if entry.status == log.SETTLED:
            continue
        # An online ALTER's copy and track table, besides the original it set aside.
        extra = [
            entry.detail.get(name) for name in ("copy", "track", "undone", "replicas") if entry.kind == log.ONLINE_ALTER
        ]
        if entry.kind == log.ONLINE_ALTER and entry.status != log.UNDONE:
            online_alter.undo_unswapped(session, deploy_id, entry.table_name(), entry.detail["copy"], [])
        for name in [entry.hold, *extra]:
            if name and holding.table_exists(session, name):
                session.run(f"DROP TABLE IF EXISTS {q(name)}")
                dropped.append(name)
        log.save(control, entry, log.SETTLED)
    return dropped
