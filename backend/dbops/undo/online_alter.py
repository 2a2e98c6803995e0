"""An ALTER run online (online_ddl.py): its cut-over, and its undo, which is a rename back.

The online tool leaves an altered copy of the table, kept current by its triggers. The cut-over
swaps it in under LOCK TABLES (the application waits for milliseconds): the tool's triggers go,
the original is renamed aside to the entry's holding name and the copy takes its place, and the
foreign keys of other tables, which followed the original's rename, are pointed back at the
table's name. Before that, tracking triggers on the copy note the key of every row written from
then on, in a track table.

Undoing it needs no copy back: mirror triggers on the table keep the original (aside) current
with the application's writes, the rows the track table names are brought over, and a second
cut-over swaps the original back in. The copy stays aside under a holding name until the deploy
is settled, so a value the original's narrower columns could not take is not lost.

Each step looks at which tables exist, so a kill at any point (even between the two renames of
a cut-over) is undone by running the rollback again.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from . import holding, log
from .session import Session, column_list, q
from .tabledef import TableDef, parse, read, show_create

TOOL_TRIGGER_PREFIX = "pt_osc_"
TRACK_BATCH = 1000


def table_names(deploy_id: str, entry_id: int, table: str) -> dict[str, str]:
    """The holding names of one online ALTER: the original once aside, the tool's copy, the
    track table, and the copy once a rollback set it aside."""
    return {
        "aside": holding.hold_name(deploy_id, entry_id, table),
        "copy": holding.hold_name(deploy_id, entry_id, "n_" + table),
        "track": holding.hold_name(deploy_id, entry_id, "k_" + table),
        "undone": holding.hold_name(deploy_id, entry_id, "u_" + table),
    }


def start(
    control: Session, deploy_id: str, revision: str | None, table: str, key: list[str], renames: list
) -> log.UndoEntry:
    """The undo entry, written before the tool starts: a kill from here on is undone from it."""
    entry = log.add(control, deploy_id, revision, log.ONLINE_ALTER, table, detail={})
    names = table_names(deploy_id, entry.id, table)
    entry.hold = names["aside"]
    entry.detail = {
        "before": show_create(control, table),
        "key": key,
        "renames": [list(pair) for pair in renames],
        "copy": names["copy"],
        "track": names["track"],
        "undone": names["undone"],
    }
    log.save(control, entry)
    return entry


def tool_triggers(session: Session, table: str) -> list[str]:
    """The online tool's triggers on table."""
    return [
        row[0]
        for row in session.rows(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = DATABASE() "
            f"AND EVENT_OBJECT_TABLE = {session.literal(table)} "
            f"AND TRIGGER_NAME LIKE {session.literal(TOOL_TRIGGER_PREFIX.replace('_', chr(92) + '_') + '%')}"
        )
    ]


def drop_tool_leftovers(session: Session, table: str, copy: str) -> list[str]:
    """The tool's triggers on table and its copy, when a run stopped before the cut-over."""
    dropped = []
    for name in tool_triggers(session, table):
        session.run(f"DROP TRIGGER IF EXISTS {q(name)}")
        dropped.append(f"trigger {name}")
    if holding.table_exists(session, copy):
        session.run(f"DROP TABLE IF EXISTS {q(copy)}")
        dropped.append(f"table {copy}")
    return dropped


def _trigger(deploy_id: str, role: str, table: str, event: str) -> str:
    """Our triggers carry the deploy's holding prefix, so settling a deploy drops them."""
    return holding.trigger_name(deploy_id, f"{role}:{table}", event)


def install_tracking(session: Session, deploy_id: str, table: str, copy: str, track: str, key: list[str]) -> None:
    """The track table, and triggers on the copy (of table) that note each written row's key in it."""
    columns = {column.name: column for column in holding.columns(session, copy)}
    parts = [columns[name].definition(not_null=True) for name in key]
    session.run(
        f"CREATE TABLE IF NOT EXISTS {q(track)} ({', '.join(parts)}, PRIMARY KEY ({column_list(key)})) ENGINE=InnoDB"
    )
    keys = {
        "ai": [f"INSERT IGNORE INTO {q(track)} ({column_list(key)}) VALUES ({column_list(key, 'NEW.')});"],
        "au": [
            f"INSERT IGNORE INTO {q(track)} ({column_list(key)}) VALUES ({column_list(key, 'NEW.')});",
            f"INSERT IGNORE INTO {q(track)} ({column_list(key)}) VALUES ({column_list(key, 'OLD.')});",
        ],
        "ad": [f"INSERT IGNORE INTO {q(track)} ({column_list(key)}) VALUES ({column_list(key, 'OLD.')});"],
    }
    for event, body in keys.items():
        name = q(_trigger(deploy_id, "track", table, event))
        session.run(f"DROP TRIGGER IF EXISTS {name}")
        session.run(
            f"CREATE TRIGGER {name} AFTER {holding.TRIGGER_EVENTS[event]} ON {q(copy)} FOR EACH ROW "
            f"BEGIN {' '.join(body)} END"
        )


_REFERENCES = re.compile(r"REFERENCES `(?:[^`]|``)+`")


def _children(session: Session, parents: list[str]) -> list[tuple[str, str]]:
    """(table, constraint) of the foreign keys that reference any of parents, from other tables."""
    names = ", ".join(session.literal(name) for name in parents)
    return [
        (child, constraint)
        for child, constraint in session.rows(
            "SELECT TABLE_NAME, CONSTRAINT_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS "
            f"WHERE CONSTRAINT_SCHEMA = DATABASE() AND REFERENCED_TABLE_NAME IN ({names}) "
            f"AND TABLE_NAME NOT IN ({names}) ORDER BY TABLE_NAME, CONSTRAINT_NAME"
        )
    ]


def _point_children(session: Session, children: list[tuple[str, str]], table: str) -> None:
    """Point these foreign keys at table (same names, columns and rules): a renamed parent took them along.
    Under foreign_key_checks = 0 both statements change metadata only."""
    definitions = {child: parse(show_create(session, child) or "") for child, _ in children}
    for child, constraint in children:
        line = definitions[child].foreign_keys.get(constraint)
        if line is None:
            continue
        session.run(f"ALTER TABLE {q(child)} DROP FOREIGN KEY {q(constraint)}")
        session.run(f"ALTER TABLE {q(child)} ADD {_REFERENCES.sub(f'REFERENCES {q(table)}', line, count=1)}")


def cut_over(session: Session, table: str, incoming: str, aside: str, also_locked: list[str]) -> None:
    """Swap incoming in as table and table out as aside, the application waiting on LOCK TABLES
    meanwhile; the tool's triggers on table go, and other tables' foreign keys come back to table."""
    children = _children(session, [table])
    locked = dict.fromkeys([table, incoming, *also_locked, *(child for child, _ in children)])
    session.run("SET SESSION foreign_key_checks = 0")
    session.run("LOCK TABLES " + ", ".join(f"{q(name)} WRITE" for name in locked))
    try:
        for name in tool_triggers(session, table):
            session.run(f"DROP TRIGGER {q(name)}")
        session.run(f"ALTER TABLE {q(table)} RENAME TO {q(aside)}")
        session.run(f"ALTER TABLE {q(incoming)} RENAME TO {q(table)}")
        _point_children(session, children, table)
    finally:
        session.run("UNLOCK TABLES")
        session.run("SET SESSION foreign_key_checks = 1")


def restore_names(session: Session, table: str, aside: str, before: str) -> None:
    """The table's foreign keys and checks under the names `before` gives them: the tool's copy has
    them under other names (they are unique in a schema), so the aside table's go first."""
    holding.free_names(session, aside, show_create(session, aside) or before, [])
    current, wanted = read(session, table), parse(before)
    if current is None:
        return
    session.run("SET SESSION foreign_key_checks = 0")
    try:
        for name, line in wanted.foreign_keys.items():
            if name in current.foreign_keys:
                continue
            stale = _same_constraint(current, line, name)
            session.run(f"ALTER TABLE {q(table)} ADD {_retarget(line, wanted.name, table)}")
            if stale:
                session.run(f"ALTER TABLE {q(table)} DROP FOREIGN KEY {q(stale)}")
    finally:
        session.run("SET SESSION foreign_key_checks = 1")


def _same_constraint(current: TableDef, line: str, name: str) -> str | None:
    """The name current gives the constraint `line` defines as `name` (the tool's copy renames them)."""
    body = line.split(q(name), 1)[-1]
    return next((other for other, text in current.foreign_keys.items() if text.split(q(other), 1)[-1] == body), None)


def _retarget(line: str, old: str, new: str) -> str:
    """A self-referencing foreign key names the table it is on."""
    return line.replace(f"REFERENCES {q(old)} ", f"REFERENCES {q(new)} ") if old != new else line


# ---------------------------------------------------------------- undo


def _mirror(session: Session, deploy_id: str, table: str, aside: str, mapping: list[tuple[str, str]], key: list[str]):
    """Triggers on table that write each change into aside (columns mapped table -> aside): IGNORE, so
    that a value aside cannot take never fails the application's write (the copy keeps it)."""
    names = [new for new, _ in mapping]
    targets = [old for _, old in mapping]
    new_values = ", ".join(f"NEW.{q(name)}" for name in names)
    updates = ", ".join(f"{q(old)} = VALUES({q(old)})" for old in targets)
    upsert = f"INSERT IGNORE INTO {q(aside)} ({column_list(targets)}) VALUES ({new_values}) ON DUPLICATE KEY UPDATE {updates};"
    old_key = " AND ".join(f"{q(old)} = OLD.{q(new)}" for new, old in mapping if new in key)
    key_kept = " AND ".join(f"NEW.{q(k)} <=> OLD.{q(k)}" for k in key)
    bodies = {
        "ai": upsert,
        "au": f"IF NOT ({key_kept}) THEN DELETE FROM {q(aside)} WHERE {old_key}; END IF; {upsert}",
        "ad": f"DELETE FROM {q(aside)} WHERE {old_key};",
    }
    for event, body in bodies.items():
        name = q(_trigger(deploy_id, "mirror", table, event))
        session.run(f"DROP TRIGGER IF EXISTS {name}")
        session.run(
            f"CREATE TRIGGER {name} AFTER {holding.TRIGGER_EVENTS[event]} ON {q(table)} FOR EACH ROW BEGIN {body} END"
        )


def _mapping(session: Session, table: str, aside: str, renames: list) -> list[tuple[str, str]]:
    """(column of table, column of aside) for every column both have, renamed columns matched."""
    renamed = {new: old for old, new in renames}
    live = [column.name for column in holding.columns(session, table) if not column.generated]
    held = {column.name for column in holding.columns(session, aside) if not column.generated}
    return [(name, renamed.get(name, name)) for name in live if renamed.get(name, name) in held]


def _catch_up(session: Session, table: str, aside: str, track: str, mapping, key: list[str]) -> int:
    """The rows the track table names, from table into aside (or out of it, when deleted), a batch at a time."""
    targets = column_list(old for _, old in mapping)
    sources = column_list((new for new, _ in mapping), "t.")
    updates = ", ".join(f"{q(old)} = VALUES({q(old)})" for _, old in mapping)
    aside_key = [old for new, old in mapping if new in key]
    moved = 0
    while True:
        batch = session.rows(
            f"SELECT {column_list(key)} FROM {q(track)} ORDER BY {column_list(key)} LIMIT {TRACK_BATCH}"
        )
        if not batch:
            return moved
        values = ", ".join("(" + ", ".join(session.literal(v) for v in row) + ")" for row in batch)
        # Forgotten first: a write from now on notes the key again, and the mirror triggers carry it.
        session.run(f"DELETE FROM {q(track)} WHERE ({column_list(key)}) IN ({values})")
        session.run(
            f"INSERT IGNORE INTO {q(aside)} ({targets}) SELECT {sources} FROM {q(table)} t "
            f"WHERE ({column_list(key, 't.')}) IN ({values}) ON DUPLICATE KEY UPDATE {updates}"
        )
        matched = " AND ".join(f"t.{q(new)} = a.{q(old)}" for new, old in mapping if new in key)
        session.run(
            f"DELETE a FROM {q(aside)} a LEFT JOIN {q(table)} t ON {matched} "
            f"WHERE ({column_list(aside_key, 'a.')}) IN ({values}) AND t.{q(key[0])} IS NULL"
        )
        moved += len(batch)


def revert(control: Session, session: Session, deploy_id: str, entry: log.UndoEntry) -> str:
    """Put the original table back, with every write the application made since (see the module's text)."""
    table, detail = entry.table_name(), entry.detail
    aside, copy, track, undone = entry.hold or "", detail["copy"], detail["track"], detail["undone"]
    exists = {name: holding.table_exists(session, name) for name in (table, aside, copy, undone)}
    if exists[aside] and not exists[table]:
        # Killed between the cut-over's two renames: the original goes back, the copy is dropped below.
        session.run(f"ALTER TABLE {q(aside)} RENAME TO {q(table)}")
        _point_children(session, _children(session, [aside]), table)
        exists[aside], exists[table] = False, True
    if exists[aside]:
        key = detail["key"]
        mapping = _mapping(session, table, aside, detail.get("renames", []))
        with _locked(session, [table, aside, track]):
            _mirror(session, deploy_id, table, aside, mapping, key)
        moved = _catch_up(session, table, aside, track, mapping, key)
        cut_over(session, table, aside, undone, [track])
        _settle_aside(session, table, undone, detail["before"])
        session.run(f"DROP TABLE IF EXISTS {q(track)}")
        return f"renamed {aside} back ({moved:,} row(s) written since brought over); the online copy kept as {undone}"
    if exists[undone]:  # killed after the rollback's cut-over
        _settle_aside(session, table, undone, detail["before"])
        session.run(f"DROP TABLE IF EXISTS {q(track)}")
        return f"the original was back; the online copy kept as {undone}"
    dropped = drop_tool_leftovers(session, table, copy)
    session.run(f"DROP TABLE IF EXISTS {q(track)}")
    return "it had not been swapped in" + (f": dropped {', '.join(dropped)}" if dropped else "")


def _settle_aside(session: Session, table: str, undone: str, before: str) -> None:
    """After the rollback's cut-over: our triggers off the set-aside copy, the original's names back."""
    for (name,) in session.rows(
        "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = DATABASE() "
        f"AND EVENT_OBJECT_TABLE = {session.literal(undone)}"
    ):
        session.run(f"DROP TRIGGER IF EXISTS {q(name)}")
    restore_names(session, table, undone, before)


@contextmanager
def _locked(session: Session, tables: list[str]) -> Iterator[None]:
    session.run("LOCK TABLES " + ", ".join(f"{q(name)} WRITE" for name in tables))
    try:
        yield
    finally:
        session.run("UNLOCK TABLES")
