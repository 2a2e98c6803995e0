"""The rules: each revision's operations walked over the schema before it."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

from ..ddl_guard import ONLINE, ONLINE_ASKED, OPT_IN, OSC_TOOL, copy_estimate
from ..schema import Schema
from ..sql import SQLSyntaxError
from .capture import Captured, Source, finding_in
from .live import Live
from .raw_sql import RawCopy, expand, statement_keywords
from .report import ERROR, INFO, WARNING, Finding
from .schema import apply_operation, default_string, index_columns, needed_by, table_of, type_string
from .types import ColumnType, narrowing, needs_copy, parse_type


@dataclass
class Check:
    source: Source
    before: Schema  # schema before the revision
    live: Live | None
    large_rows: int
    large_bytes: int
    online_mode: str = ""  # ddl_guard.schema_change_mode: what a big table copy does in a deploy
    findings: list[Finding] = field(default_factory=list)
    unsized: list[str] = field(default_factory=list)  # copies whose table size could not be read
    spans: dict[int, tuple[int, int]] = field(default_factory=dict, repr=False)  # id(finding) -> call lines

    def add(self, item: Captured, rule: str, severity: str, message: str, fix: str) -> None:
        finding = finding_in(self.source, rule, severity, item.line, message, fix)
        self.findings.append(finding)
        self.spans[id(finding)] = (item.line, item.end_line)

    def span(self, finding: Finding) -> tuple[int, int]:
        return self.spans.get(id(finding), (finding.line, finding.line))


def _existed(check: Check, table: str, column: str | None = None) -> bool:
    """Whether the table (column) existed before this revision."""
    before = check.before.tables.get(table)
    if before is None or column is None:
        return before is not None
    return before.column(column) is not None


def _show(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


_DML = frozenset({"UPDATE", "DELETE", "INSERT", "REPLACE"})
_DDL = frozenset({"ALTER", "CREATE", "DROP", "RENAME", "TRUNCATE"})


def check_revision(check: Check) -> None:
    from alembic.operations import ops

    state = check.before
    operations = expand(check.source.upgrade)
    dml, ddl = [], []
    for item in operations:
        operation = item.operation
        if isinstance(operation, ops.ExecuteSQLOp):
            try:
                keywords = statement_keywords(operation.sqltext)
            except SQLSyntaxError as exc:
                check.add(
                    item,
                    "unreadable-revision",
                    WARNING,
                    f"the SQL of op.execute() cannot be read ({exc}); the rules did not see its statements",
                    "fix the SQL: the server cannot read it either",
                )
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
        if not isinstance(operation, RawCopy):
            state = apply_operation(state, operation)
    if dml and ddl:
        item, kind = dml[0]
        check.add(
            item,
            "data-update-mixed-with-ddl",
            WARNING,
            f"{kind} beside schema changes (line {ddl[0].line}): MySQL commits each DDL statement, so a "
            "failure in between leaves the revision half-applied and not recorded",
            "move the data change into a revision of its own",
        )


def _check_operation(check: Check, state: Schema, item: Captured) -> None:
    from alembic.operations import ops

    operation = item.operation
    table = table_of(operation)
    if isinstance(operation, ops.DropTableOp) and _existed(check, table):
        check.add(
            item,
            "drop-table",
            ERROR,
            f"drops table {table} and all its rows; the running application still uses it",
            "expand/contract over two releases: stop using the table, then drop it in a later revision after a backup",
        )
    elif isinstance(operation, ops.DropColumnOp) and _existed(check, table, operation.column_name):
        check.add(
            item,
            "drop-column",
            ERROR,
            f"drops column {table}.{operation.column_name} and its data; the running application still selects it",
            "expand/contract over two releases: stop using the column, then drop it in a later revision",
        )
    elif isinstance(operation, ops.RenameTableOp) and _existed(check, table):
        check.add(
            item,
            "rename-table",
            ERROR,
            f"renames table {table} to {operation.new_table_name}: the running application still uses the old name",
            "create the new table, copy and write to both, switch the application, drop the old one in a later release",
        )
    elif isinstance(operation, ops.AddColumnOp):
        _check_add_column(check, item, table)
    elif isinstance(operation, ops.AlterColumnOp):
        _check_alter_column(check, state, item, table)
    elif isinstance(operation, ops.DropIndexOp):
        _check_drop_index(check, state, item, table, str(operation.index_name))
    elif isinstance(operation, ops.DropConstraintOp):
        if operation.constraint_type in ("unique", None) and str(operation.constraint_name) in _indexes(state, table):
            _check_drop_index(check, state, item, table, str(operation.constraint_name))
        elif operation.constraint_type == "primary":
            _check_drop_index(check, state, item, table, "PRIMARY")
            _check_copy(check, item, table, "dropping the primary key")
    elif isinstance(operation, ops.CreateUniqueConstraintOp):
        _check_unique(check, item, table, index_columns(operation.columns))
    elif isinstance(operation, ops.CreateIndexOp) and operation.unique:
        _check_unique(check, item, table, index_columns(operation.columns))
    elif isinstance(operation, RawCopy):
        if not operation.old_servers_only or check.live is None or check.live.old_instant_add():
            _check_copy(check, item, table, operation.what)


def _check_add_column(check: Check, item: Captured, table: str) -> None:
    column = item.operation.column
    if not _existed(check, table) or column.nullable or column.server_default is not None:
        return
    if column.primary_key or column.autoincrement is True or column.computed is not None:
        return
    check.add(
        item,
        "not-null-without-default",
        ERROR,
        f"adds NOT NULL column {table}.{column.name} without a server_default: existing rows get 0, '' or "
        "a zero date (or the ALTER fails in strict mode), and the running application's INSERTs fail",
        "add it nullable or with a server_default, backfill, then make it NOT NULL in a later revision",
    )


def _indexes(state: Schema, table: str) -> dict:
    return state.tables[table].indexes if table in state.tables else {}


def _check_alter_column(check: Check, state: Schema, item: Captured, table: str) -> None:
    operation = item.operation
    name = operation.column_name
    if not _existed(check, table, name):
        return  # added by this revision: no rows hold it yet
    column = state.tables[table].column(name) if table in state.tables else None
    if operation.modify_name and operation.modify_name != name:
        check.add(
            item,
            "rename-column",
            ERROR,
            f"renames {table}.{name} to {operation.modify_name}: the running application still uses the old name",
            "add the new column, write both, backfill, switch the application, drop the old one in a later release",
        )
    if operation.modify_nullable is False:
        was_nullable = column.nullable if column else operation.existing_nullable is not False
        default = (
            operation.modify_server_default
            if operation.modify_server_default is not False
            else column.default
            if column
            else default_string(operation.existing_server_default)
        )
        if was_nullable and default_string(default) is None:
            check.add(
                item,
                "not-null-without-default",
                ERROR,
                f"makes {table}.{name} NOT NULL without a server_default: existing NULLs make the ALTER "
                "fail (error 1138) or turn into 0 or ''",
                "backfill the NULLs in an earlier revision and give the column a server_default",
            )
    if operation.modify_type is None:
        return
    old = parse_type((column.type if column else "") or type_string(operation.existing_type))
    new = parse_type(type_string(operation.modify_type))
    if old and new and old.family == new.family == "enum":
        _check_enum(check, item, table, name, old, new)
    elif old and new and (reason := narrowing(old, new)):
        check.add(
            item,
            "narrow-type",
            ERROR,
            f"changes {table}.{name} from {old.text.upper()} to {new.text.upper()}: {reason}",
            "add a column of the new type, copy and check the data, switch the application, then drop the old column",
        )
    if needs_copy(old, new):
        _check_copy(check, item, table, f"changing the type of {name}")


def _check_enum(check: Check, item: Captured, table: str, name: str, old: ColumnType, new: ColumnType) -> None:
    removed = [value for value in old.args if value not in new.args]
    kept_old = [value for value in old.args if value in new.args]
    kept_new = [value for value in new.args if value in old.args]
    if removed:
        check.add(
            item,
            "enum-values-removed-or-reordered",
            ERROR,
            f"removes {', '.join(map(repr, removed))} from ENUM {table}.{name}: rows holding them become '' "
            "or the ALTER fails in strict mode",
            "move rows off those values in an earlier revision; only ever append values at the end",
        )
    elif kept_old != kept_new:
        check.add(
            item,
            "enum-values-removed-or-reordered",
            ERROR,
            f"reorders the values of ENUM {table}.{name}: the table is copied and ORDER BY on it changes",
            "keep the existing order and append new values at the end",
        )
    elif new.args[: len(old.args)] != old.args:
        check.add(
            item,
            "enum-values-removed-or-reordered",
            WARNING,
            f"inserts values into ENUM {table}.{name} before existing ones: their numbers shift and the "
            "table is copied",
            "append new values at the end",
        )


def _check_drop_index(check: Check, state: Schema, item: Captured, table: str, index: str) -> None:
    for fk_table, fk in needed_by(state, table, index):
        check.add(
            item,
            "drop-index-needed-by-fk",
            ERROR,
            f"drops index {index} of {table}, which foreign key {fk} of {fk_table} needs: MySQL refuses (error 1553)",
            f"drop the foreign key first (op.drop_constraint('{fk}', '{fk_table}', type_='foreignkey')), "
            "then the index, then re-create the foreign key if it is still wanted",
        )


def _check_unique(check: Check, item: Captured, table: str, columns: list[str]) -> None:
    if not _existed(check, table):
        return
    shown = ", ".join(columns)
    fix = (
        f"find duplicates first: SELECT {shown}, COUNT(*) FROM {table} GROUP BY {shown} HAVING COUNT(*) > 1; "
        "resolve them in an earlier revision"
    )
    live = check.live
    if live is not None and live.has_columns(table, columns):
        found = live.duplicate(table, columns)
        if found:
            values, count = found
            example = ", ".join(f"{column} = {_show(value)}" for column, value in zip(columns, values, strict=False))
            check.add(
                item,
                "add-unique-constraint",
                ERROR,
                f"adds UNIQUE ({shown}) on {table}, but {live.database} has duplicates: {count} rows with {example}",
                "remove or merge the duplicate rows in an earlier revision, then add the constraint",
            )
            return
        check.add(
            item,
            "add-unique-constraint",
            WARNING,
            f"adds UNIQUE ({shown}) on existing table {table}: {live.database} has no duplicates now, but rows "
            "written before the deploy could make the ALTER fail (error 1062)",
            fix,
        )
        return
    check.add(
        item,
        "add-unique-constraint",
        WARNING,
        f"adds UNIQUE ({shown}) on existing table {table}: duplicates in its rows make the ALTER fail "
        "(error 1062) after the revision's earlier statements were committed",
        fix,
    )


def _check_copy(check: Check, item: Captured, table: str, what: str) -> None:
    if not _existed(check, table):
        return
    if check.live is None:
        check.unsized.append(f"{table} ({what})")
        return
    rows, size = check.live.sizes.get(table, (0, 0))
    text = check.source.path.read_text(errors="replace")
    asked, allowed = bool(ONLINE_ASKED.search(text)), bool(OPT_IN.search(text))
    if asked or (
        check.online_mode == ONLINE and not allowed and (rows >= check.large_rows or size >= check.large_bytes)
    ):
        check.add(
            item,
            "large-table-copy",
            INFO,
            f"{what} copies table {table} (about {rows:,} rows, {size / 1e6:,.0f} MB): it runs online through "
            f"{OSC_TOOL}, the copy taking about {copy_estimate(size)}; writes to it do not wait",
            "nothing to do; OSC_MAX_LOAD, OSC_CRITICAL_LOAD and OSC_CHUNK_TIME throttle the copy",
        )
        return
    if rows >= check.large_rows or size >= check.large_bytes:
        check.add(
            item,
            "large-table-copy",
            WARNING,
            f"{what} copies table {table} (about {rows:,} rows, {size / 1e6:,.0f} MB): writes to it wait "
            "until the copy ends",
            "run it in a maintenance window, or with an online schema change tool (gh-ost, pt-online-schema-change)",
        )


def check_downgrade(source: Source, findings: list[Finding]) -> None:
    """missing-downgrade, read from the source: a real downgrade, one that says why it cannot, or none."""
    tree = source.tree
    if tree is None:
        return
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    if _changes_nothing(source, functions.get("upgrade")) and not source.upgrade_error:
        return  # an empty revision (e.g. a merge) or a read-only one has nothing to revert
    fix = "write a downgrade() that reverts upgrade(), or raise an error saying why it cannot"
    downgrade = functions.get("downgrade")
    if downgrade is None:
        findings.append(
            finding_in(
                source,
                "missing-downgrade",
                WARNING,
                1,
                "no downgrade(): `invoke db.downgrade` and a deploy's rollback cannot revert it",
                fix,
            )
        )
        return
    for statement in _body(downgrade):
        if isinstance(statement, ast.Raise):
            reason = _raise_reason(statement)
            if reason:
                findings.append(
                    finding_in(
                        source,
                        "missing-downgrade",
                        INFO,
                        statement.lineno,
                        f"downgrade() says why it cannot: {reason}",
                        "none needed; restore a backup to go back",
                    )
                )
            else:
                findings.append(
                    finding_in(
                        source,
                        "missing-downgrade",
                        WARNING,
                        statement.lineno,
                        "downgrade() raises without saying why it cannot",
                        fix,
                    )
                )
            return
    if _trivial(downgrade):
        findings.append(
            finding_in(
                source,
                "missing-downgrade",
                WARNING,
                downgrade.lineno,
                "downgrade() does nothing: a rollback would record the revision as reverted while its changes stay",
                fix,
            )
        )


def _changes_nothing(source: Source, upgrade: ast.FunctionDef | None) -> bool:
    from alembic.operations import ops

    if not source.upgrade:
        return _trivial(upgrade)
    try:
        return all(
            isinstance(item.operation, ops.ExecuteSQLOp) and statement_keywords(item.operation.sqltext) <= _READ_ONLY
            for item in source.upgrade
        )
    except SQLSyntaxError:
        return False


_READ_ONLY = frozenset({"SELECT", "SHOW", "DO", "SET", "EXPLAIN"})


def _body(function: ast.FunctionDef) -> list[ast.stmt]:
    body = list(function.body)
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        body = body[1:]  # the docstring
    return body


def _trivial(function: ast.FunctionDef | None) -> bool:
    if function is None:
        return True
    return all(
        isinstance(statement, ast.Pass)
        or (
            isinstance(statement, ast.Expr)
            and isinstance(statement.value, ast.Constant)
            and statement.value.value is Ellipsis
        )
        for statement in _body(function)
    )


def _raise_reason(statement: ast.Raise) -> str:
    exc = statement.exc
    if isinstance(exc, ast.Call) and exc.args:
        argument = exc.args[0]
        if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
            return " ".join(argument.value.split())
        return ast.unparse(argument)
    return ""
