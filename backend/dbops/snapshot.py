"""Normalized schema snapshots from information_schema, and table row counts.

A snapshot is plain data (dicts, lists, strings) so two can be compared with ==,
stored as JSON, and diffed table by table. Server quirks are normalized: MariaDB
reports defaults as expressions (current_timestamp(), NULL as a string), MySQL as
literals; integer display widths are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Container
from typing import TYPE_CHECKING, Any

from .identifiers import quote_identifier

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

Snapshot = dict[str, dict[str, Any]]

_DISPLAY_WIDTH = re.compile(r"^(tinyint|smallint|mediumint|int|bigint)\(\d+\)")


def _normalize_type(column_type: str) -> str:
    return _DISPLAY_WIDTH.sub(r"\1", column_type.lower())


def _normalize_default(default: str | None, extra: str) -> str | None:
    if default is None or default == "NULL":
        return None
    value = default.strip()
    if value.lower() in ("current_timestamp()", "current_timestamp"):
        return "CURRENT_TIMESTAMP"
    # MariaDB quotes string literals ('active'); MySQL does not (active).
    if len(value) >= 2 and value[0] == value[-1] == "'":
        value = value[1:-1]
    return value


def _normalize_extra(extra: str) -> str:
    extra = extra.lower().replace("default_generated", "").strip()
    return re.sub(r"current_timestamp\(\)", "current_timestamp", extra)


def _rows(connection: Connection, sql: str, database: str) -> list:
    from sqlalchemy import text

    return list(connection.execute(text(sql), {"db": database}))


def schema_snapshot(connection: Connection, database: str, exclude: Container[str] = frozenset()) -> Snapshot:
    """Tables with columns, indexes, foreign keys and checks of one database."""
    tables: Snapshot = {}
    for name, engine, collation in _rows(
        connection,
        "SELECT TABLE_NAME, ENGINE, TABLE_COLLATION FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = :db AND TABLE_TYPE = 'BASE TABLE'",
        database,
    ):
        if name not in exclude:
            tables[name] = {
                "engine": engine,
                "collation": collation,
                "columns": [],
                "indexes": {},
                "foreign_keys": {},
                "checks": {},
            }

    for table, column, column_type, nullable, default, extra, collation in _rows(
        connection,
        "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA, COLLATION_NAME "
        "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = :db ORDER BY TABLE_NAME, ORDINAL_POSITION",
        database,
    ):
        if table in tables:
            tables[table]["columns"].append(
                [
                    column,
                    _normalize_type(column_type),
                    nullable == "YES",
                    _normalize_default(default, extra),
                    _normalize_extra(extra),
                    collation,
                ]
            )

    for table, index, non_unique, column, sub_part in _rows(
        connection,
        "SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA = :db ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX",
        database,
    ):
        if table in tables:
            entry = tables[table]["indexes"].setdefault(index, {"unique": not int(non_unique), "columns": []})
            entry["columns"].append(column if sub_part is None else f"{column}({sub_part})")

    for table, name, column, ref_table, ref_column, update_rule, delete_rule in _rows(
        connection,
        "SELECT k.TABLE_NAME, k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME, "
        "r.UPDATE_RULE, r.DELETE_RULE FROM information_schema.KEY_COLUMN_USAGE k "
        "JOIN information_schema.REFERENTIAL_CONSTRAINTS r "
        "ON r.CONSTRAINT_SCHEMA = k.TABLE_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME AND r.TABLE_NAME = k.TABLE_NAME "
        "WHERE k.TABLE_SCHEMA = :db AND k.REFERENCED_TABLE_NAME IS NOT NULL "
        "ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION",
        database,
    ):
        if table in tables:
            entry = tables[table]["foreign_keys"].setdefault(
                name,
                {
                    "columns": [],
                    "references": ref_table,
                    "referenced_columns": [],
                    "on_update": _normalize_rule(update_rule),
                    "on_delete": _normalize_rule(delete_rule),
                },
            )
            entry["columns"].append(column)
            entry["referenced_columns"].append(ref_column)

    for table, name, clause in _rows(
        connection,
        "SELECT tc.TABLE_NAME, cc.CONSTRAINT_NAME, cc.CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS cc "
        "JOIN information_schema.TABLE_CONSTRAINTS tc ON tc.CONSTRAINT_SCHEMA = cc.CONSTRAINT_SCHEMA "
        "AND tc.CONSTRAINT_NAME = cc.CONSTRAINT_NAME AND tc.CONSTRAINT_TYPE = 'CHECK' "
        "WHERE cc.CONSTRAINT_SCHEMA = :db",
        database,
    ):
        if table in tables:
            tables[table]["checks"][name] = _normalize_check(clause)
    _normalize_mariadb_json(tables)
    return tables


def _normalize_rule(rule: str) -> str:
    # InnoDB treats NO ACTION as RESTRICT; MySQL reports one, MariaDB the other.
    return "RESTRICT" if rule == "NO ACTION" else rule


def _normalize_check(clause: str) -> str:
    """Without quotes, spaces and case; MySQL wraps the whole clause in parentheses, MariaDB does not."""
    text = re.sub(r"[`\s]", "", clause).lower()
    while text.startswith("(") and text.endswith(")") and _balanced(text[1:-1]):
        text = text[1:-1]
    return text


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def _normalize_mariadb_json(tables: Snapshot) -> None:
    """MariaDB's JSON is LONGTEXT (utf8mb4_bin) with an automatic json_valid() check: report it as MySQL does."""
    for table in tables.values():
        for column in table["columns"]:
            name = column[0]
            if column[1] == "longtext" and table["checks"].get(name) == f"json_valid({name.lower()})":
                column[1], column[5] = "json", None
                del table["checks"][name]


def differing_tables(before: Snapshot, after: Snapshot) -> list[str]:
    """Names of tables added, dropped or changed between two snapshots."""
    return sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))


def row_counts(connection: Connection, tables: list[str] | set[str]) -> dict[str, int]:
    from sqlalchemy import text

    return {
        name: connection.execute(text(f"SELECT COUNT(*) FROM {quote_identifier(name, 'table name')}")).scalar_one()
        for name in sorted(tables)
    }
