"""Lint revisions for operations that hurt on MySQL/MariaDB (`invoke db.lint`).

Reads what the revisions will actually do: each upgrade() runs against an offline
Operations object that records the operation objects (alembic.operations.ops) instead of
touching a database, and raw SQL in op.execute() is read with the shared MySQL tokenizer
(sql.py: quotes, escapes and comments as the server reads them) into the same operations.
The rules then walk those operations over the schema the earlier revisions produce: built
in a scratch database when a server is configured, else replayed from the operations.

Silencing: `# lint: ignore[rule-id] reason` on the operation's line (or any line of a call
spanning several) silences that finding; on a line of its own, the rule for the whole file.
A silence without a reason silences nothing and is reported.
"""

from __future__ import annotations

import ast
import copy
import io
import os
import re
import sys
import tokenize
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import PROJECT_ROOT, Settings
from . import migrate
from .connection import ServerInfo, connect, server_info
from .errors import DbOpsError, RevisionError
from .identifiers import quote_identifier
from .sql import SQLSyntaxError, Statement, split_statements
from .tool_tables import TOOL_TABLES

if TYPE_CHECKING:
    from alembic.script import Script, ScriptDirectory
    from sqlalchemy.engine import Connection

ERROR, WARNING, INFO = "error", "warning", "info"
MARKS = {ERROR: "❌", WARNING: "⚠️ ", INFO: "ℹ️ "}

# Rule id -> what it guards against (`invoke db.lint --help` and the JSON output name them).
RULES = {
    "drop-table": "dropping a table loses its data and breaks the running application",
    "drop-column": "dropping a column loses its data and breaks the running application",
    "narrow-type": "a smaller type cuts or refuses existing values",
    "not-null-without-default": "NOT NULL on existing rows without a server default",
    "rename-column": "the running application still uses the old column name",
    "rename-table": "the running application still uses the old table name",
    "enum-values-removed-or-reordered": "rows holding a removed ENUM value are emptied; reordering copies the table",
    "drop-index-needed-by-fk": "MySQL refuses to drop an index a foreign key needs (error 1553)",
    "add-unique-constraint": "duplicates in existing rows make the ALTER fail halfway through a revision",
    "missing-downgrade": "downgrade() is missing or does nothing",
    "multiple-heads": "several heads: an upgrade to head is ambiguous",
    "large-table-copy": "an ALTER that copies a large table blocks writes for its whole duration",
    "data-update-mixed-with-ddl": "a data change beside DDL leaves a half-applied revision when it fails",
    "unreadable-revision": "upgrade() raised, or its SQL could not be read, while its operations were read",
    "ignore-without-reason": "a lint silence must say why",
    "ignore-unknown-rule": "a lint silence names a rule that does not exist",
}

# Tables above either size are "large" for large-table-copy (about 10 s of copying on a small server).
LARGE_TABLE_ROWS = 1_000_000
LARGE_TABLE_BYTES = 512 * 1024 * 1024

_IGNORE = re.compile(r"#\s*lint:\s*ignore\[([^\]]*)\]\s*[:\-—–]*\s*(.*)$")


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    revision: str
    file: str
    line: int
    message: str
    fix: str

    def to_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        return (f"{MARKS[self.severity]} {self.revision} {self.file}:{self.line} {self.rule}: "
                f"{self.message} — fix: {self.fix}")


@dataclass
class LintReport:
    findings: list[Finding] = field(default_factory=list)
    silenced: list[tuple[Finding, str]] = field(default_factory=list)  # (finding, reason)
    revisions: list[str] = field(default_factory=list)  # linted, oldest first
    notes: list[str] = field(default_factory=list)
    schema_source: str = "revision operations"  # or "scratch database"

    @property
    def errors(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "revisions": self.revisions,
            "schema_source": self.schema_source,
            "notes": self.notes,
            "findings": [finding.to_dict() for finding in self.findings],
            "silenced": [{**finding.to_dict(), "reason": reason} for finding, reason in self.silenced],
        }


# ---------------------------------------------------------------- reading revisions


@dataclass
class _Captured:
    operation: Any
    line: int
    end_line: int


@dataclass
class _Source:
    """One revision file: its operations, text and silences."""

    script: Script
    path: Path
    display: str
    tree: ast.Module | None
    upgrade: list[_Captured] = field(default_factory=list)
    upgrade_error: tuple[str, int] | None = None  # (message, line)
    call_spans: list[tuple[int, int]] = field(default_factory=list)
    line_ignores: dict[int, dict[str, str]] = field(default_factory=dict)  # line -> rule -> reason
    file_ignores: dict[str, str] = field(default_factory=dict)
    bad_ignores: list[Finding] = field(default_factory=list)


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


# Operations methods that are helpers, not schema operations.
_NOT_OPERATIONS = frozenset({"f", "inline_literal", "get_bind", "get_context", "implementation_for",
                             "register_operation", "batch_alter_table", "invoke", "context", "run_async"})


def _call_spans(tree: ast.Module | None) -> list[tuple[int, int]]:
    """(first, last) line of every `x.operation(...)` call in the file."""
    if tree is None:
        return []
    from alembic.operations import Operations

    names = {name for name in dir(Operations) if not name.startswith("_")} - _NOT_OPERATIONS
    return sorted(
        (node.lineno, node.end_lineno or node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in names
    )


def _span_for(spans: list[tuple[int, int]], line: int) -> tuple[int, int]:
    """The innermost operation call containing line (the frame may point inside a long call)."""
    containing = [span for span in spans if span[0] <= line <= span[1]]
    return min(containing, key=lambda span: span[1] - span[0]) if containing else (line, line)


def _line_in(path: Path, frame) -> int:
    target = os.path.realpath(path)
    while frame is not None:
        if os.path.realpath(frame.f_code.co_filename) == target:
            return frame.f_lineno
        frame = frame.f_back
    return 0


def _capture(source: _Source, function: str) -> tuple[list[_Captured], tuple[str, int] | None]:
    """Run the revision's upgrade() (or another of its functions) against a recording, offline Operations."""
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    body = getattr(source.script.module, function, None)
    if body is None:
        return [], None
    context = MigrationContext.configure(
        dialect_name="mysql", opts={"as_sql": True, "output_buffer": io.StringIO(), "literal_binds": True}
    )
    operations = Operations(context)
    captured: list[_Captured] = []
    # An operation called from a helper in another file is placed on the `def` line.
    fallback = getattr(getattr(body, "__code__", None), "co_firstlineno", 1)

    def recorder(real_invoke):
        def invoke(operation):
            line = _line_in(source.path, sys._getframe(1)) or fallback
            first, last = _span_for(source.call_spans, line)
            captured.append(_Captured(operation, first, last))
            try:
                return real_invoke(operation)  # renders SQL into the buffer; create_table returns its Table
            except Exception:
                return None
        return invoke

    real_batch = operations.batch_alter_table

    @contextmanager
    def batch_alter_table(*args, **kwargs):
        with real_batch(*args, **kwargs) as batch:
            batch.invoke = recorder(batch.invoke)
            yield batch

    # Instance attributes: the module-level `op` proxy looks methods up on the instance.
    operations.invoke = recorder(operations.invoke)
    operations.batch_alter_table = batch_alter_table
    operations._install_proxy()
    try:
        body()
    except Exception as exc:
        line = 0
        tb = exc.__traceback__
        while tb is not None:
            if os.path.realpath(tb.tb_frame.f_code.co_filename) == os.path.realpath(source.path):
                line = tb.tb_lineno
            tb = tb.tb_next
        return captured, (migrate.first_line(exc), line)
    finally:
        operations._remove_proxy()
    return captured, None


def _read_ignores(source: _Source, text: str) -> None:
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return
    lines = text.splitlines()
    for token in tokens:
        if token.type != tokenize.COMMENT:
            continue
        match = _IGNORE.search(token.string)
        if not match:
            continue
        line = token.start[0]
        rules = [rule.strip() for rule in match.group(1).split(",") if rule.strip()]
        reason = " ".join(match.group(2).split())
        own_line = not lines[line - 1][: token.start[1]].strip()
        for rule in rules:
            if rule not in RULES:
                source.bad_ignores.append(_finding(
                    source, "ignore-unknown-rule", WARNING, line,
                    f"`# lint: ignore[{rule}]` names no rule of db.lint",
                    f"use one of: {', '.join(RULES)}"))
            elif not reason:
                source.bad_ignores.append(_finding(
                    source, "ignore-without-reason", WARNING, line,
                    f"`# lint: ignore[{rule}]` gives no reason, so it silences nothing",
                    f"say why it is safe after the bracket: # lint: ignore[{rule}] <reason>"))
            elif own_line:
                source.file_ignores[rule] = reason
            else:
                source.line_ignores.setdefault(line, {})[rule] = reason


def _load(script: Script) -> _Source:
    path = Path(script.path)
    text = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(text)
    except SyntaxError:
        tree = None
    source = _Source(script=script, path=path, display=_display(path), tree=tree)
    source.call_spans = _call_spans(tree)
    _read_ignores(source, text)
    source.upgrade, source.upgrade_error = _capture(source, "upgrade")
    return source


def _finding(source: _Source, rule: str, severity: str, line: int, message: str, fix: str) -> Finding:
    return Finding(rule, severity, source.script.revision, source.display, line,
                   " ".join(message.split()), " ".join(fix.split()))


# ---------------------------------------------------------------- raw SQL into operations


@dataclass
class _RawCopy:
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


def _keywords(sqltext) -> set[str]:
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
    return next((position for position in range(index + 1, len(statement.tokens))
                 if statement.tokens[position].kind == "R_PAREN" and statement.tokens[position].depth == depth),
                len(statement.tokens))


def _columns(statement: Statement, index: int) -> list[str]:
    """The column names of the parenthesized list at index (prefix lengths left out)."""
    if index >= len(statement.tokens) or statement.tokens[index].kind != "L_PAREN":
        return []
    return [name for begin, _ in statement.split(index + 1, _closing(statement, index))
            if (name := _name_at(statement, begin)[0])]


def _raw_operations(statement: Statement) -> list:
    """The alembic operations a raw DDL statement amounts to (as far as the rules care)."""
    from alembic.operations import ops

    first, second = _word_at(statement, 0), _word_at(statement, 1)
    if first == "DROP" and second == "TABLE":
        index = _skip(statement, 2, "IF", "EXISTS")
        return [ops.DropTableOp(name) for begin, _ in statement.split(index)
                if (name := _name_at(statement, begin)[0])]
    if first == "DROP" and second == "INDEX":
        index, after = _name_at(statement, _skip(statement, 2, "IF", "EXISTS"))
        table = _name_at(statement, after + 1)[0] if _word_at(statement, after) == "ON" else None
        return [ops.DropIndexOp(index, table_name=table)] if index and table else []
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
        return [operation for begin, end in statement.split(index)
                for operation in _alter_clause(statement, table, begin, end)]
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
        found: list = [_RawCopy(table, f"{first} {old}")]
        new = _name_at(statement, after)[0] if first == "CHANGE" else None
        if new and new.lower() != old.lower():
            found.insert(0, ops.AlterColumnOp(table, old, modify_name=new))
        return found
    option = _skip(statement, begin, "DEFAULT")
    if first == "CONVERT" or _word_at(statement, option) == "CHARSET" or \
            (_word_at(statement, option), _word_at(statement, option + 1)) == ("CHARACTER", "SET"):
        return [_RawCopy(table, "a character set change")]
    if first == "ADD":
        return _add_clause(statement, table, begin, end)
    return []


_NOT_COLUMNS = frozenset({"INDEX", "KEY", "CONSTRAINT", "PRIMARY KEY", "FOREIGN KEY", "FULLTEXT", "SPATIAL", "CHECK",
                          "PARTITION", "PERIOD", "SYSTEM"})


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
    column = sa.Column(name, sa.types.NullType(), nullable=not not_null, server_default=default,
                       autoincrement="AUTO_INCREMENT" in words)
    found: list = [ops.AddColumnOp(table, column)]
    if words[-1] == "FIRST" or (len(words) > 1 and words[-2] == "AFTER"):
        found.append(_RawCopy(table, f"ADD COLUMN {name} with AFTER/FIRST", old_servers_only=True))
    return found


def _expand(captured: list[_Captured]) -> list[_Captured]:
    """Raw SQL statements replaced by the operations they amount to (the original kept too)."""
    from alembic.operations import ops

    result = []
    for item in captured:
        result.append(item)
        if isinstance(item.operation, ops.ExecuteSQLOp):
            try:
                statements = _statements(item.operation.sqltext)
            except SQLSyntaxError:
                continue  # reported as unreadable-revision by _check_revision
            for statement in statements:
                result.extend(_Captured(derived, item.line, item.end_line) for derived in _raw_operations(statement))
    return result


# ---------------------------------------------------------------- schema model


def _type_string(type_) -> str | None:
    """A SQLAlchemy type as MySQL DDL, lower case (e.g. varchar(64), enum('a','b'))."""
    if type_ is None:
        return None
    from sqlalchemy.dialects import mysql
    from sqlalchemy.types import NullType

    try:
        if isinstance(type_, type):
            type_ = type_()  # existing_type=sa.Integer, a class
        if isinstance(type_, NullType):
            return None
        return type_.compile(dialect=mysql.dialect()).lower()
    except Exception:
        return None


def _default_string(default) -> str | None:
    if default is None or default is False:
        return None
    arg = getattr(default, "arg", default)
    return str(getattr(arg, "text", arg))


def _column_shape(column) -> dict:
    return {"type": _type_string(column.type), "nullable": bool(column.nullable),
            "default": _default_string(column.server_default)}


def _new_table() -> dict:
    return {"columns": {}, "indexes": {}, "foreign_keys": {}}


def _add_fk(table: dict, name: str, columns: list[str], references: str, referenced: list[str]) -> None:
    table["foreign_keys"][name] = {"columns": columns, "references": references, "referenced_columns": referenced}
    # InnoDB creates an index for a foreign key no index covers, named after the constraint.
    if not any(_covers(index["columns"], columns) for index in table["indexes"].values()):
        table["indexes"][name] = {"columns": list(columns), "unique": False, "implicit": True}


def _add_index(table: dict, name: str, columns: list[str], unique: bool) -> None:
    table["indexes"][name] = {"columns": list(columns), "unique": unique}
    # ... and drops that implicit index once another one covers the foreign key.
    for other, index in list(table["indexes"].items()):
        if index.get("implicit") and other != name and _covers(columns, index["columns"]):
            del table["indexes"][other]


def _covers(index_columns: list[str], wanted: list[str]) -> bool:
    return [c.lower() for c in index_columns[: len(wanted)]] == [c.lower() for c in wanted]


def _index_columns(columns) -> list[str]:
    return [column if isinstance(column, str) else str(getattr(column, "name", column)) for column in columns]


def _table_from_op(operation) -> dict:
    from sqlalchemy import PrimaryKeyConstraint, UniqueConstraint

    table = operation.to_table()
    shape = _new_table()
    for column in table.columns:
        shape["columns"][column.name] = _column_shape(column)
    for constraint in table.constraints:
        columns = [column.name for column in constraint.columns]
        if isinstance(constraint, PrimaryKeyConstraint) and columns:
            shape["indexes"]["PRIMARY"] = {"columns": columns, "unique": True}
        elif isinstance(constraint, UniqueConstraint):
            shape["indexes"][str(constraint.name or columns[0])] = {"columns": columns, "unique": True}
    for index in table.indexes:
        _add_index(shape, str(index.name), [column.name for column in index.columns], bool(index.unique))
    for fk in table.foreign_key_constraints:
        referred = [element.target_fullname.split(".") for element in fk.elements]
        _add_fk(shape, str(fk.name or fk.column_keys[0]), list(fk.column_keys), referred[0][-2],
                [parts[-1] for parts in referred])
    return shape


def _schema_from_snapshot(snapshot: dict) -> dict:
    schema = {}
    for name, table in snapshot.items():
        shape = _new_table()
        for column, column_type, nullable, default, _extra, _collation in table["columns"]:
            shape["columns"][column] = {"type": column_type, "nullable": nullable, "default": default}
        for index, entry in table["indexes"].items():
            shape["indexes"][index] = {"columns": [re.sub(r"\(\d+\)$", "", c) for c in entry["columns"]],
                                       "unique": entry["unique"]}
        for fk, entry in table["foreign_keys"].items():
            shape["foreign_keys"][fk] = {"columns": entry["columns"], "references": entry["references"],
                                         "referenced_columns": entry["referenced_columns"]}
            if fk in shape["indexes"] and shape["indexes"][fk]["columns"] == entry["columns"]:
                shape["indexes"][fk]["implicit"] = True
        schema[name] = shape
    return schema


def _table_of(operation) -> str:
    return getattr(operation, "table_name", None) or getattr(operation, "source_table", None) or ""


def _apply(schema: dict, operation) -> None:
    """Change the schema model as the operation changes the database."""
    from alembic.operations import ops

    table = schema.get(_table_of(operation))
    if isinstance(operation, ops.CreateTableOp):
        schema[operation.table_name] = _table_from_op(operation)
    elif isinstance(operation, ops.DropTableOp):
        schema.pop(operation.table_name, None)
    elif isinstance(operation, ops.RenameTableOp):
        if operation.table_name in schema:
            schema[operation.new_table_name] = schema.pop(operation.table_name)
        for other in schema.values():
            for fk in other["foreign_keys"].values():
                if fk["references"] == operation.table_name:
                    fk["references"] = operation.new_table_name
    elif table is None:
        return
    elif isinstance(operation, ops.AddColumnOp):
        table["columns"][operation.column.name] = _column_shape(operation.column)
        if operation.column.unique:
            _add_index(table, operation.column.name, [operation.column.name], True)
    elif isinstance(operation, ops.DropColumnOp):
        table["columns"].pop(operation.column_name, None)
        for name, index in list(table["indexes"].items()):
            index["columns"] = [c for c in index["columns"] if c != operation.column_name]
            if not index["columns"]:
                del table["indexes"][name]
    elif isinstance(operation, ops.AlterColumnOp):
        column = table["columns"].get(operation.column_name)
        if column is None:
            return
        if operation.modify_type is not None:
            column["type"] = _type_string(operation.modify_type)
        if operation.modify_nullable is not None:
            column["nullable"] = operation.modify_nullable
        if operation.modify_server_default is not False:
            column["default"] = _default_string(operation.modify_server_default)
        if operation.modify_name:
            table["columns"][operation.modify_name] = table["columns"].pop(operation.column_name)
            for entry in [*table["indexes"].values(), *table["foreign_keys"].values()]:
                entry["columns"] = [operation.modify_name if c == operation.column_name else c
                                    for c in entry["columns"]]
    elif isinstance(operation, ops.CreateIndexOp):
        _add_index(table, str(operation.index_name), _index_columns(operation.columns), bool(operation.unique))
    elif isinstance(operation, ops.DropIndexOp):
        table["indexes"].pop(str(operation.index_name), None)
    elif isinstance(operation, ops.CreateUniqueConstraintOp):
        columns = _index_columns(operation.columns)
        _add_index(table, str(operation.constraint_name or columns[0]), columns, True)
    elif isinstance(operation, ops.CreatePrimaryKeyOp):
        table["indexes"]["PRIMARY"] = {"columns": _index_columns(operation.columns), "unique": True}
    elif isinstance(operation, ops.CreateForeignKeyOp):
        _add_fk(table, str(operation.constraint_name or operation.local_cols[0]), list(operation.local_cols),
                operation.referent_table, list(operation.remote_cols))
    elif isinstance(operation, ops.DropConstraintOp):
        name = str(operation.constraint_name)
        if operation.constraint_type == "primary":
            table["indexes"].pop("PRIMARY", None)
        elif operation.constraint_type in ("foreignkey", None) and name in table["foreign_keys"]:
            del table["foreign_keys"][name]  # its index stays, as on the server
        elif operation.constraint_type in ("unique", None):
            table["indexes"].pop(name, None)


def _needed_by(schema: dict, table_name: str, index_name: str) -> list[tuple[str, str]]:
    """(table, foreign key) pairs that need this index: no other index covers their columns."""
    table = schema.get(table_name)
    index = table["indexes"].get(index_name) if table else None
    if index is None:
        return []
    others = [entry["columns"] for name, entry in table["indexes"].items() if name != index_name]
    needs = []
    for other_name, other in schema.items():
        for fk_name, fk in other["foreign_keys"].items():
            sides = []
            if other_name == table_name:
                sides.append(fk["columns"])
            if fk["references"] == table_name:
                sides.append(fk["referenced_columns"])
            for columns in sides:
                if _covers(index["columns"], columns) and not any(_covers(o, columns) for o in others):
                    needs.append((other_name, fk_name))
                    break
    return needs


# ---------------------------------------------------------------- types


_INT_RANK = {"tinyint": 1, "bool": 1, "boolean": 1, "smallint": 2, "mediumint": 3, "int": 4, "integer": 4,
             "bigint": 5}
_TEXT_BYTES = {"tinytext": 255, "text": 65_535, "mediumtext": 16_777_215, "longtext": 4_294_967_295,
               "json": 4_294_967_295, "tinyblob": 255, "blob": 65_535, "mediumblob": 16_777_215,
               "longblob": 4_294_967_295}
_FAMILIES = {
    **{name: "integer" for name in _INT_RANK},
    "char": "string", "varchar": "string", "binary": "string", "varbinary": "string",
    **{name: "text" for name in _TEXT_BYTES},
    "decimal": "decimal", "numeric": "decimal", "dec": "decimal", "fixed": "decimal",
    "float": "float", "double": "float", "real": "float",
    "date": "temporal", "datetime": "temporal", "timestamp": "temporal", "time": "temporal", "year": "temporal",
    "enum": "enum", "set": "enum",
}


@dataclass(frozen=True)
class _Type:
    text: str
    base: str
    args: tuple[str, ...]

    @property
    def family(self) -> str:
        return _FAMILIES.get(self.base, self.base)

    def number(self, position: int, default: int = 0) -> int:
        try:
            return int(self.args[position])
        except (IndexError, ValueError):
            return default


def _parse_type(text: str | None) -> _Type | None:
    if not text:
        return None
    match = re.match(r"\s*([a-z]+(?: precision)?)\s*(?:\((.*?)\)(?=[^)]*$))?", text.lower())
    if not match:
        return None
    base, raw = match.group(1), match.group(2) or ""
    if base in ("enum", "set"):
        args = tuple(value.replace("''", "'") for value in re.findall(r"'((?:[^']|'')*)'", raw))
    else:
        args = tuple(part.strip() for part in raw.split(",") if part.strip())
    return _Type(text, base, args)


def _narrowing(old: _Type, new: _Type) -> str | None:
    """Why changing old to new can lose or refuse existing values, or None."""
    families = old.family, new.family
    if families == ("integer", "integer"):
        if _INT_RANK[new.base] < _INT_RANK[old.base]:
            return f"{new.base.upper()} holds a smaller range than {old.base.upper()}"
        if "unsigned" in old.text and "unsigned" not in new.text and _INT_RANK[new.base] <= _INT_RANK[old.base]:
            return "a signed type holds only half the unsigned range"
    elif families == ("string", "string"):
        if new.number(0, 1) < old.number(0, 1):
            return f"values longer than {new.number(0, 1)} characters are cut or refused"
    elif families == ("text", "string"):
        return f"values longer than {new.number(0, 1)} characters are cut or refused"
    elif families == ("text", "text"):
        if _TEXT_BYTES[new.base] < _TEXT_BYTES[old.base]:
            return f"{new.base.upper()} holds at most {_TEXT_BYTES[new.base]:,} bytes"
    elif families == ("decimal", "decimal"):
        old_precision, old_scale = old.number(0, 10), old.number(1, 0)
        new_precision, new_scale = new.number(0, 10), new.number(1, 0)
        if new_scale < old_scale:
            return f"decimals beyond {new_scale} are rounded away"
        if new_precision - new_scale < old_precision - old_scale:
            return f"values with more than {new_precision - new_scale} integer digits are refused"
    elif families == ("float", "float"):
        if new.base == "float" and old.base != "float":
            return "FLOAT keeps about 7 significant digits of a DOUBLE"
    elif families == ("temporal", "temporal"):
        if old.base in ("datetime", "timestamp") and new.base in ("date", "time", "year"):
            return f"{new.base.upper()} drops part of each value"
        if old.base == "datetime" and new.base == "timestamp":
            return "TIMESTAMP only holds 1970 to 2038"
        if old.base == "date" and new.base == "year":
            return "YEAR drops the month and day"
    elif families == ("decimal", "integer"):
        return "the fractional part is rounded away" if old.number(1, 0) > 0 else None
    elif old.family != new.family and new.family in ("integer", "decimal", "float", "temporal", "enum"):
        if {old.family, new.family} <= {"integer", "decimal", "float"}:
            return None  # numbers into numbers: range checks above
        return f"values that do not convert to {new.base.upper()} are refused or mangled"
    return None


def _needs_copy(old: _Type | None, new: _Type | None) -> bool:
    """Whether MySQL rebuilds the table with ALGORITHM=COPY for this column type change."""
    if new is None:
        return False
    if old is None:
        return True
    if old.text == new.text:
        return False
    if old.base == new.base == "varchar":
        # In place while the length prefix keeps its size (up to 255 bytes, 4 per utf8mb4 character).
        return (old.number(0) * 4 <= 255) != (new.number(0) * 4 <= 255) or new.number(0) < old.number(0)
    if old.family == new.family == "enum" and new.args[: len(old.args)] == old.args:
        return False  # values appended at the end: instant
    return True


# ---------------------------------------------------------------- the configured database


class _Live:
    """Read-only questions to the configured database: table sizes, duplicates."""

    def __init__(self, connection: Connection, database: str) -> None:
        from sqlalchemy import text

        self.connection = connection
        self.database = database
        self.server: ServerInfo = server_info(connection)
        if self.server.flavour == "mysql":
            try:  # MySQL 8 caches information_schema.TABLES for a day otherwise
                connection.execute(text("SET SESSION information_schema_stats_expiry = 0"))
            except Exception:
                pass
        self.sizes = {
            name: (int(rows or 0), int(size or 0))
            for name, rows, size in connection.execute(text(
                "SELECT TABLE_NAME, TABLE_ROWS, DATA_LENGTH + INDEX_LENGTH FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = :db AND TABLE_TYPE = 'BASE TABLE'"), {"db": database})
        }
        self.columns: dict[str, set[str]] = {}
        for table, column in connection.execute(text(
                "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = :db"),
                {"db": database}):
            self.columns.setdefault(table, set()).add(column.lower())

    def has_columns(self, table: str, columns: list[str]) -> bool:
        return table in self.columns and all(column.lower() in self.columns[table] for column in columns)

    def duplicate(self, table: str, columns: list[str]) -> tuple[tuple, int] | None:
        """One group of rows the unique index would refuse: (values, count)."""
        from sqlalchemy import text

        quoted = ", ".join(quote_identifier(column, "column name") for column in columns)
        # NULLs never collide in a unique index.
        not_null = " AND ".join(f"{quote_identifier(column, 'column name')} IS NOT NULL" for column in columns)
        row = self.connection.execute(text(
            f"SELECT {quoted}, COUNT(*) FROM {quote_identifier(table, 'table name')} WHERE {not_null} "
            f"GROUP BY {quoted} HAVING COUNT(*) > 1 LIMIT 1")).first()
        return (tuple(row[:-1]), int(row[-1])) if row else None

    def old_instant_add(self) -> bool:
        """Servers that copy the table to add a column with AFTER/FIRST (instant since MySQL 8.0.29, MariaDB 10.4)."""
        version = self.server.version_tuple
        return version < ((10, 4) if self.server.flavour == "mariadb" else (8, 0, 29))


# ---------------------------------------------------------------- rules


@dataclass
class _Check:
    source: _Source
    before: dict  # schema before the revision
    live: _Live | None
    large_rows: int
    large_bytes: int
    findings: list[Finding] = field(default_factory=list)
    unsized: list[str] = field(default_factory=list)  # copies whose table size could not be read
    spans: dict[int, tuple[int, int]] = field(default_factory=dict, repr=False)  # id(finding) -> call lines

    def add(self, item: _Captured, rule: str, severity: str, message: str, fix: str) -> None:
        finding = _finding(self.source, rule, severity, item.line, message, fix)
        self.findings.append(finding)
        self.spans[id(finding)] = (item.line, item.end_line)

    def span(self, finding: Finding) -> tuple[int, int]:
        return self.spans.get(id(finding), (finding.line, finding.line))


def _existed(check: _Check, table: str, column: str | None = None) -> bool:
    """Whether the table (column) existed before this revision."""
    before = check.before.get(table)
    if before is None or column is None:
        return before is not None
    return column in before["columns"]


def _show(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


_DML = frozenset({"UPDATE", "DELETE", "INSERT", "REPLACE"})
_DDL = frozenset({"ALTER", "CREATE", "DROP", "RENAME", "TRUNCATE"})


def _check_revision(check: _Check) -> None:
    from alembic.operations import ops

    state = copy.deepcopy(check.before)
    operations = _expand(check.source.upgrade)
    dml, ddl = [], []
    for item in operations:
        operation = item.operation
        if isinstance(operation, ops.ExecuteSQLOp):
            try:
                keywords = _keywords(operation.sqltext)
            except SQLSyntaxError as exc:
                check.add(item, "unreadable-revision", WARNING,
                          f"the SQL of op.execute() cannot be read ({exc}); the rules did not see its statements",
                          "fix the SQL: the server cannot read it either")
                continue
            if keywords & _DML:
                dml.append((item, "/".join(sorted(keywords & _DML))))
            if keywords & _DDL:
                ddl.append(item)  # the operations it amounts to follow it in the list
            continue
        if isinstance(operation, ops.BulkInsertOp):
            dml.append((item, "bulk_insert"))
            continue
        ddl.append(item)
        _check_operation(check, state, item)
        if not isinstance(operation, _RawCopy):
            _apply(state, operation)
    if dml and ddl:
        item, kind = dml[0]
        check.add(item, "data-update-mixed-with-ddl", WARNING,
                  f"{kind} beside schema changes (line {ddl[0].line}): MySQL commits each DDL statement, so a "
                  "failure in between leaves the revision half-applied and not recorded",
                  "move the data change into a revision of its own")


def _check_operation(check: _Check, state: dict, item: _Captured) -> None:
    from alembic.operations import ops

    operation = item.operation
    table = _table_of(operation)
    if isinstance(operation, ops.DropTableOp) and _existed(check, table):
        check.add(item, "drop-table", ERROR,
                  f"drops table {table} and all its rows; the running application still uses it",
                  "expand/contract over two releases: stop using the table, then drop it in a later revision "
                  "after a backup")
    elif isinstance(operation, ops.DropColumnOp) and _existed(check, table, operation.column_name):
        check.add(item, "drop-column", ERROR,
                  f"drops column {table}.{operation.column_name} and its data; the running application still "
                  "selects it",
                  "expand/contract over two releases: stop using the column, then drop it in a later revision")
    elif isinstance(operation, ops.RenameTableOp) and _existed(check, table):
        check.add(item, "rename-table", ERROR,
                  f"renames table {table} to {operation.new_table_name}: the running application still uses "
                  "the old name",
                  "create the new table, copy and write to both, switch the application, drop the old one "
                  "in a later release")
    elif isinstance(operation, ops.AddColumnOp):
        _check_add_column(check, item, table)
    elif isinstance(operation, ops.AlterColumnOp):
        _check_alter_column(check, state, item, table)
    elif isinstance(operation, ops.DropIndexOp):
        _check_drop_index(check, state, item, table, str(operation.index_name))
    elif isinstance(operation, ops.DropConstraintOp):
        if operation.constraint_type in ("unique", None) and str(operation.constraint_name) in \
                state.get(table, {}).get("indexes", {}):
            _check_drop_index(check, state, item, table, str(operation.constraint_name))
        elif operation.constraint_type == "primary":
            _check_drop_index(check, state, item, table, "PRIMARY")
            _check_copy(check, item, table, "dropping the primary key")
    elif isinstance(operation, ops.CreateUniqueConstraintOp):
        _check_unique(check, item, table, _index_columns(operation.columns))
    elif isinstance(operation, ops.CreateIndexOp) and operation.unique:
        _check_unique(check, item, table, _index_columns(operation.columns))
    elif isinstance(operation, _RawCopy):
        if not operation.old_servers_only or check.live is None or check.live.old_instant_add():
            _check_copy(check, item, table, operation.what)


def _check_add_column(check: _Check, item: _Captured, table: str) -> None:
    column = item.operation.column
    if not _existed(check, table) or column.nullable or column.server_default is not None:
        return
    if column.primary_key or column.autoincrement is True or column.computed is not None:
        return
    check.add(item, "not-null-without-default", ERROR,
              f"adds NOT NULL column {table}.{column.name} without a server_default: existing rows get 0, '' or "
              "a zero date (or the ALTER fails in strict mode), and the running application's INSERTs fail",
              "add it nullable or with a server_default, backfill, then make it NOT NULL in a later revision")


def _check_alter_column(check: _Check, state: dict, item: _Captured, table: str) -> None:
    operation = item.operation
    name = operation.column_name
    if not _existed(check, table, name):
        return  # added by this revision: no rows hold it yet
    column = state.get(table, {}).get("columns", {}).get(name, {})
    if operation.modify_name and operation.modify_name != name:
        check.add(item, "rename-column", ERROR,
                  f"renames {table}.{name} to {operation.modify_name}: the running application still uses the "
                  "old name",
                  "add the new column, write both, backfill, switch the application, drop the old one in a "
                  "later release")
    if operation.modify_nullable is False:
        was_nullable = column.get("nullable", operation.existing_nullable is not False)
        default = operation.modify_server_default if operation.modify_server_default is not False else \
            column.get("default", _default_string(operation.existing_server_default))
        if was_nullable and _default_string(default) is None:
            check.add(item, "not-null-without-default", ERROR,
                      f"makes {table}.{name} NOT NULL without a server_default: existing NULLs make the ALTER "
                      "fail (error 1138) or turn into 0 or ''",
                      "backfill the NULLs in an earlier revision and give the column a server_default")
    if operation.modify_type is None:
        return
    old = _parse_type(column.get("type") or _type_string(operation.existing_type))
    new = _parse_type(_type_string(operation.modify_type))
    if old and new and old.family == new.family == "enum":
        _check_enum(check, item, table, name, old, new)
    elif old and new and (reason := _narrowing(old, new)):
        check.add(item, "narrow-type", ERROR,
                  f"changes {table}.{name} from {old.text.upper()} to {new.text.upper()}: {reason}",
                  "add a column of the new type, copy and check the data, switch the application, then drop "
                  "the old column")
    if _needs_copy(old, new):
        _check_copy(check, item, table, f"changing the type of {name}")


def _check_enum(check: _Check, item: _Captured, table: str, name: str, old: _Type, new: _Type) -> None:
    removed = [value for value in old.args if value not in new.args]
    kept_old = [value for value in old.args if value in new.args]
    kept_new = [value for value in new.args if value in old.args]
    if removed:
        check.add(item, "enum-values-removed-or-reordered", ERROR,
                  f"removes {', '.join(map(repr, removed))} from ENUM {table}.{name}: rows holding them become '' "
                  "or the ALTER fails in strict mode",
                  "move rows off those values in an earlier revision; only ever append values at the end")
    elif kept_old != kept_new:
        check.add(item, "enum-values-removed-or-reordered", ERROR,
                  f"reorders the values of ENUM {table}.{name}: the table is copied and ORDER BY on it changes",
                  "keep the existing order and append new values at the end")
    elif new.args[: len(old.args)] != old.args:
        check.add(item, "enum-values-removed-or-reordered", WARNING,
                  f"inserts values into ENUM {table}.{name} before existing ones: their numbers shift and the "
                  "table is copied",
                  "append new values at the end")


def _check_drop_index(check: _Check, state: dict, item: _Captured, table: str, index: str) -> None:
    for fk_table, fk in _needed_by(state, table, index):
        check.add(item, "drop-index-needed-by-fk", ERROR,
                  f"drops index {index} of {table}, which foreign key {fk} of {fk_table} needs: MySQL refuses "
                  "(error 1553)",
                  f"drop the foreign key first (op.drop_constraint('{fk}', '{fk_table}', type_='foreignkey')), "
                  "then the index, then re-create the foreign key if it is still wanted")


def _check_unique(check: _Check, item: _Captured, table: str, columns: list[str]) -> None:
    if not _existed(check, table):
        return
    shown = ", ".join(columns)
    fix = (f"find duplicates first: SELECT {shown}, COUNT(*) FROM {table} GROUP BY {shown} HAVING COUNT(*) > 1; "
           "resolve them in an earlier revision")
    live = check.live
    if live is not None and live.has_columns(table, columns):
        found = live.duplicate(table, columns)
        if found:
            values, count = found
            example = ", ".join(f"{column} = {_show(value)}" for column, value in zip(columns, values, strict=False))
            check.add(item, "add-unique-constraint", ERROR,
                      f"adds UNIQUE ({shown}) on {table}, but {live.database} has duplicates: {count} rows with "
                      f"{example}",
                      "remove or merge the duplicate rows in an earlier revision, then add the constraint")
            return
        check.add(item, "add-unique-constraint", WARNING,
                  f"adds UNIQUE ({shown}) on existing table {table}: {live.database} has no duplicates now, but rows "
                  "written before the deploy could make the ALTER fail (error 1062)", fix)
        return
    check.add(item, "add-unique-constraint", WARNING,
              f"adds UNIQUE ({shown}) on existing table {table}: duplicates in its rows make the ALTER fail "
              "(error 1062) after the revision's earlier statements were committed", fix)


def _check_copy(check: _Check, item: _Captured, table: str, what: str) -> None:
    if not _existed(check, table):
        return
    if check.live is None:
        check.unsized.append(f"{table} ({what})")
        return
    rows, size = check.live.sizes.get(table, (0, 0))
    if rows >= check.large_rows or size >= check.large_bytes:
        check.add(item, "large-table-copy", WARNING,
                  f"{what} copies table {table} (about {rows:,} rows, {size / 1e6:,.0f} MB): writes to it wait "
                  "until the copy ends",
                  "run it in a maintenance window, or with an online schema change tool (gh-ost, "
                  "pt-online-schema-change)")


def _check_downgrade(source: _Source, findings: list[Finding]) -> None:
    """missing-downgrade, read from the source: a real downgrade, one that says why it cannot, or none."""
    tree = source.tree
    if tree is None:
        return
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    if _changes_nothing(source) and not source.upgrade_error:
        return  # an empty revision (e.g. a merge) or a read-only one has nothing to revert
    fix = "write a downgrade() that reverts upgrade(), or raise an error saying why it cannot"
    downgrade = functions.get("downgrade")
    if downgrade is None:
        findings.append(_finding(source, "missing-downgrade", WARNING, 1,
                                 "no downgrade(): `invoke db.downgrade` and a deploy's rollback cannot revert it", fix))
        return
    for statement in _body(downgrade):
        if isinstance(statement, ast.Raise):
            reason = _raise_reason(statement)
            if reason:
                findings.append(_finding(source, "missing-downgrade", INFO, statement.lineno,
                                         f"downgrade() says why it cannot: {reason}",
                                         "none needed; restore a backup to go back"))
            else:
                findings.append(_finding(source, "missing-downgrade", WARNING, statement.lineno,
                                         "downgrade() raises without saying why it cannot", fix))
            return
    if _trivial(downgrade):
        findings.append(_finding(source, "missing-downgrade", WARNING, downgrade.lineno,
                                 "downgrade() does nothing: a rollback would record the revision as reverted while "
                                 "its changes stay", fix))


def _changes_nothing(source: _Source) -> bool:
    from alembic.operations import ops

    functions = {node.name: node for node in source.tree.body if isinstance(node, ast.FunctionDef)}
    if not source.upgrade:
        return _trivial(functions.get("upgrade"))
    try:
        return all(isinstance(item.operation, ops.ExecuteSQLOp) and _keywords(item.operation.sqltext) <= _READ_ONLY
                   for item in source.upgrade)
    except SQLSyntaxError:
        return False


_READ_ONLY = frozenset({"SELECT", "SHOW", "DO", "SET", "EXPLAIN"})


def _body(function: ast.FunctionDef) -> list[ast.stmt]:
    body = list(function.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]  # the docstring
    return body


def _trivial(function: ast.FunctionDef | None) -> bool:
    if function is None:
        return True
    return all(isinstance(statement, ast.Pass) or (isinstance(statement, ast.Expr)
               and isinstance(statement.value, ast.Constant) and statement.value.value is Ellipsis)
               for statement in _body(function))


def _raise_reason(statement: ast.Raise) -> str:
    exc = statement.exc
    if isinstance(exc, ast.Call) and exc.args:
        argument = exc.args[0]
        if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
            return " ".join(argument.value.split())
        return ast.unparse(argument)
    return ""


# ---------------------------------------------------------------- driver


def _ordered(script: ScriptDirectory) -> list[Script]:
    """Every revision, oldest first (parents before children)."""
    with migrate.alembic_errors():
        return list(reversed(list(script.walk_revisions())))


def _parents(script: Script) -> tuple[str, ...]:
    down = script.down_revision
    if down is None:
        return ()
    return (down,) if isinstance(down, str) else tuple(down)


def _select(settings: Settings, script: ScriptDirectory, ordered: list[Script], revision: str | None,
            all_revisions: bool, live_ok: bool, report: LintReport) -> list[Script]:
    if revision:
        migrate.validate_revision_argument(revision)
        with migrate.alembic_errors():
            found = script.get_revision(revision)
        if found is None:
            raise RevisionError(f"unknown revision {revision!r}: see `invoke db.history`")
        return [found]
    if all_revisions or not live_ok:
        return ordered
    try:
        current = migrate.current(settings)
        pending = {step.revision for step in migrate.pending(script, current, "heads")}
    except DbOpsError as exc:
        report.notes.append(f"linting every revision: pending ones unknown ({exc})")
        return ordered
    report.notes.append(f"{len(pending)} revision(s) pending against {settings.database} "
                        f"(at {', '.join(current) or 'base'}); --all lints every revision")
    return [rev for rev in ordered if rev.revision in pending]


@contextmanager
def _scratch_snapshots(settings: Settings) -> Iterator:
    """A function revision -> schema before it, from a scratch database upgraded step by step."""
    from alembic import command

    from .snapshot import schema_snapshot

    with migrate.scratch_database(settings, "base") as scratch:
        def before(rev: Script) -> dict:
            with migrate.migration_connection(scratch) as (config, connection):
                for parent in _parents(rev):
                    command.upgrade(config, parent)
                connection.commit()
                return _schema_from_snapshot(schema_snapshot(connection, scratch.database, TOOL_TABLES))
        yield before


def _replayed(sources: dict[str, _Source], ordered: list[Script], wanted: set[str]) -> dict[str, dict]:
    """Schema before each wanted revision, replayed from the operations of the earlier ones."""
    after: dict[str, dict] = {}
    before: dict[str, dict] = {}
    for rev in ordered:
        state: dict = {}
        for parent in _parents(rev):
            for name, table in after.get(parent, {}).items():
                state.setdefault(name, copy.deepcopy(table))
        if rev.revision in wanted:
            before[rev.revision] = copy.deepcopy(state)
        if not set(wanted) - set(before):
            break
        for item in _expand(sources[rev.revision].upgrade):
            if not isinstance(item.operation, _RawCopy):
                _apply(state, item.operation)
        after[rev.revision] = state
    return before


def _silence(report: LintReport, source: _Source, findings: list[Finding], spans) -> None:
    for finding in findings:
        first, last = spans(finding)
        reason = source.file_ignores.get(finding.rule)
        for line in range(first, last + 1):
            reason = reason or source.line_ignores.get(line, {}).get(finding.rule)
        if reason:
            report.silenced.append((finding, reason))
        else:
            report.findings.append(finding)


def lint(
    settings: Settings,
    revisions: Sequence[str] | None = None,
    database_checks: bool = True,
    all_revisions: bool = False,
    large_table_rows: int = LARGE_TABLE_ROWS,
    large_table_bytes: int = LARGE_TABLE_BYTES,
) -> LintReport:
    """Lint revisions: `revisions` (ids), or all_revisions, or by default those pending against the
    configured database when it is reachable (all otherwise).

    database_checks=False never connects: the earlier schema is replayed from the revisions'
    operations, and duplicates and table sizes are not looked at.
    """
    report = LintReport()
    script = migrate.script_directory(settings)
    ordered = _ordered(script)
    by_id = {rev.revision: rev for rev in ordered}

    with ExitStack() as stack:
        live: _Live | None = None
        if database_checks and settings.is_configured:
            try:
                connection = stack.enter_context(connect(settings))
                live = _Live(connection, settings.database)
            except DbOpsError as exc:
                report.notes.append(f"database checks skipped: {exc}")
        elif database_checks:
            report.notes.append("database checks skipped: no database configured")

        selected: list[Script] = []
        for revision in revisions or [None]:
            for rev in _select(settings, script, ordered, revision, all_revisions, live is not None, report):
                if rev not in selected:
                    selected.append(rev)
        selected.sort(key=ordered.index)
        report.revisions = [rev.revision for rev in selected]

        # Operations of the revisions to lint and of all before them (for the replayed schema).
        last = max((ordered.index(rev) for rev in selected), default=-1)
        sources = {rev.revision: _load(rev) for rev in ordered[: last + 1]}

        before = None
        if database_checks and settings.is_configured and selected:
            try:
                before = stack.enter_context(_scratch_snapshots(settings))
            except DbOpsError as exc:
                report.notes.append(f"scratch database unavailable ({exc}): schema replayed from the revisions")
        replayed = None
        sources_used: list[str] = []

        unsized: list[str] = []
        for rev in selected:
            source = sources[rev.revision]
            schema = None
            if before is not None:
                try:
                    schema = before(rev)
                    sources_used.append("scratch database")
                except Exception as exc:
                    # e.g. an earlier revision fails on the server: go on without the scratch database
                    report.notes.append(f"scratch database stopped before {rev.revision} "
                                        f"({migrate.first_line(exc)}): schema replayed from the revisions")
                    before = None
            if schema is None:
                if replayed is None:
                    replayed = _replayed(sources, ordered, set(report.revisions))
                schema = replayed.get(rev.revision, {})
                sources_used.append("revision operations")
            check = _Check(source, schema, live, large_table_rows, large_table_bytes)
            _check_revision(check)
            if source.upgrade_error:
                message, line = source.upgrade_error
                check.findings.append(_finding(
                    source, "unreadable-revision", WARNING, line or 1,
                    f"upgrade() raised while its operations were read: {message}; the rules saw only the "
                    "operations before it",
                    "keep upgrade() to op.* calls (op.get_bind() queries do not run offline)"))
            _check_downgrade(source, check.findings)
            unsized.extend(check.unsized)
            report.findings.extend(source.bad_ignores)
            _silence(report, source, check.findings, check.span)

        heads = script.get_heads()
        if len(heads) > 1:
            head_sources = [sources.get(head) or _load(by_id[head]) for head in sorted(heads)]
            finding = _finding(head_sources[0], "multiple-heads", ERROR, _assignment_line(head_sources[0]),
                               f"{len(heads)} heads: {', '.join(sorted(heads))}",
                               "join them with `invoke db.merge`")
            reasons = [s.file_ignores.get("multiple-heads") for s in head_sources if s.file_ignores.get("multiple-heads")]
            if reasons:
                report.silenced.append((finding, reasons[0]))
            else:
                report.findings.append(finding)
        report.schema_source = ", then ".join(dict.fromkeys(sources_used)) or report.schema_source
        if unsized:
            report.notes.append(f"large-table-copy not checked (no database reachable for table sizes): "
                                f"{', '.join(unsized)}")
    return report


def _assignment_line(source: _Source) -> int:
    for node in source.tree.body if source.tree else []:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) \
            else []
        if any(isinstance(target, ast.Name) and target.id == "down_revision" for target in targets):
            return node.lineno
    return 1
