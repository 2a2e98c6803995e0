"""A table's structure as SHOW CREATE TABLE prints it, and the ALTERs that bring a table back to it;
the definitions of views, triggers, routines and events as SHOW CREATE prints them.

The server prints one definition per line in a canonical form, so a before-image is that
text, and undoing any ALTER is a comparison of two such texts: columns (with their order),
indexes, foreign keys, checks and table options. This needs no reflection and no scratch
database, knows every column attribute the server knows, and resumes after a kill, since it
compares with the live table each time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..identifiers import quote_identifier
from ..sql import tokenize
from .session import Session, q

_NAME = r"`((?:[^`]|``)+)`"
_COLUMN = re.compile(rf"^{_NAME}\s")
_INDEX = re.compile(rf"^(?:(?:UNIQUE|FULLTEXT|SPATIAL|VECTOR)\s+)?(?:KEY|INDEX)\s+{_NAME}")
_CONSTRAINT = re.compile(rf"^CONSTRAINT\s+{_NAME}\s+(FOREIGN KEY|CHECK)\b")
_AUTO_INCREMENT = re.compile(r"\s*\bAUTO_INCREMENT=\d+")
# A collation names its charset: MySQL prints `CHARACTER SET x COLLATE y` for a column given as
# `COLLATE y` (or not), MariaDB prints one or the other. Lines are compared without the redundant part.
_REDUNDANT_CHARSET = re.compile(r" CHARACTER SET \w+ (COLLATE \w+)")


def _unquote(name: str) -> str:
    return name.replace("``", "`")


@dataclass
class TableDef:
    name: str
    columns: list[tuple[str, str]] = field(default_factory=list)  # (name, definition line), in order
    indexes: dict[str, str] = field(default_factory=dict)  # name ('PRIMARY' for the primary key) -> line
    foreign_keys: dict[str, str] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)  # ENGINE, DEFAULT CHARSET, COLLATE, COMMENT...

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    def column(self, name: str) -> str | None:
        return next((line for column, line in self.columns if column == name), None)

    def same_as(self, other: TableDef) -> bool:
        return (self.columns, self.indexes, self.foreign_keys, self.checks, self.options) == (
            other.columns,
            other.indexes,
            other.foreign_keys,
            other.checks,
            other.options,
        )

    def differences(self, other: TableDef) -> list[str]:
        """What differs from other, in words (for a rollback's report)."""
        found = []
        if self.columns != other.columns:
            mine, theirs = dict(self.columns), dict(other.columns)
            changed = sorted(name for name in mine.keys() | theirs.keys() if mine.get(name) != theirs.get(name))
            found.append(f"columns {', '.join(changed)}" if changed else "column order")
        for label, mine, theirs in (
            ("indexes", self.indexes, other.indexes),
            ("foreign keys", self.foreign_keys, other.foreign_keys),
            ("checks", self.checks, other.checks),
            ("options", self.options, other.options),
        ):
            if mine != theirs:
                found.append(
                    f"{label} {', '.join(sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k)))}"
                )
        return found


def _string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _options(text: str) -> dict[str, str]:
    """Table options of the closing line: 'ENGINE=InnoDB DEFAULT CHARSET=x' -> {'ENGINE': 'InnoDB', ...}."""
    options: dict[str, str] = {}
    words: list[str] = []
    tokens = tokenize(_AUTO_INCREMENT.sub("", text))
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token.kind == "EQ" and index + 1 < len(tokens):
            value = tokens[index + 1]
            key = " ".join(words).replace("DEFAULT ", "")
            options[key] = _string(value.text) if value.kind == "STRING" else value.text
            words = []
            index += 2
            continue
        words.append(token.text.upper())
        index += 1
    return options


def parse(create_sql: str) -> TableDef:
    """Read SHOW CREATE TABLE's text."""
    lines = create_sql.splitlines()
    match = re.match(rf"CREATE TABLE {_NAME}", lines[0])
    table = TableDef(_unquote(match.group(1)) if match else "")
    closing = next(index for index in range(len(lines) - 1, 0, -1) if lines[index].startswith(")"))
    for raw in lines[1:closing]:
        line = raw.strip().rstrip(",")
        if match := _COLUMN.match(line):
            table.columns.append((_unquote(match.group(1)), _REDUNDANT_CHARSET.sub(r" \1", line, count=1)))
        elif line.startswith("PRIMARY KEY"):
            table.indexes["PRIMARY"] = line
        elif match := _INDEX.match(line):
            table.indexes[_unquote(match.group(1))] = line
        elif match := _CONSTRAINT.match(line):
            target = table.foreign_keys if match.group(2) == "FOREIGN KEY" else table.checks
            target[_unquote(match.group(1))] = line
    table.options = _options(" ".join(lines[closing:])[1:])
    return table


def show_create(session: Session, table: str) -> str | None:
    """SHOW CREATE TABLE's text, or None when the table does not exist."""
    kind = session.value(
        "SELECT TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
        f"AND TABLE_NAME = {session.literal(table)}"
    )
    if kind != "BASE TABLE":
        return None
    return session.rows(f"SHOW CREATE TABLE {quote_identifier(table, 'table name')}")[0][1]


def read(session: Session, table: str) -> TableDef | None:
    found = show_create(session, table)
    return parse(found) if found is not None else None


def _position(order: list[str], index: int) -> str:
    return "FIRST" if index == 0 else f"AFTER {quote_identifier(order[index - 1], 'column name')}"


def alter_statements(current: TableDef, wanted: TableDef) -> list[str]:
    """ALTER TABLE statements that turn the live table `current` into `wanted`, in an order the
    server accepts: constraints off, table options, columns and indexes, constraints on."""
    quoted = quote_identifier(current.name, "table name")
    statements = []
    drops = [
        f"DROP FOREIGN KEY {quote_identifier(name, 'constraint name')}"
        for name, line in current.foreign_keys.items()
        if wanted.foreign_keys.get(name) != line
    ]
    drops += [
        f"DROP CONSTRAINT {quote_identifier(name, 'constraint name')}"
        for name, line in current.checks.items()
        if wanted.checks.get(name) != line
    ]
    if drops:
        statements.append(f"ALTER TABLE {quoted} {', '.join(drops)}")

    options = {key: value for key, value in wanted.options.items() if current.options.get(key) != value}
    for key in current.options.keys() - wanted.options.keys():
        options[key] = "''" if key == "COMMENT" else "DEFAULT"
    if options:
        statements.append(
            f"ALTER TABLE {quoted} "
            + " ".join(f"{'DEFAULT CHARSET' if key == 'CHARSET' else key}={value}" for key, value in options.items())
        )

    changes = [
        ("DROP PRIMARY KEY" if name == "PRIMARY" else f"DROP INDEX {quote_identifier(name, 'index name')}")
        for name, line in current.indexes.items()
        if wanted.indexes.get(name) != line
    ]
    # A column without its own charset takes the table's: when that changes, every line must be given again.
    recharset = any(current.options.get(key) != wanted.options.get(key) for key in ("CHARSET", "COLLATE"))
    wanted_names = set(wanted.column_names)
    order = [name for name in current.column_names if name in wanted_names]
    changes += [
        f"DROP COLUMN {quote_identifier(name, 'column name')}"
        for name in current.column_names
        if name not in wanted_names
    ]
    for index, (name, line) in enumerate(wanted.columns):
        have = current.column(name)
        if have is not None and have == line and not recharset and index < len(order) and order[index] == name:
            continue
        changes.append(f"{'ADD' if have is None else 'MODIFY'} COLUMN {line} {_position(wanted.column_names, index)}")
        if name in order:
            order.remove(name)
        order.insert(index, name)
    changes += [f"ADD {line}" for name, line in wanted.indexes.items() if current.indexes.get(name) != line]
    if changes:
        statements.append(f"ALTER TABLE {quoted} {', '.join(changes)}")

    adds = [f"ADD {line}" for name, line in wanted.foreign_keys.items() if current.foreign_keys.get(name) != line]
    adds += [f"ADD {line}" for name, line in wanted.checks.items() if current.checks.get(name) != line]
    if adds:
        statements.append(f"ALTER TABLE {quoted} {', '.join(adds)}")
    return statements


def object_definition(session: Session, kind: str, name: str) -> dict | None:
    """{'definition', 'sql_mode'} of a view, trigger, routine or event; None when it does not exist."""
    import pymysql

    try:
        row = session.rows(f"SHOW CREATE {kind} {q(name)}")[0]
    except pymysql.err.MySQLError:
        return None
    if kind == "VIEW":
        return {"definition": row[1], "sql_mode": None}
    return {"definition": row[3] if kind == "EVENT" else row[2], "sql_mode": row[1]}
