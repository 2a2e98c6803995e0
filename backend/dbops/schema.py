"""One typed snapshot of a live schema, the normalizations of server quirks, and one differ.

`read_schema()` reads a database's tables from information_schema into frozen dataclasses,
so that two snapshots compare with ==. Server quirks are normalized once, here: MariaDB
reports defaults as expressions (current_timestamp(), NULL as a string, quoted literals),
MySQL as literals; integer display widths and type synonyms are dropped; MariaDB's JSON
(LONGTEXT with a json_valid() check) reads as MySQL's JSON; NO ACTION reads as RESTRICT.

`diff()` names every difference between two snapshots as a Difference: drift, adopt, recover
and the migrations tests all compare schemas with it.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .identifiers import quote_identifier

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from .undo.session import Session


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # normalized: varchar(64), int, tinyint, json
    nullable: bool
    default: str | None  # normalized: None for no default or NULL, CURRENT_TIMESTAMP, unquoted literals
    extra: str  # auto_increment, on update current_timestamp
    collation: str | None


@dataclass(frozen=True)
class Index:
    name: str
    columns: tuple[str, ...]  # a prefix index's column as "name(10)"
    unique: bool


@dataclass(frozen=True)
class ForeignKey:
    name: str
    columns: tuple[str, ...]
    references: str
    referenced_columns: tuple[str, ...]
    on_update: str
    on_delete: str


@dataclass(frozen=True)
class Table:
    name: str
    engine: str | None
    collation: str | None
    columns: tuple[Column, ...] = ()  # in the table's order
    indexes: dict[str, Index] = field(default_factory=dict)
    foreign_keys: dict[str, ForeignKey] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)  # name -> normalized clause

    def column(self, name: str) -> Column | None:
        return next((column for column in self.columns if column.name == name), None)

    def explicit_indexes(self) -> dict[str, Index]:
        """The indexes less those InnoDB made for a foreign key (named after it, on its columns)."""
        return {
            name: index
            for name, index in self.indexes.items()
            if not (name in self.foreign_keys and index.columns == self.foreign_keys[name].columns and not index.unique)
        }


@dataclass(frozen=True)
class Schema:
    tables: dict[str, Table] = field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted(self.tables)


@dataclass(frozen=True)
class Difference:
    table: str
    item: str  # "table", "column mood", "column order", "index ix_users_email", "foreign key fk_...", "check ..."
    detail: str  # e.g. "only in live (varchar(20))", "type varchar(32) in migrations, varchar(64) in live"

    def text(self) -> str:
        return f"{self.table}: {self.item}: {self.detail}" if self.item != "table" else f"{self.table}: {self.detail}"


# ---------------------------------------------------------------- normalizations

_DISPLAY_WIDTH = re.compile(r"^(tinyint|smallint|mediumint|int|bigint)\(\d+\)")
_SYNONYMS = {"bool": "tinyint", "boolean": "tinyint", "integer": "int", "numeric": "decimal"}


def normalize_type(type_text: str) -> str:
    """A MySQL type as comparable text: tinyint(1)/BOOL -> tinyint, int(11) -> int, NUMERIC -> decimal."""
    text = " ".join(type_text.lower().replace(", ", ",").split())
    text = re.sub(r"\s+(collate|character set|charset)\s+\S+", "", text)
    base = re.match(r"[a-z]+", text)
    if base and base.group(0) in _SYNONYMS:
        text = _SYNONYMS[base.group(0)] + text[base.end() :]
    return _DISPLAY_WIDTH.sub(r"\1", text)


def same_type(one: str, two: str) -> bool:
    """Equal once normalized; JSON equals LONGTEXT, as MariaDB stores and reflects JSON."""
    kinds = {normalize_type(one), normalize_type(two)}
    return len(kinds) == 1 or kinds == {"json", "longtext"}


def normalize_default(value: Any) -> str | None:
    """A server default as comparable text: quotes, parentheses and current_timestamp() spelling dropped.

    value: information_schema's COLUMN_DEFAULT, or a SQLAlchemy server default (its text)."""
    if value is None:
        return None
    arg = getattr(value, "arg", value)
    text = str(getattr(arg, "text", arg)).strip()
    while len(text) >= 2 and text[0] == "(" and text[-1] == ")":
        text = text[1:-1].strip()
    if text.upper() == "NULL":
        return None
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    text = re.sub(r"current_timestamp(\(\))?", "CURRENT_TIMESTAMP", text, flags=re.I)
    return re.sub(r"\bnow\(\)", "CURRENT_TIMESTAMP", text, flags=re.I)


def _normalize_extra(extra: str) -> str:
    extra = extra.lower().replace("default_generated", "").strip()
    return re.sub(r"current_timestamp\(\)", "current_timestamp", extra)


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


# ---------------------------------------------------------------- reading a live schema


def _rows(connection: Connection, sql: str, database: str) -> list:
    from sqlalchemy import text

    return list(connection.execute(text(sql), {"db": database}))


def read_schema(connection: Connection, database: str, exclude: Container[str] = frozenset()) -> Schema:
    """The base tables of one database with their columns, indexes, foreign keys and checks."""
    found = {
        name: {"engine": engine, "collation": collation, "columns": [], "indexes": {}, "fks": {}, "checks": {}}
        for name, engine, collation in _rows(
            connection,
            "SELECT TABLE_NAME, ENGINE, TABLE_COLLATION FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = :db AND TABLE_TYPE = 'BASE TABLE'",
            database,
        )
        if name not in exclude
    }

    for table, column, column_type, nullable, default, extra, collation in _rows(
        connection,
        "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA, COLLATION_NAME "
        "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = :db ORDER BY TABLE_NAME, ORDINAL_POSITION",
        database,
    ):
        if table in found:
            found[table]["columns"].append(
                Column(
                    column,
                    normalize_type(column_type),
                    nullable == "YES",
                    normalize_default(default),
                    _normalize_extra(extra),
                    collation,
                )
            )

    for table, index, non_unique, column, sub_part in _rows(
        connection,
        "SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA = :db ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX",
        database,
    ):
        if table in found:
            entry = found[table]["indexes"].setdefault(index, (not int(non_unique), []))
            entry[1].append(column if sub_part is None else f"{column}({sub_part})")

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
        if table in found:
            entry = found[table]["fks"].setdefault(name, (ref_table, update_rule, delete_rule, [], []))
            entry[3].append(column)
            entry[4].append(ref_column)

    for table, name, clause in _rows(
        connection,
        "SELECT tc.TABLE_NAME, cc.CONSTRAINT_NAME, cc.CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS cc "
        "JOIN information_schema.TABLE_CONSTRAINTS tc ON tc.CONSTRAINT_SCHEMA = cc.CONSTRAINT_SCHEMA "
        "AND tc.CONSTRAINT_NAME = cc.CONSTRAINT_NAME AND tc.CONSTRAINT_TYPE = 'CHECK' "
        "WHERE cc.CONSTRAINT_SCHEMA = :db",
        database,
    ):
        if table in found:
            found[table]["checks"][name] = _normalize_check(clause)

    return Schema({name: _table(name, parts) for name, parts in sorted(found.items())})


def _table(name: str, parts: dict) -> Table:
    checks = dict(parts["checks"])
    columns = []
    for column in parts["columns"]:
        # MariaDB's JSON is LONGTEXT (utf8mb4_bin) with an automatic json_valid() check: read it as MySQL's.
        if column.type == "longtext" and checks.get(column.name) == f"json_valid({column.name.lower()})":
            del checks[column.name]
            column = Column(column.name, "json", column.nullable, column.default, column.extra, None)
        columns.append(column)
    return Table(
        name,
        parts["engine"],
        parts["collation"],
        tuple(columns),
        {index: Index(index, tuple(cols), unique) for index, (unique, cols) in parts["indexes"].items()},
        {
            fk: ForeignKey(fk, tuple(cols), ref, tuple(ref_cols), _normalize_rule(update), _normalize_rule(delete))
            for fk, (ref, update, delete, cols, ref_cols) in parts["fks"].items()
        },
        checks,
    )


def row_counts(session: Session, tables: Iterable[str]) -> dict[str, int]:
    return {
        name: int(session.value(f"SELECT COUNT(*) FROM {quote_identifier(name, 'table name')}"))
        for name in sorted(tables)
    }


# ---------------------------------------------------------------- the differ


def _index_text(index: Index) -> str:
    return ("unique " if index.unique else "") + "(" + ", ".join(index.columns) + ")"


def _fk_text(fk: ForeignKey) -> str:
    return (
        f"({', '.join(fk.columns)}) -> {fk.references}({', '.join(fk.referenced_columns)}) "
        f"on delete {fk.on_delete.lower()}, on update {fk.on_update.lower()}"
    )


def _named(kind: str, table: str, left: str, right: str, a: dict, b: dict, show) -> list[Difference]:
    found = []
    for name in sorted(a.keys() | b.keys()):
        if name not in b:
            found.append(Difference(table, f"{kind} {name}", f"only in {left} {show(a[name])}"))
        elif name not in a:
            found.append(Difference(table, f"{kind} {name}", f"only in {right} {show(b[name])}"))
        elif a[name] != b[name]:
            found.append(Difference(table, f"{kind} {name}", f"{show(a[name])} in {left}, {show(b[name])} in {right}"))
    return found


_COLUMN_FIELDS = ("type", "nullable", "default", "extra", "collation")


def _table_differences(one: Table, two: Table, left: str, right: str) -> list[Difference]:
    table = one.name
    found = [
        Difference(table, "table", f"{key} {getattr(one, key)} in {left}, {getattr(two, key)} in {right}")
        for key in ("engine", "collation")
        if getattr(one, key) != getattr(two, key)
    ]
    columns_a = {column.name: column for column in one.columns}
    columns_b = {column.name: column for column in two.columns}
    for name in sorted(columns_a.keys() | columns_b.keys()):
        if name not in columns_b:
            found.append(Difference(table, f"column {name}", f"only in {left} ({columns_a[name].type})"))
        elif name not in columns_a:
            found.append(Difference(table, f"column {name}", f"only in {right} ({columns_b[name].type})"))
        else:
            changed = [
                f"{key} {getattr(columns_a[name], key)!s} in {left}, {getattr(columns_b[name], key)!s} in {right}"
                for key in _COLUMN_FIELDS
                if getattr(columns_a[name], key) != getattr(columns_b[name], key)
            ]
            if changed:
                found.append(Difference(table, f"column {name}", "; ".join(changed)))
    common_a = [name for name in columns_a if name in columns_b]
    common_b = [name for name in columns_b if name in columns_a]
    if common_a != common_b:
        found.append(
            Difference(table, "column order", f"({', '.join(common_a)}) in {left}, ({', '.join(common_b)}) in {right}")
        )
    found += _named("index", table, left, right, one.explicit_indexes(), two.explicit_indexes(), _index_text)
    found += _named("foreign key", table, left, right, one.foreign_keys, two.foreign_keys, _fk_text)
    found += _named("check", table, left, right, one.checks, two.checks, lambda clause: f"({clause})")
    return found


def diff(a: Schema, b: Schema, left: str = "left", right: str = "right") -> list[Difference]:
    """Every difference from a to b, table by table (left and right name the two sides in the details):
    tables, engine and collation, columns and their order, indexes (less those InnoDB made for a
    foreign key), foreign keys and checks."""
    found: list[Difference] = []
    for name in sorted(a.tables.keys() | b.tables.keys()):
        if name not in b.tables:
            found.append(Difference(name, "table", f"only in {left}"))
        elif name not in a.tables:
            found.append(Difference(name, "table", f"only in {right}"))
        else:
            found += _table_differences(a.tables[name], b.tables[name], left, right)
    return found


def differing_tables(a: Schema, b: Schema) -> list[str]:
    """Names of tables added, dropped or changed between two snapshots."""
    return sorted({difference.table for difference in diff(a, b)})
