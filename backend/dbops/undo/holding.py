"""Holding tables, and the triggers that keep them exact while the application writes.

A holding table keeps what a statement is about to destroy: a dropped table itself (renamed,
nothing copied), the key and values of dropped or narrowed columns, or the before- and
after-images of the rows a revision's data change touches. They live beside the application's
tables under the HOLD_PREFIX name until the deploy is settled, so a rollback of any statement
is a rename or a join by key on the server, and a rollback killed halfway finds them still there.

Column values are copied in key order in small chunks, so the application waits at most for a
chunk's row locks; triggers installed before the copy keep the holding table current with the
application's writes during it, and the ALTER itself runs with those triggers dropped under
LOCK TABLES, so no write falls between the copy and the statement. After a narrowing ALTER,
tracking triggers mark the rows the application changes, whose new values a rollback keeps.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ..tool_tables import HOLD_PREFIX
from .session import Session, column_list, key_match, q
from .tabledef import parse

CHUNK_ROWS = 5000
# Set in every session of the tool (connection init command): its own writes are not the application's.
TOOL_SESSION_VARIABLE = "@alembic_tool_session"
COPY, TRACK = "copy", "track"
TRIGGER_EVENTS = {"ai": "INSERT", "au": "UPDATE", "ad": "DELETE"}
CHANGED = "_changed_"  # one flag per held column: _changed_0, _changed_1...
IMAGE = "_image"
BEFORE, AFTER = "b", "a"


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    column_type: str
    data_type: str
    charset: str | None
    collation: str | None
    nullable: bool
    generated: bool
    length: int | None
    precision: int | None
    scale: int | None
    on_update: bool = False  # ON UPDATE CURRENT_TIMESTAMP: changes by itself when the row is updated

    def definition(self, not_null: bool = False) -> str:
        charset = f" CHARACTER SET {self.charset} COLLATE {self.collation}" if self.charset else ""
        return f"{q(self.name)} {self.column_type}{charset} " + ("NOT NULL" if not_null else "NULL DEFAULT NULL")


def hold_name(deploy_id: str, entry_id: int, table: str) -> str:
    base = f"{HOLD_PREFIX}{deploy_id[:8]}_{entry_id}_"
    return base + re.sub(r"\W", "_", table, flags=re.ASCII)[: 64 - len(base)]


def probe_name(deploy_id: str) -> str:
    """The empty copy of a table an ALTER is tried on, to see which columns it retypes."""
    return hold_name(deploy_id, 0, "probe")


def trigger_name(deploy_id: str, table: str, event: str) -> str:
    return f"{HOLD_PREFIX}{deploy_id[:8]}_{hashlib.sha1(table.encode()).hexdigest()[:10]}_{event}"


def columns(session: Session, table: str) -> list[ColumnInfo]:
    rows = session.rows(
        "SELECT COLUMN_NAME, COLUMN_TYPE, DATA_TYPE, CHARACTER_SET_NAME, COLLATION_NAME, IS_NULLABLE, "
        "COALESCE(GENERATION_EXPRESSION, '') <> '', CHARACTER_MAXIMUM_LENGTH, "
        "NUMERIC_PRECISION, NUMERIC_SCALE, EXTRA LIKE '%on update%' FROM information_schema.COLUMNS "
        f"WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = {session.literal(table)} ORDER BY ORDINAL_POSITION"
    )
    return [
        ColumnInfo(
            name,
            column_type,
            data_type.lower(),
            charset,
            collation,
            nullable == "YES",
            bool(generated),
            None if length is None else int(length),
            None if precision is None else int(precision),
            None if scale is None else int(scale),
            bool(on_update),
        )
        for name, column_type, data_type, charset, collation, nullable, generated, length, precision, scale, on_update in rows
    ]


def table_key(session: Session, table: str) -> list[str] | None:
    """The primary key's columns, else those of the first unique key of NOT NULL columns; None without one."""
    rows = session.rows(
        "SELECT s.INDEX_NAME, s.COLUMN_NAME, c.IS_NULLABLE FROM information_schema.STATISTICS s "
        "JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = s.TABLE_SCHEMA AND c.TABLE_NAME = s.TABLE_NAME "
        "AND c.COLUMN_NAME = s.COLUMN_NAME WHERE s.TABLE_SCHEMA = DATABASE() AND s.NON_UNIQUE = 0 "
        f"AND s.TABLE_NAME = {session.literal(table)} AND s.SUB_PART IS NULL "
        "ORDER BY s.INDEX_NAME <> 'PRIMARY', s.INDEX_NAME, s.SEQ_IN_INDEX"
    )
    keys: dict[str, list[tuple[str, bool]]] = {}
    for index, column, nullable in rows:
        keys.setdefault(index, []).append((column, nullable == "YES"))
    for parts in keys.values():
        if not any(nullable for _, nullable in parts):
            return [column for column, _ in parts]
    return None


def table_exists(session: Session, table: str) -> bool:
    return bool(
        session.value(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
            f"AND TABLE_NAME = {session.literal(table)} AND TABLE_TYPE = 'BASE TABLE'"
        )
    )


def changed_flag(index: int) -> str:
    return f"{CHANGED}{index}"


def create_column_hold(session: Session, hold: str, key: list[ColumnInfo], held: list[ColumnInfo]) -> None:
    parts = [column.definition(not_null=True) for column in key] + [column.definition() for column in held]
    parts += [f"{q(changed_flag(index))} TINYINT NOT NULL DEFAULT 0" for index in range(len(held))]
    session.run(
        f"CREATE TABLE IF NOT EXISTS {q(hold)} ({', '.join(parts)}, PRIMARY KEY ({column_list(c.name for c in key)})) "
        "ENGINE=InnoDB"
    )


def create_rows_hold(session: Session, hold: str, key: list[str], table_columns: list[ColumnInfo]) -> None:
    parts = [f"{q(IMAGE)} CHAR(1) NOT NULL"]
    parts += [column.definition(not_null=column.name in key) for column in table_columns if not column.generated]
    session.run(
        f"CREATE TABLE IF NOT EXISTS {q(hold)} ({', '.join(parts)}, PRIMARY KEY ({q(IMAGE)}, {column_list(key)})) "
        "ENGINE=InnoDB"
    )


@dataclass(frozen=True)
class TriggerSpec:
    """What our triggers on a table do for one holding table."""

    hold: str
    key: tuple[str, ...]
    columns: tuple[str, ...]
    mode: str  # COPY: keep the holding table equal to the table's columns; TRACK: flag what the application changes
    flags: tuple[int, ...] = ()  # TRACK: the changed-flag index of each column


def _bodies(specs: list[TriggerSpec]) -> dict[str, list[str]]:
    bodies: dict[str, list[str]] = {"ai": [], "au": [], "ad": []}
    for spec in specs:
        hold, names = q(spec.hold), list(spec.key) + list(spec.columns)
        new_values = ", ".join(f"NEW.{q(name)}" for name in names)
        if spec.mode == COPY:
            replace = f"REPLACE INTO {hold} ({column_list(names)}) VALUES ({new_values});"
            old_key = " AND ".join(f"{q(k)} = OLD.{q(k)}" for k in spec.key)
            key_kept = " AND ".join(f"NEW.{q(k)} <=> OLD.{q(k)}" for k in spec.key)
            bodies["ai"].append(replace)
            bodies["au"].append(f"IF NOT ({key_kept}) THEN DELETE FROM {hold} WHERE {old_key}; END IF; {replace}")
            bodies["ad"].append(f"DELETE FROM {hold} WHERE {old_key};")
        else:
            new_key = " AND ".join(f"{q(k)} = NEW.{q(k)}" for k in spec.key)
            every = ", ".join(f"{q(changed_flag(flag))} = 1" for flag in spec.flags)
            bodies["ai"].append(
                f"IF {TOOL_SESSION_VARIABLE} IS NULL THEN UPDATE {hold} SET {every} WHERE {new_key}; END IF;"
            )
            for column, flag in zip(spec.columns, spec.flags, strict=True):
                bodies["au"].append(
                    f"IF {TOOL_SESSION_VARIABLE} IS NULL AND NOT (NEW.{q(column)} <=> OLD.{q(column)}) THEN "
                    f"UPDATE {hold} SET {q(changed_flag(flag))} = 1 WHERE {new_key}; END IF;"
                )
    return bodies


def install_triggers(session: Session, deploy_id: str, table: str, specs: list[TriggerSpec]) -> None:
    """Replace our triggers on table by those the specs need (none when empty). The caller holds
    LOCK TABLES ... WRITE when the replacement must be atomic for the application."""
    for event, body in _bodies(specs).items():
        name = q(trigger_name(deploy_id, table, event))
        session.run(f"DROP TRIGGER IF EXISTS {name}")
        if body:
            session.run(
                f"CREATE TRIGGER {name} AFTER {TRIGGER_EVENTS[event]} ON {q(table)} FOR EACH ROW "
                f"BEGIN {' '.join(body)} END"
            )


def drop_triggers(session: Session, deploy_id: str) -> int:
    """Every trigger a deploy left, on any table; returns how many."""
    names = [
        row[0]
        for row in session.rows(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() "
            f"AND TRIGGER_NAME LIKE {session.literal(_like_prefix(HOLD_PREFIX + deploy_id[:8] + '_'))}"
        )
    ]
    for name in names:
        session.run(f"DROP TRIGGER IF EXISTS {q(name)}")
    return len(names)


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"


def _chunk_bounds(session: Session, table: str, key: list[str], where: str = "") -> list[tuple | None]:
    """Key values that cut the table (in key order) into chunks of CHUNK_ROWS; ends with None (open end)."""
    bounds: list[tuple | None] = []
    last: tuple | None = None
    order = column_list(key)
    while True:
        conditions = [condition for condition in (where, _key_compared(session, key, ">", last)) if condition]
        row = session.rows(
            f"SELECT {order} FROM {q(table)}"
            + (f" WHERE {' AND '.join(conditions)}" if conditions else "")
            + f" ORDER BY {order} LIMIT 1 OFFSET {CHUNK_ROWS - 1}"
        )
        if not row:
            bounds.append(None)
            return bounds
        last = tuple(row[0])
        bounds.append(last)


def _key_compared(session: Session, key: list[str], operator: str, value: tuple | None, prefix: str = "") -> str:
    """`key operator value` (a row comparison for a composite key); '' without a value."""
    if value is None:
        return ""
    columns = [f"{prefix}{q(k)}" for k in key]
    if len(key) == 1:
        return f"{columns[0]} {operator} {session.literal(value[0])}"
    return f"({', '.join(columns)}) {operator} ({', '.join(session.literal(v) for v in value)})"


def chunked(session: Session, table: str, key: list[str], statement, where: str = "") -> int:
    """Run statement(range_condition) once per chunk of table in key order (each its own transaction)."""
    total, previous = 0, None
    for bound in _chunk_bounds(session, table, key, where):
        condition = (
            " AND ".join(
                part
                for part in (
                    _key_compared(session, key, ">", previous, "src."),
                    _key_compared(session, key, "<=", bound, "src."),
                )
                if part
            )
            or "1 = 1"
        )
        total += session.run(statement(condition))
        session.commit()
        previous = bound
    return total


def copy_columns(session: Session, table: str, hold: str, key: list[str], held: list[str]) -> int:
    """The key and held columns of every row into hold, chunk by chunk, under shared row locks."""
    names = key + held
    return chunked(
        session,
        table,
        key,
        lambda condition: (
            f"INSERT IGNORE INTO {q(hold)} ({column_list(names)}) SELECT {column_list(names, 'src.')} "
            f"FROM {q(table)} src WHERE {condition} LOCK IN SHARE MODE"
        ),
    )


def join_back(session: Session, table: str, hold: str, key: list[str], held: list[str]) -> int:
    """Held values back into the table's rows of the same key, each column where the application left it alone."""
    assignments = ", ".join(
        f"t.{q(column)} = IF(src.{q(changed_flag(index))} = 0, src.{q(column)}, t.{q(column)})"
        for index, column in enumerate(held)
    )
    # Naming an ON UPDATE CURRENT_TIMESTAMP column keeps it: putting a value back is not the row's update.
    assignments += "".join(
        f", t.{q(c.name)} = t.{q(c.name)}" for c in columns(session, table) if c.on_update and c.name not in held
    )
    return chunked(
        session,
        hold,
        key,
        lambda condition: (
            f"UPDATE {q(table)} t JOIN {q(hold)} src ON {key_match(key, 't', 'src')} SET {assignments} "
            f"WHERE {condition}"
        ),
    )


def changed_rows(session: Session, hold: str, held: list[str]) -> int:
    """Rows of a column hold with a value the application changed (kept, not put back)."""
    flags = " OR ".join(f"{q(changed_flag(index))} = 1" for index in range(len(held)))
    return int(session.value(f"SELECT COUNT(*) FROM {q(hold)} WHERE {flags}") or 0)


def table_triggers(session: Session, table: str) -> list[dict]:
    """The definitions of a table's triggers, to be created again after it comes back."""
    found = []
    for (name,) in session.rows(
        "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = DATABASE() "
        f"AND EVENT_OBJECT_TABLE = {session.literal(table)} ORDER BY ACTION_ORDER"
    ):
        row = session.rows(f"SHOW CREATE TRIGGER {q(name)}")[0]
        found.append({"name": name, "sql_mode": row[1], "definition": row[2]})
    return found


def free_names(session: Session, hold: str, before: str, triggers: list[dict]) -> None:
    """Drop a held table's triggers, foreign keys and checks: their names are unique in the schema
    (on MySQL), and a table created in its place may need them. before and triggers bring them back."""
    for trigger in triggers:
        session.run(f"DROP TRIGGER IF EXISTS {q(trigger['name'])}")
    definition = parse(before)
    drops = [f"DROP FOREIGN KEY {q(name)}" for name in definition.foreign_keys]
    drops += [f"DROP CONSTRAINT {q(name)}" for name in definition.checks]
    if drops:
        session.run(f"ALTER TABLE {q(hold)} {', '.join(drops)}")


def holding_tables(session: Session) -> list[tuple[str, int]]:
    """(name, bytes) of every holding table of the database."""
    return [
        (name, int(size or 0))
        for name, size in session.rows(
            "SELECT TABLE_NAME, DATA_LENGTH + INDEX_LENGTH FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
            f"AND TABLE_NAME LIKE {session.literal(_like_prefix(HOLD_PREFIX))} ORDER BY TABLE_NAME"
        )
    ]
