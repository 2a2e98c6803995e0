"""An ALTER run online (online_ddl.py): its cut-over, and its undo, which is a rename back.

The online tool leaves an altered copy of the table, kept current by its triggers. Tracking
triggers on the copy then note the key of every row written from then on, in a track table. The
cut-over: under LOCK TABLES (the application waits for milliseconds) the tool's triggers give way
to our mirror triggers and other tables' foreign keys are pointed at the copy; then one RENAME
TABLE sets the original aside under the entry's holding name and gives the copy the table's name
(the foreign keys follow it).

Undoing it needs no copy back: mirror triggers on the table keep the original (aside) current
with the application's writes, the rows the track table names are brought over, and the same
cut-over swaps the original back in. The copy stays aside under a holding name until the deploy
is settled, so a value the original's narrower columns could not take is not lost.

Each step looks at which tables exist, so a kill at any point is undone by running the rollback
again.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pymysql

from . import holding, log
from .session import Session, column_list, q
from .tabledef import TableDef, parse, read, show_create

TOOL_TRIGGER_PREFIX = "pt_osc_"
TRACK_BATCH = 1000
BATCH_ATTEMPTS = 5  # runs of a catch-up batch chosen as a deadlock's victim
DEADLOCK, LOCK_WAIT_TIMEOUT = 1213, 1205


def table_names(deploy_id: str, entry_id: int, table: str) -> dict[str, str]:
    """The holding names of one online ALTER: the original once aside, the tool's copy, the
    track table, and the copy once a rollback set it aside."""
    return {
        "aside": holding.hold_name(deploy_id, entry_id, table),
        "copy": holding.hold_name(deploy_id, entry_id, "n_" + table),
        "track": holding.hold_name(deploy_id, entry_id, "k_" + table),
        "undone": holding.hold_name(deploy_id, entry_id, "u_" + table),
        "replicas": holding.hold_name(deploy_id, entry_id, "r_" + table),
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
        "replicas": names["replicas"],
    }
    log.save(control, entry)
    create_track(control, table, names["track"], key)
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


def _trigger(deploy_id: str, role: str, table: str, event: str) -> str:
    """Our triggers carry the deploy's holding prefix, so settling a deploy drops them."""
    return holding.trigger_name(deploy_id, f"{role}:{table}", event)


def create_track(session: Session, table: str, track: str, key: list[str]) -> None:
    """The table the tracking triggers note written rows' keys in (made before the tool starts)."""
    columns = {column.name: column for column in holding.columns(session, table)}
    parts = [columns[name].definition(not_null=True) for name in key]
    session.run(
        f"CREATE TABLE IF NOT EXISTS {q(track)} ({', '.join(parts)}, PRIMARY KEY ({column_list(key)})) ENGINE=InnoDB"
    )


def install_tracking(session: Session, deploy_id: str, table: str, copy: str, track: str, key: list[str]) -> None:
    """Triggers on the copy (of table) that note each written row's key in the track table."""
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


def cut_over(
    session: Session,
    deploy_id: str,
    table: str,
    incoming: str,
    aside: str,
    mapping: list[tuple[str, str]],
    key: list[str],
    also_locked: list[str],
) -> None:
    """Swap incoming in as table, and table out as aside, with one RENAME TABLE.

    First, under LOCK TABLES (the application waits for milliseconds), the tool's triggers on table
    give way to our mirror triggers (each write to table also upserted into incoming, columns by
    mapping: the tool's REPLACE would delete the row first and cascade to its children), and the
    other tables' foreign keys are pointed at incoming, so that the rename carries them to table's
    name. Two renames under LOCK TABLES would leave a moment without the table, in which a waiting
    write fails (1146); MariaDB refuses RENAME TABLE under LOCK TABLES."""
    prepare_swap(session, deploy_id, table, incoming, mapping, key, also_locked)
    session.run(f"RENAME TABLE {q(table)} TO {q(aside)}, {q(incoming)} TO {q(table)}")
    drop_mirror(session, deploy_id, table)


def prepare_swap(
    session: Session,
    deploy_id: str,
    table: str,
    incoming: str,
    mapping: list[tuple[str, str]],
    key: list[str],
    also_locked: list[str],
) -> None:
    """The cut-over's locked part: mirror triggers instead of the tool's, other tables' foreign keys on incoming."""
    children = _children(session, [table])
    locked = dict.fromkeys([table, incoming, *also_locked, *(child for child, _ in children)])
    with _without_foreign_key_checks(session), _locked(session, list(locked)):
        for name in tool_triggers(session, table):
            session.run(f"DROP TRIGGER {q(name)}")
        _mirror(session, deploy_id, table, incoming, mapping, key)
        _point_children(session, children, incoming)


def drop_mirror(session: Session, deploy_id: str, table: str) -> None:
    for event in holding.TRIGGER_EVENTS:
        session.run(f"DROP TRIGGER IF EXISTS {q(_trigger(deploy_id, 'mirror', table, event))}")


def restore_names(session: Session, table: str, aside: str, before: str) -> None:
    """The table's foreign keys and checks under the names `before` gives them: the tool's copy has
    them under other names (they are unique in a schema), so the aside table's go first."""
    holding.free_names(session, aside, show_create(session, aside) or before, [])
    foreign_keys_back(session, table, before)


def foreign_keys_back(session: Session, table: str, before: str) -> None:
    """The foreign keys `before` gives table, where it lacks them or has them under another name."""
    current, wanted = read(session, table), parse(before)
    if current is None:
        return
    with _without_foreign_key_checks(session):
        for name, line in wanted.foreign_keys.items():
            if name in current.foreign_keys:
                continue
            stale = _same_constraint(current, line, name)
            session.run(f"ALTER TABLE {q(table)} ADD {_retarget(line, wanted.name, table)}")
            if stale:
                session.run(f"ALTER TABLE {q(table)} DROP FOREIGN KEY {q(stale)}")


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
    that a value aside cannot take never fails the application's write (as the tool's own copy does)."""
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


def column_mapping(session: Session, source: str, target: str, renamed: dict[str, str]) -> list[tuple[str, str]]:
    """(column of source, column of target) for every column both have, renamed ones matched."""
    names = [column.name for column in holding.columns(session, source) if not column.generated]
    kept = {column.name for column in holding.columns(session, target) if not column.generated}
    return [(name, renamed.get(name, name)) for name in names if renamed.get(name, name) in kept]


def _catch_up(session: Session, table: str, aside: str, track: str, mapping, key: list[str]) -> int:
    """The rows the track table names, from table into aside (or out of it, when deleted), a batch at a time."""
    moved = 0
    while True:
        for attempt in range(BATCH_ATTEMPTS):
            try:
                count = _catch_up_batch(session, table, aside, track, mapping, key)
                break
            except pymysql.MySQLError as exc:
                # The application's writes, through the mirror triggers, lock the same rows in
                # another order: a deadlock victim is rolled back whole and runs again (a plain
                # loop: no retry library for one place).
                session.run("ROLLBACK")
                if exc.args[:1] not in ((DEADLOCK,), (LOCK_WAIT_TIMEOUT,)) or attempt == BATCH_ATTEMPTS - 1:
                    raise
        if not count:
            return moved
        moved += count


def _catch_up_batch(session: Session, table: str, aside: str, track: str, mapping, key: list[str]) -> int:
    """One batch in one transaction: the keys are forgotten only with their rows brought over, so
    a deadlock, an error or a kill leaves them noted for the next run."""
    targets = column_list(old for _, old in mapping)
    sources = column_list((new for new, _ in mapping), "t.")
    updates = ", ".join(f"{q(old)} = VALUES({q(old)})" for _, old in mapping)
    aside_key = [old for new, old in mapping if new in key]
    session.run("START TRANSACTION")
    batch = session.rows(f"SELECT {column_list(key)} FROM {q(track)} ORDER BY {column_list(key)} LIMIT {TRACK_BATCH}")
    if batch:
        values = ", ".join("(" + ", ".join(session.literal(v) for v in row) + ")" for row in batch)
        # Table, then aside, then track: the order in which an application write and its triggers
        # lock them. The rows read stay locked to the commit, so a later write is carried by the
        # mirror triggers.
        session.run(
            f"INSERT IGNORE INTO {q(aside)} ({targets}) SELECT {sources} FROM {q(table)} t "
            f"WHERE ({column_list(key, 't.')}) IN ({values}) ON DUPLICATE KEY UPDATE {updates}"
        )
        matched = " AND ".join(f"t.{q(new)} = a.{q(old)}" for new, old in mapping if new in key)
        session.run(
            f"DELETE a FROM {q(aside)} a LEFT JOIN {q(table)} t ON {matched} "
            f"WHERE ({column_list(aside_key, 'a.')}) IN ({values}) AND t.{q(key[0])} IS NULL"
        )
        session.run(f"DELETE FROM {q(track)} WHERE ({column_list(key)}) IN ({values})")
    session.run("COMMIT")
    return len(batch)


def revert(control: Session, session: Session, deploy_id: str, entry: log.UndoEntry) -> str:
    """Put the original table back, with every write the application made since (see the module's text)."""
    table, detail = entry.table_name(), entry.detail
    aside, copy, track, undone = entry.hold or "", detail["copy"], detail["track"], detail["undone"]
    if holding.table_exists(session, aside):
        key = detail["key"]
        mapping = column_mapping(session, table, aside, {new: old for old, new in detail.get("renames", [])})
        with _locked(session, [table, aside, track]):
            _drop_triggers_on(session, aside)  # the cut-over's mirror, left by a kill right after its rename
            _mirror(session, deploy_id, table, aside, mapping, key)
        moved = _catch_up(session, table, aside, track, mapping, key)
        cut_over(session, deploy_id, table, aside, undone, mapping, key, [track])
        _settle_aside(session, table, undone, detail["before"])
        session.run(f"DROP TABLE IF EXISTS {q(track)}")
        return f"renamed {aside} back ({moved:,} row(s) written since brought over); the online copy kept as {undone}"
    if holding.table_exists(session, undone):  # killed after the rollback's cut-over
        _settle_aside(session, table, undone, detail["before"])
        session.run(f"DROP TABLE IF EXISTS {q(track)}")
        return f"the original was back; the online copy kept as {undone}"
    dropped = undo_unswapped(session, deploy_id, table, copy, [track, detail.get("replicas", "")])
    foreign_keys_back(session, table, detail["before"])
    return "it had not been swapped in" + (f": dropped {', '.join(dropped)}" if dropped else "")


def undo_unswapped(session: Session, deploy_id: str, table: str, copy: str, tables: list[str]) -> list[str]:
    """What a run stopped before the swap left: the tool's and our triggers on table, other tables'
    foreign keys on the copy (the cut-over's lock may have been taken), the copy and our tables."""
    drop_mirror(session, deploy_id, table)
    with _without_foreign_key_checks(session):
        _point_children(session, _children(session, [copy]), table)
    dropped = []
    for name in tool_triggers(session, table):
        session.run(f"DROP TRIGGER IF EXISTS {q(name)}")
        dropped.append(f"trigger {name}")
    for name in (copy, *tables):
        if name and holding.table_exists(session, name):
            session.run(f"DROP TABLE IF EXISTS {q(name)}")
            dropped.append(f"table {name}")
    return dropped


def _drop_triggers_on(session: Session, table: str) -> None:
    for (name,) in session.rows(
        "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = DATABASE() "
        f"AND EVENT_OBJECT_TABLE = {session.literal(table)}"
    ):
        session.run(f"DROP TRIGGER IF EXISTS {q(name)}")


def _settle_aside(session: Session, table: str, undone: str, before: str) -> None:
    """After the rollback's cut-over: our triggers off the set-aside copy, the original's names back."""
    _drop_triggers_on(session, undone)
    restore_names(session, table, undone, before)


@contextmanager
def _locked(session: Session, tables: list[str]) -> Iterator[None]:
    session.run("LOCK TABLES " + ", ".join(f"{q(name)} WRITE" for name in tables))
    try:
        yield
    finally:
        session.run("UNLOCK TABLES")


@contextmanager
def _without_foreign_key_checks(session: Session) -> Iterator[None]:
    """Adding or moving a foreign key is then metadata only; the session's setting comes back after."""
    checks = int(session.value("SELECT @@SESSION.foreign_key_checks"))
    session.run("SET SESSION foreign_key_checks = 0")
    try:
        yield
    finally:
        session.run(f"SET SESSION foreign_key_checks = {checks}")
