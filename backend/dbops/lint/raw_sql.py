"""Raw SQL passed to op.execute(), read with the shared MySQL tokenizer (sql.py) into the alembic
operations it amounts to, as far as the rules care."""

from __future__ import annotations

from dataclasses import dataclass

from ..sql import SQLSyntaxError, Statement, split_statements
from .capture import Captured


@dataclass
class RawCopy:
    """A raw-SQL ALTER clause that rebuilds the table (charset change, MODIFY, AFTER/FIRST...)."""

    table_name: str
    what: str
    old_servers_only: bool = False


def _statements(sqltext) -> list[Statement]:
    """The statements of an op.execute() text (none for a SQLAlchemy insert/update/delete construct).

    Raises SQLSyntaxError when the tokenizer cannot read the text (an unterminated string or name)."""
    from sqlalchemy.sql.elements import TextClause

    if isinstance(sqltext, TextClause):
        sqltext = sqltext.text
    if not isinstance(sqltext, str):
        return []
    return [Statement.parse(statement) for statement in split_statements(sqltext)]


def statement_keywords(sqltext) -> set[str]:
    """The first keyword of each statement of an op.execute() argument (raises SQLSyntaxError as _statements)."""
    from sqlalchemy.sql import Delete, Insert, Update

    if isinstance(sqltext, Insert | Update | Delete):
        return {type(sqltext).__name__.upper()}
    return {statement.tokens[0].word for statement in _statements(sqltext)}


def _name_at(statement: Statement, index: int) -> tuple[str | None, int]:
    """The name at token index, without its schema: (name or None, index after it)."""
    tokens = statement.tokens
    if index >= len(tokens) or not tokens[index].is_name:
        return None, index
    if index + 2 < len(tokens) and tokens[index + 1].kind == "DOT" and tokens[index + 2].is_name:
        index += 2
    return tokens[index].text, index + 1


def _word_at(statement: Statement, index: int) -> str:
    return statement.tokens[index].word if index < len(statement.tokens) else ""


def _skip(statement: Statement, index: int, *words: str) -> int:
    while index < len(statement.tokens) and statement.tokens[index].word in words:
        index += 1
    return index


def _closing(statement: Statement, index: int) -> int:
    """Index of the parenthesis closing the one at index (the end when unbalanced)."""
    depth = statement.tokens[index].depth
    return next(
        (
            position
            for position in range(index + 1, len(statement.tokens))
            if statement.tokens[position].kind == "R_PAREN" and statement.tokens[position].depth == depth
        ),
        len(statement.tokens),
    )


def _columns(statement: Statement, index: int) -> list[str]:
    """The column names of the parenthesized list at index (prefix lengths left out)."""
    if index >= len(statement.tokens) or statement.tokens[index].kind != "L_PAREN":
        return []
    return [
        name
        for begin, _ in statement.split(index + 1, _closing(statement, index))
        if (name := _name_at(statement, begin)[0])
    ]


def _raw_operations(statement: Statement) -> list:
    """The alembic operations a raw DDL statement amounts to (as far as the rules care)."""
    from alembic.operations import ops

    first, second = _word_at(statement, 0), _word_at(statement, 1)
    if first == "DROP" and second == "TABLE":
        index = _skip(statement, 2, "IF", "EXISTS")
        return [ops.DropTableOp(name) for begin, _ in statement.split(index) if (name := _name_at(statement, begin)[0])]
    if first == "DROP" and second == "INDEX":
        index_name, after = _name_at(statement, _skip(statement, 2, "IF", "EXISTS"))
        table = _name_at(statement, after + 1)[0] if _word_at(statement, after) == "ON" else None
        return [ops.DropIndexOp(index_name, table_name=table)] if index_name and table else []
    if first == "RENAME" and second in ("TABLE", "TABLES"):
        found = []
        for begin, end in statement.split(2):
            old, after = _name_at(statement, begin)
            new = _name_at(statement, after + 1)[0] if after < end and _word_at(statement, after) == "TO" else None
            if old and new:
                found.append(ops.RenameTableOp(old, new))
        return found
    if first == "CREATE":
        index = _skip(statement, 1, "OR", "REPLACE")
        if (_word_at(statement, index), _word_at(statement, index + 1)) != ("UNIQUE", "INDEX"):
            return []
        name, after = _name_at(statement, _skip(statement, index + 2, "IF", "NOT", "EXISTS"))
        table, after = _name_at(statement, after + 1) if _word_at(statement, after) == "ON" else (None, after)
        columns = _columns(statement, _skip(statement, after, "USING", "BTREE", "HASH"))
        return [ops.CreateIndexOp(name, table, columns, unique=True)] if name and table and columns else []
    if first == "ALTER":
        index = _skip(statement, 1, "ONLINE", "IGNORE")
        if _word_at(statement, index) != "TABLE":
            return []
        table, index = _name_at(statement, _skip(statement, index + 1, "IF", "EXISTS"))
        if table is None:
            return []
        index = _skip(statement, index, "NOWAIT")
        if _word_at(statement, index) == "WAIT":
            index += 2
        return [
            operation
            for begin, end in statement.split(index)
            for operation in _alter_clause(statement, table, begin, end)
        ]
    return []


def _alter_clause(statement: Statement, table: str, begin: int, end: int) -> list:
    from alembic.operations import ops

    first, second = _word_at(statement, begin), _word_at(statement, begin + 1) if begin + 1 < end else ""
    if first == "DROP":
        if second in ("INDEX", "KEY", "FOREIGN KEY"):
            name = _name_at(statement, _skip(statement, begin + 2, "IF", "EXISTS"))[0]
            if name is None:
                return []
            if second == "FOREIGN KEY":
                return [ops.DropConstraintOp(name, table, type_="foreignkey")]
            return [ops.DropIndexOp(name, table_name=table)]
        if second == "PRIMARY KEY":
            return [ops.DropConstraintOp("PRIMARY", table, type_="primary")]
        if second in ("CONSTRAINT", "CHECK", "PARTITION"):
            return []
        name = _name_at(statement, _skip(statement, begin + 1, "COLUMN", "IF", "EXISTS"))[0]
        return [ops.DropColumnOp(table, name)] if name else []
    if first == "RENAME":
        if second == "COLUMN":
            old, after = _name_at(statement, begin + 2)
            new = _name_at(statement, after + 1)[0] if _word_at(statement, after) == "TO" else None
            return [ops.AlterColumnOp(table, old, modify_name=new)] if old and new else []
        if second in ("INDEX", "KEY"):
            return []
        new = _name_at(statement, _skip(statement, begin + 1, "TO", "AS"))[0]
        return [ops.RenameTableOp(table, new)] if new else []
    if first in ("CHANGE", "MODIFY"):
        old, after = _name_at(statement, _skip(statement, begin + 1, "COLUMN", "IF", "EXISTS"))
        if old is None:
            return []
        found: list = [RawCopy(table, f"{first} {old}")]
        new = _name_at(statement, after)[0] if first == "CHANGE" else None
        if new and new.lower() != old.lower():
            found.insert(0, ops.AlterColumnOp(table, old, modify_name=new))
        return found
    option = _skip(statement, begin, "DEFAULT")
    if (
        first == "CONVERT"
        or _word_at(statement, option) == "CHARSET"
        or (_word_at(statement, option), _word_at(statement, option + 1)) == ("CHARACTER", "SET")
    ):
        return [RawCopy(table, "a character set change")]
    if first == "ADD":
        return _add_clause(statement, table, begin, end)
    return []


_NOT_COLUMNS = frozenset(
    {
        "INDEX",
        "KEY",
        "CONSTRAINT",
        "PRIMARY KEY",
        "FOREIGN KEY",
        "FULLTEXT",
        "SPATIAL",
        "CHECK",
        "PARTITION",
        "PERIOD",
        "SYSTEM",
    }
)


def _add_clause(statement: Statement, table: str, begin: int, end: int) -> list:
    """ADD [CONSTRAINT [name]] UNIQUE ..., or ADD [COLUMN] name definition."""
    import sqlalchemy as sa
    from alembic.operations import ops

    tokens = statement.tokens
    index, constraint = begin + 1, None
    if _word_at(statement, index) == "CONSTRAINT":
        index += 1
        if _word_at(statement, index) != "UNIQUE":
            constraint, index = _name_at(statement, index)
    if _word_at(statement, index) == "UNIQUE":
        index = _skip(statement, index + 1, "KEY", "INDEX")
        name = None
        if index < end and tokens[index].kind != "L_PAREN":
            name, index = _name_at(statement, index)
        columns = _columns(statement, _skip(statement, index, "USING", "BTREE", "HASH"))
        return [ops.CreateUniqueConstraintOp(constraint or name, table, columns)] if columns else []
    if constraint is not None:
        return []
    index = _skip(statement, index, "COLUMN", "IF", "NOT", "EXISTS")
    if _word_at(statement, index) in _NOT_COLUMNS:
        return []
    name, index = _name_at(statement, index)
    if name is None or index >= end:
        return []
    depth = tokens[begin].depth
    words = [token.word if token.depth == depth else "" for token in tokens[index:end]]
    not_null = any(pair == ("NOT", "NULL") for pair in zip(words, words[1:], strict=False))
    default = None
    if "DEFAULT" in words:
        value = index + words.index("DEFAULT") + 1
        if value < end:
            stop = _closing(statement, value) + 1 if tokens[value].kind == "L_PAREN" else value + 1
            default = sa.text(statement.text(value, min(stop, end)))
    column = sa.Column(
        name,
        sa.types.NullType(),
        nullable=not not_null,
        server_default=default,
        autoincrement="AUTO_INCREMENT" in words,
    )
    found: list = [ops.AddColumnOp(table, column)]
    if words[-1] == "FIRST" or (len(words) > 1 and words[-2] == "AFTER"):
        found.append(RawCopy(table, f"ADD COLUMN {name} with AFTER/FIRST", old_servers_only=True))
    return found


def expand(captured: list[Captured]) -> list[Captured]:
    """Raw SQL statements replaced by the operations they amount to (the original kept too)."""
    from alembic.operations import ops

    result = []
    for item in captured:
        result.append(item)
        if isinstance(item.operation, ops.ExecuteSQLOp):
            try:
                statements = _statements(item.operation.sqltext)
            except SQLSyntaxError:
                continue  # reported as unreadable-revision by check_revision
            for statement in statements:
                result.extend(Captured(derived, item.line, item.end_line) for derived in _raw_operations(statement))
    return result
