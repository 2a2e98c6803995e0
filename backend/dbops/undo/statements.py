"""What a statement changes, read from its tokens: the first half of making it undoable.

classify() is pure (no database): it says which table or object a statement touches and in
what way; refusal.py and capture.py then ask the live database what they need (keys,
columns, children) and capture.py keeps the before-image. A statement this module cannot read exactly is refused, never
guessed: the deploy stops before it runs unless the operator accepts it as irreversible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..sql import SQLSyntaxError, Statement

NONE = "none"  # changes nothing a rollback must undo (SELECT, SET, tool tables...)
CREATE_TABLE, DROP_TABLE, RENAME_TABLE, ALTER, ROWS, OBJECT, REFUSE = (
    "create-table",
    "drop-table",
    "rename-table",
    "alter",
    "rows",
    "object",
    "refuse",
)
OBJECT_TYPES = ("VIEW", "TRIGGER", "PROCEDURE", "FUNCTION", "EVENT")
_PASS_WORDS = frozenset(
    {
        "SELECT",
        "SET",
        "SHOW",
        "DESCRIBE",
        "DESC",
        "EXPLAIN",
        "DO",
        "BEGIN",
        "START",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT",
        "RELEASE",
        "ANALYZE",
        "OPTIMIZE",
        "CHECK",
        "CHECKSUM",
        "LOCK TABLES",
        "UNLOCK TABLES",
        "USE",
        "HELP",
        "XA",
    }
)
_CLAUSE_END = ("WHERE", "ORDER BY", "LIMIT", "RETURNING")
_JOIN_WORDS = frozenset({"JOIN", "INNER", "LEFT", "RIGHT", "CROSS", "STRAIGHT_JOIN", "NATURAL", "OUTER", "ON", "USING"})


@dataclass(frozen=True)
class AlterChanges:
    """The data-relevant parts of an ALTER TABLE."""

    dropped: tuple[str, ...] = ()  # DROP [COLUMN] c
    modified: tuple[str, ...] = ()  # MODIFY c, CHANGE c c: the type may narrow
    renamed: tuple[tuple[str, str], ...] = ()  # RENAME COLUMN a TO b, CHANGE a b
    retyped_renames: tuple[str, ...] = ()  # CHANGE a b <type>: old names whose type may also change
    converts_charset: bool = False  # CONVERT TO CHARACTER SET
    new_name: str | None = None  # RENAME [TO] t2
    column_specs: tuple[str, ...] = ()  # the MODIFY/CHANGE/CONVERT clauses, to probe on an empty copy


@dataclass(frozen=True)
class Action:
    kind: str
    table: str | None = None
    tables: tuple[str, ...] = ()  # DROP TABLE t1, t2
    renames: tuple[tuple[str, str], ...] = ()  # RENAME TABLE a TO b, c TO d
    if_exists: bool = False
    if_not_exists: bool = False
    dml: str = ""  # update, delete, insert
    source: str = ""  # update/delete: the FROM part (table references)
    alias: str = ""  # update/delete: the name the target has in source
    tail: str = ""  # update/delete: WHERE / ORDER BY / LIMIT, as written
    assigned: tuple[str, ...] = ()  # update: the columns it sets
    alter: AlterChanges = field(default_factory=AlterChanges)
    object_type: str = ""
    object_name: str = ""
    reason: str = ""  # refuse: why

    def table_name(self) -> str:
        """The table of the kinds that always name one (create-table, alter, rows)."""
        if self.table is None:
            raise RuntimeError(f"a {self.kind} statement names no table")
        return self.table

    @property
    def names(self) -> tuple[str, ...]:
        """Every table the statement touches."""
        return tuple(name for name in (self.table, *self.tables, *(n for pair in self.renames for n in pair)) if name)


def _refuse(reason: str) -> Action:
    return Action(REFUSE, reason=reason)


def _name_at(statement: Statement, index: int) -> tuple[str | None, int]:
    """A possibly schema-qualified name starting at token index; (name, next index). Refuses other schemas."""
    tokens = statement.tokens
    if index >= len(tokens) or not tokens[index].is_name:
        return None, index
    if index + 2 < len(tokens) and tokens[index + 1].kind == "DOT" and tokens[index + 2].is_name:
        return f"{tokens[index].text}.{tokens[index + 2].text}", index + 3
    return tokens[index].text, index + 1


def _skip(statement: Statement, index: int, *words: str) -> int:
    while index < len(statement.tokens) and statement.tokens[index].word in words:
        index += 1
    return index


def _if_exists(statement: Statement, index: int) -> tuple[bool, int]:
    words = statement.words(index + 3)[index:]
    if words[:2] == ("IF", "EXISTS"):
        return True, index + 2
    if words[:3] == ("IF", "NOT", "EXISTS"):
        return True, index + 3
    return False, index


def classify(sql: str) -> Action:
    try:
        statement = Statement.parse(sql)
    except SQLSyntaxError as exc:
        return _refuse(f"cannot be read: {exc}")
    if not statement.tokens:
        return Action(NONE)
    first = statement.tokens[0].word
    if first in _PASS_WORDS:
        if first == "SELECT" and any(t.word in ("INTO OUTFILE", "OUTFILE", "DUMPFILE") for t in statement.tokens):
            return _refuse("writes a file")
        return Action(NONE)
    handler = {
        "UPDATE": _update,
        "DELETE": _delete,
        "INSERT": _insert,
        "REPLACE": _replace,
        "ALTER": _alter,
        "CREATE": _create,
        "DROP": _drop,
        "RENAME": _rename,
        "TRUNCATE": _truncate,
    }.get(first)
    if handler is None:
        return _refuse(f"{first or 'this statement'} is not something a rollback can undo")
    return handler(statement)


# ---------------------------------------------------------------- rows


def _table_references(statement: Statement, start: int, stop: int) -> dict[str, str] | None:
    """alias -> table of a FROM/UPDATE table reference list; None when it cannot be read."""
    tokens, found = statement.tokens, {}
    expect_table = True
    index = start
    while index < stop:
        token = tokens[index]
        if token.depth != tokens[start].depth:
            index += 1
            continue
        if token.kind == "COMMA" or token.word == "JOIN" or token.word == "STRAIGHT_JOIN":
            expect_table = True
            index += 1
            continue
        if expect_table and token.kind == "L_PAREN":
            return None  # a derived table or nested join: not read here
        if expect_table and token.is_name and token.word not in _JOIN_WORDS:
            name, index = _name_at(statement, index)
            if name is None or "." in name:
                return None
            alias = name
            index = _skip(statement, index, "AS")
            if (
                index < stop
                and tokens[index].is_name
                and tokens[index].word not in _JOIN_WORDS
                and tokens[index].word not in ("PARTITION", "USE", "IGNORE", "FORCE", "SET", *_CLAUSE_END)
            ):
                alias = tokens[index].text
                index += 1
            found[alias] = name
            expect_table = False
            continue
        index += 1
    return found or None


def _clause_start(statement: Statement, start: int) -> int:
    for index in range(start, len(statement.tokens)):
        token = statement.tokens[index]
        if token.depth == 0 and token.word in _CLAUSE_END:
            return index
    return len(statement.tokens)


def _update(statement: Statement) -> Action:
    start = _skip(statement, 1, "LOW_PRIORITY", "IGNORE")
    set_index = statement.find("SET", start)
    if set_index is None:
        return _refuse("UPDATE without SET cannot be read")
    references = _table_references(statement, start, set_index)
    if references is None:
        return _refuse("UPDATE over a derived table or another schema cannot be captured")
    tail_index = _clause_start(statement, set_index + 1)
    if statement.find("RETURNING", set_index) is not None:
        return _refuse("UPDATE ... RETURNING cannot be captured")
    targets, assigned = set(), []
    for begin, end in statement.split(set_index + 1, tail_index):
        left = [token for token in statement.tokens[begin:end] if token.kind != "EQ"][:3]
        if len(left) >= 3 and left[1].kind == "DOT":
            targets.add(left[0].text)
            assigned.append(left[2].text)
        elif left:
            assigned.append(left[0].text)
            if len(references) > 1:
                return _refuse("multi-table UPDATE with an unqualified column cannot be captured")
            targets.add(next(iter(references)))
    if len(targets) != 1 or next(iter(targets)) not in references:
        return _refuse("UPDATE of several tables at once cannot be captured: split it into one UPDATE per table")
    alias = next(iter(targets))
    return Action(
        ROWS,
        table=references[alias],
        dml="update",
        source=statement.text(start, set_index),
        alias=alias,
        tail=statement.text(tail_index),
        assigned=tuple(assigned),
    )


def _delete(statement: Statement) -> Action:
    start = _skip(statement, 1, "LOW_PRIORITY", "QUICK", "IGNORE")
    if start >= len(statement.tokens) or statement.tokens[start].word != "FROM":
        return _refuse("multi-table DELETE cannot be captured: write one DELETE per table")
    tail_index = _clause_start(statement, start + 1)
    if statement.find("USING", start) is not None or statement.find("RETURNING", start) is not None:
        return _refuse("DELETE ... USING or RETURNING cannot be captured: write a single-table DELETE")
    references = _table_references(statement, start + 1, tail_index)
    if references is None or len(references) != 1:
        return _refuse("multi-table DELETE cannot be captured: write one DELETE per table")
    alias, table = next(iter(references.items()))
    return Action(
        ROWS,
        table=table,
        dml="delete",
        source=statement.text(start + 1, tail_index),
        alias=alias,
        tail=statement.text(tail_index),
    )


def _insert(statement: Statement) -> Action:
    index = _skip(statement, 1, "LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE", "INTO")
    table, _ = _name_at(statement, index)
    if table is None or "." in table:
        return _refuse("INSERT into another schema cannot be captured")
    for position, token in enumerate(statement.tokens):
        if (
            token.depth == 0
            and token.word == "ON"
            and position + 1 < len(statement.tokens)
            and statement.tokens[position + 1].word == "DUPLICATE"
        ):
            return _refuse(
                "INSERT ... ON DUPLICATE KEY UPDATE cannot be undone exactly: write it as INSERT IGNORE, then UPDATE"
            )
    return Action(ROWS, table=table, dml="insert")


def _replace(statement: Statement) -> Action:
    return _refuse("REPLACE deletes rows it does not name: write it as DELETE, then INSERT")


def _truncate(statement: Statement) -> Action:
    return _refuse("TRUNCATE cannot be undone: use DELETE FROM, which a rollback can undo")


# ---------------------------------------------------------------- tables and objects


def _object_action(statement: Statement, index: int) -> Action | None:
    """CREATE ... VIEW/TRIGGER/PROCEDURE/FUNCTION/EVENT name, or DROP of one."""
    for position in range(index, min(len(statement.tokens), index + 12)):
        word = statement.tokens[position].word
        if word in OBJECT_TYPES:
            _, after = _if_exists(statement, position + 1)
            name, _ = _name_at(statement, after)
            if name is None or "." in name:
                return _refuse(f"{word} in another schema cannot be undone")
            return Action(OBJECT, object_type=word, object_name=name)
        if word in (
            "TABLE",
            "INDEX",
            "DATABASE",
            "SCHEMA",
            "USER",
            "ROLE",
            "SEQUENCE",
            "SERVER",
            "TABLESPACE",
            "LOGFILE",
        ):
            return None
    return None


def _create(statement: Statement) -> Action:
    words = statement.words(4)
    index = 1
    if words[1:3] == ("OR", "REPLACE"):
        if "TABLE" in statement.words(5)[3:5]:
            return _refuse("CREATE OR REPLACE TABLE drops a table it does not name: DROP it, then CREATE")
        index = 3
    if index < len(statement.tokens) and statement.tokens[index].word == "TEMPORARY":
        return Action(NONE)
    if index < len(statement.tokens) and statement.tokens[index].word == "TABLE":
        if_not_exists, after = _if_exists(statement, index + 1)
        table, _ = _name_at(statement, after)
        if table is None or "." in table:
            return _refuse("CREATE TABLE in another schema cannot be undone")
        return Action(CREATE_TABLE, table=table, if_not_exists=if_not_exists)
    on_index = _skip(statement, index, "UNIQUE", "FULLTEXT", "SPATIAL", "ONLINE", "OFFLINE")
    if on_index < len(statement.tokens) and statement.tokens[on_index].word == "INDEX":
        on = statement.find("ON", on_index)
        table, _ = _name_at(statement, on + 1) if on is not None else (None, 0)
        if table is None or "." in table:
            return _refuse("CREATE INDEX cannot be read")
        return Action(ALTER, table=table)
    found = _object_action(statement, index)
    return found or _refuse(
        f"CREATE {statement.tokens[index].text if index < len(statement.tokens) else ''} cannot be undone"
    )


def _drop(statement: Statement) -> Action:
    index = _skip(statement, 1, "TEMPORARY")
    word = statement.tokens[index].word if index < len(statement.tokens) else ""
    if word == "TABLE":
        if "TEMPORARY" in statement.words(2):
            return Action(NONE)
        if_exists, after = _if_exists(statement, index + 1)
        names = []
        for begin, _end in statement.split(after):
            name, _ = _name_at(statement, begin)
            if name is None or "." in name:
                return _refuse("DROP TABLE in another schema cannot be undone")
            names.append(name)
        return Action(DROP_TABLE, tables=tuple(names), if_exists=if_exists)
    if word == "INDEX":
        on = statement.find("ON", index)
        table, _ = _name_at(statement, on + 1) if on is not None else (None, 0)
        if table is None or "." in table:
            return _refuse("DROP INDEX cannot be read")
        return Action(ALTER, table=table)
    found = _object_action(statement, 1)
    return found or _refuse(f"DROP {word or ''} cannot be undone".replace("  ", " "))


def _rename(statement: Statement) -> Action:
    if statement.words(2)[1] != "TABLE":
        return _refuse("RENAME other than RENAME TABLE cannot be undone")
    pairs = []
    for begin, end in statement.split(2):
        old, after = _name_at(statement, begin)
        new, _ = _name_at(statement, after + 1) if after < end and statement.tokens[after].word == "TO" else (None, 0)
        if old is None or new is None or "." in old or "." in new:
            return _refuse("RENAME TABLE across schemas cannot be undone")
        pairs.append((old, new))
    return Action(RENAME_TABLE, renames=tuple(pairs))


_DATA_LOSING_PARTITION_WORDS = frozenset({"DROP", "TRUNCATE", "EXCHANGE", "DISCARD", "COALESCE", "REMOVE"})


def _alter(statement: Statement) -> Action:
    words = statement.words(4)
    index = 1
    if words[1] == "ONLINE":
        index = 2
    if index < len(statement.tokens) and statement.tokens[index].word == "IGNORE":
        return _refuse("ALTER IGNORE TABLE deletes rows that break a new unique key: deduplicate with DELETE first")
    if index >= len(statement.tokens) or statement.tokens[index].word != "TABLE":
        found = _object_action(statement, 1)
        return found or _refuse(
            f"ALTER {statement.tokens[1].text if len(statement.tokens) > 1 else ''} cannot be undone"
        )
    _, after = _if_exists(statement, index + 1)
    table, after = _name_at(statement, after)
    if table is None or "." in table:
        return _refuse("ALTER TABLE in another schema cannot be undone")
    after = _skip(statement, after, "NOWAIT")
    if after < len(statement.tokens) and statement.tokens[after].word == "WAIT":
        after += 2
    dropped, modified, renamed, retyped, specs = [], [], [], [], []
    converts, new_name = False, None
    tokens = statement.tokens
    for begin, end in statement.split(after):
        spec = [token for token in tokens[begin:end]]
        head = [token.word for token in spec[:3]]
        if not spec:
            continue
        if head[0] in _DATA_LOSING_PARTITION_WORDS and "PARTITION" in head[1:] or head[0] in ("DISCARD", "EXCHANGE"):
            return _refuse(f"ALTER TABLE ... {' '.join(h for h in head if h)} loses data a rollback cannot bring back")
        if head[0] == "DROP":
            position = begin + 1
            if head[1] in (
                "INDEX",
                "KEY",
                "FOREIGN KEY",
                "PRIMARY KEY",
                "CHECK",
                "CONSTRAINT",
                "PERIOD",
                "SYSTEM",
                "FOREIGN",
                "PRIMARY",
                "UNIQUE",
            ):
                continue
            if head[1] == "COLUMN":
                position += 1
            _, position = _if_exists(statement, position)
            dropped.append(tokens[position].text)
        elif head[0] == "MODIFY":
            position = begin + 2 if head[1] == "COLUMN" else begin + 1
            _, position = _if_exists(statement, position)
            modified.append(tokens[position].text)
            specs.append(statement.text(begin, end))
        elif head[0] == "CHANGE":
            position = begin + 2 if head[1] == "COLUMN" else begin + 1
            _, position = _if_exists(statement, position)
            old, new = tokens[position].text, tokens[position + 1].text
            if old.lower() == new.lower():
                modified.append(old)
                specs.append(statement.text(begin, end))
            else:
                renamed.append((old, new))
                retyped.append(old)
                specs.append(statement.text(begin, end))
        elif head[0] == "RENAME":
            if head[1] == "COLUMN":
                renamed.append((tokens[begin + 2].text, tokens[begin + 4].text))
            elif head[1] not in ("INDEX", "KEY"):
                position = _skip(statement, begin + 1, "TO", "AS")
                new_name, _ = _name_at(statement, position)
        elif head[0] == "CONVERT":
            converts = True
            specs.append(statement.text(begin, end))
    return Action(
        ALTER,
        table=table,
        alter=AlterChanges(
            tuple(dropped), tuple(modified), tuple(renamed), tuple(retyped), converts, new_name, tuple(specs)
        ),
    )
