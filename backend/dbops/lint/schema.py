"""The lint's schema before each revision, in the typed model of schema.py (Schema, Table, Column,
Index, ForeignKey): read from a scratch database, or built from create_table, then changed
operation by operation as the revision would change the database. The model is frozen:
apply_operation returns the schema after the operation.

What the lint cannot know from an operation is left empty: a column's extra and collation, a
type it was not given ("").
"""

from __future__ import annotations

import re
from dataclasses import replace

from ..schema import Column, ForeignKey, Index, Schema, Table


def type_string(type_) -> str | None:
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


def default_string(default) -> str | None:
    if default is None or default is False:
        return None
    arg = getattr(default, "arg", default)
    return str(getattr(arg, "text", arg))


def _column(column) -> Column:
    return Column(
        column.name,
        type_string(column.type) or "",
        bool(column.nullable),
        default_string(column.server_default),
        "",
        None,
    )


def _rule(value: str | None) -> str:
    return (value or "RESTRICT").upper()


def _covers(index_columns: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
    return [c.lower() for c in index_columns[: len(wanted)]] == [c.lower() for c in wanted]


def _add_fk(table: Table, fk: ForeignKey) -> Table:
    table = replace(table, foreign_keys={**table.foreign_keys, fk.name: fk})
    # InnoDB creates an index for a foreign key no index covers, named after the constraint.
    if any(_covers(index.columns, fk.columns) for index in table.indexes.values()):
        return table
    return replace(table, indexes={**table.indexes, fk.name: Index(fk.name, fk.columns, False)})


def _add_index(table: Table, index: Index) -> Table:
    # ... and drops that implicit index once another one covers the foreign key.
    explicit = table.explicit_indexes()
    indexes = {
        name: other
        for name, other in table.indexes.items()
        if name in explicit or name == index.name or not _covers(index.columns, other.columns)
    }
    return replace(table, indexes={**indexes, index.name: index})


def index_columns(columns) -> list[str]:
    return [column if isinstance(column, str) else str(getattr(column, "name", column)) for column in columns]


def _table_from_op(operation) -> Table:
    from sqlalchemy import PrimaryKeyConstraint, UniqueConstraint

    source = operation.to_table()
    table = Table(source.name, None, None, tuple(_column(column) for column in source.columns))
    for constraint in source.constraints:
        columns = tuple(column.name for column in constraint.columns)
        if isinstance(constraint, PrimaryKeyConstraint) and columns:
            table = replace(table, indexes={**table.indexes, "PRIMARY": Index("PRIMARY", columns, True)})
        elif isinstance(constraint, UniqueConstraint):
            name = str(constraint.name or columns[0])
            table = replace(table, indexes={**table.indexes, name: Index(name, columns, True)})
    for index in source.indexes:
        table = _add_index(
            table, Index(str(index.name), tuple(column.name for column in index.columns), bool(index.unique))
        )
    for fk in source.foreign_key_constraints:
        referred = [element.target_fullname.split(".") for element in fk.elements]
        table = _add_fk(
            table,
            ForeignKey(
                str(fk.name or fk.column_keys[0]),
                tuple(fk.column_keys),
                referred[0][-2],
                tuple(parts[-1] for parts in referred),
                _rule(fk.onupdate),
                _rule(fk.ondelete),
            ),
        )
    return table


def from_live(live: Schema) -> Schema:
    """A schema read from a database (schema.read_schema), its prefix indexes as their columns."""
    return Schema(
        {
            name: replace(
                table,
                indexes={
                    key: replace(index, columns=tuple(re.sub(r"\(\d+\)$", "", c) for c in index.columns))
                    for key, index in table.indexes.items()
                },
            )
            for name, table in live.tables.items()
        }
    )


def table_of(operation) -> str:
    return getattr(operation, "table_name", None) or getattr(operation, "source_table", None) or ""


def _renamed(columns: tuple[str, ...], old: str, new: str) -> tuple[str, ...]:
    return tuple(new if column == old else column for column in columns)


def _alter_column(table: Table, operation) -> Table:
    column = table.column(operation.column_name)
    if column is None:
        return table
    if operation.modify_type is not None:
        column = replace(column, type=type_string(operation.modify_type) or "")
    if operation.modify_nullable is not None:
        column = replace(column, nullable=operation.modify_nullable)
    if operation.modify_server_default is not False:
        column = replace(column, default=default_string(operation.modify_server_default))
    old, new = operation.column_name, operation.modify_name
    columns = tuple(column if other.name == old else other for other in table.columns)
    table = replace(table, columns=columns)
    if not new:
        return table
    return replace(
        table,
        columns=tuple(replace(other, name=new) if other.name == old else other for other in table.columns),
        indexes={
            name: replace(index, columns=_renamed(index.columns, old, new)) for name, index in table.indexes.items()
        },
        foreign_keys={
            name: replace(fk, columns=_renamed(fk.columns, old, new)) for name, fk in table.foreign_keys.items()
        },
    )


def _drop_column(table: Table, name: str) -> Table:
    indexes = {}
    for key, index in table.indexes.items():
        columns = tuple(column for column in index.columns if column != name)
        if columns:
            indexes[key] = replace(index, columns=columns)
    return replace(table, columns=tuple(column for column in table.columns if column.name != name), indexes=indexes)


def _without(mapping: dict, key: str) -> dict:
    return {name: value for name, value in mapping.items() if name != key}


def apply_operation(schema: Schema, operation) -> Schema:
    """The schema after the operation, as it changes the database."""
    from alembic.operations import ops

    tables = schema.tables
    if isinstance(operation, ops.CreateTableOp):
        return Schema({**tables, operation.table_name: _table_from_op(operation)})
    if isinstance(operation, ops.DropTableOp):
        return Schema(_without(tables, operation.table_name))
    if isinstance(operation, ops.RenameTableOp):
        old, new = operation.table_name, operation.new_table_name
        renamed = {
            (new if name == old else name): replace(table, name=new) if name == old else table
            for name, table in tables.items()
        }
        return Schema(
            {
                name: replace(
                    table,
                    foreign_keys={
                        key: replace(fk, references=new) if fk.references == old else fk
                        for key, fk in table.foreign_keys.items()
                    },
                )
                for name, table in renamed.items()
            }
        )
    table = tables.get(table_of(operation))
    if table is None:
        return schema
    if isinstance(operation, ops.AddColumnOp):
        column = operation.column
        table = replace(table, columns=(*table.columns, _column(column)))
        if column.unique:
            table = _add_index(table, Index(column.name, (column.name,), True))
    elif isinstance(operation, ops.DropColumnOp):
        table = _drop_column(table, operation.column_name)
    elif isinstance(operation, ops.AlterColumnOp):
        table = _alter_column(table, operation)
    elif isinstance(operation, ops.CreateIndexOp):
        columns = tuple(index_columns(operation.columns))
        table = _add_index(table, Index(str(operation.index_name), columns, bool(operation.unique)))
    elif isinstance(operation, ops.DropIndexOp):
        table = replace(table, indexes=_without(table.indexes, str(operation.index_name)))
    elif isinstance(operation, ops.CreateUniqueConstraintOp):
        columns = tuple(index_columns(operation.columns))
        table = _add_index(table, Index(str(operation.constraint_name or columns[0]), columns, True))
    elif isinstance(operation, ops.CreatePrimaryKeyOp):
        columns = tuple(index_columns(operation.columns))
        table = replace(table, indexes={**table.indexes, "PRIMARY": Index("PRIMARY", columns, True)})
    elif isinstance(operation, ops.CreateForeignKeyOp):
        table = _add_fk(
            table,
            ForeignKey(
                str(operation.constraint_name or operation.local_cols[0]),
                tuple(operation.local_cols),
                operation.referent_table,
                tuple(operation.remote_cols),
                _rule(operation.kw.get("onupdate")),
                _rule(operation.kw.get("ondelete")),
            ),
        )
    elif isinstance(operation, ops.DropConstraintOp):
        name = str(operation.constraint_name)
        if operation.constraint_type == "primary":
            table = replace(table, indexes=_without(table.indexes, "PRIMARY"))
        elif operation.constraint_type in ("foreignkey", None) and name in table.foreign_keys:
            table = replace(table, foreign_keys=_without(table.foreign_keys, name))  # its index stays, as on the server
        elif operation.constraint_type in ("unique", None):
            table = replace(table, indexes=_without(table.indexes, name))
    return Schema({**tables, table.name: table})


def needed_by(schema: Schema, table_name: str, index_name: str) -> list[tuple[str, str]]:
    """(table, foreign key) pairs that need this index: no other index covers their columns."""
    table = schema.tables.get(table_name)
    if table is None or (index := table.indexes.get(index_name)) is None:
        return []
    others = [entry.columns for name, entry in table.indexes.items() if name != index_name]
    needs = []
    for other_name, other in schema.tables.items():
        for fk_name, fk in other.foreign_keys.items():
            sides = []
            if other_name == table_name:
                sides.append(fk.columns)
            if fk.references == table_name:
                sides.append(fk.referenced_columns)
            for columns in sides:
                if _covers(index.columns, columns) and not any(_covers(o, columns) for o in others):
                    needs.append((other_name, fk_name))
                    break
    return needs
