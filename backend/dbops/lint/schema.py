"""A model of the schema (tables, columns, indexes, foreign keys) as plain dicts: built from a
snapshot of a scratch database or from create_table, then changed operation by operation."""

from __future__ import annotations

import re


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


def _column_shape(column) -> dict:
    return {
        "type": type_string(column.type),
        "nullable": bool(column.nullable),
        "default": default_string(column.server_default),
    }


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


def index_columns(columns) -> list[str]:
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
        _add_fk(
            shape,
            str(fk.name or fk.column_keys[0]),
            list(fk.column_keys),
            referred[0][-2],
            [parts[-1] for parts in referred],
        )
    return shape


def schema_from_snapshot(snapshot: dict) -> dict:
    schema = {}
    for name, table in snapshot.items():
        shape = _new_table()
        for column, column_type, nullable, default, _extra, _collation in table["columns"]:
            shape["columns"][column] = {"type": column_type, "nullable": nullable, "default": default}
        for index, entry in table["indexes"].items():
            shape["indexes"][index] = {
                "columns": [re.sub(r"\(\d+\)$", "", c) for c in entry["columns"]],
                "unique": entry["unique"],
            }
        for fk, entry in table["foreign_keys"].items():
            shape["foreign_keys"][fk] = {
                "columns": entry["columns"],
                "references": entry["references"],
                "referenced_columns": entry["referenced_columns"],
            }
            if fk in shape["indexes"] and shape["indexes"][fk]["columns"] == entry["columns"]:
                shape["indexes"][fk]["implicit"] = True
        schema[name] = shape
    return schema


def table_of(operation) -> str:
    return getattr(operation, "table_name", None) or getattr(operation, "source_table", None) or ""


def apply_operation(schema: dict, operation) -> None:
    """Change the schema model as the operation changes the database."""
    from alembic.operations import ops

    table = schema.get(table_of(operation))
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
            column["type"] = type_string(operation.modify_type)
        if operation.modify_nullable is not None:
            column["nullable"] = operation.modify_nullable
        if operation.modify_server_default is not False:
            column["default"] = default_string(operation.modify_server_default)
        if operation.modify_name:
            table["columns"][operation.modify_name] = table["columns"].pop(operation.column_name)
            for entry in [*table["indexes"].values(), *table["foreign_keys"].values()]:
                entry["columns"] = [
                    operation.modify_name if c == operation.column_name else c for c in entry["columns"]
                ]
    elif isinstance(operation, ops.CreateIndexOp):
        _add_index(table, str(operation.index_name), index_columns(operation.columns), bool(operation.unique))
    elif isinstance(operation, ops.DropIndexOp):
        table["indexes"].pop(str(operation.index_name), None)
    elif isinstance(operation, ops.CreateUniqueConstraintOp):
        columns = index_columns(operation.columns)
        _add_index(table, str(operation.constraint_name or columns[0]), columns, True)
    elif isinstance(operation, ops.CreatePrimaryKeyOp):
        table["indexes"]["PRIMARY"] = {"columns": index_columns(operation.columns), "unique": True}
    elif isinstance(operation, ops.CreateForeignKeyOp):
        _add_fk(
            table,
            str(operation.constraint_name or operation.local_cols[0]),
            list(operation.local_cols),
            operation.referent_table,
            list(operation.remote_cols),
        )
    elif isinstance(operation, ops.DropConstraintOp):
        name = str(operation.constraint_name)
        if operation.constraint_type == "primary":
            table["indexes"].pop("PRIMARY", None)
        elif operation.constraint_type in ("foreignkey", None) and name in table["foreign_keys"]:
            del table["foreign_keys"][name]  # its index stays, as on the server
        elif operation.constraint_type in ("unique", None):
            table["indexes"].pop(name, None)


def needed_by(schema: dict, table_name: str, index_name: str) -> list[tuple[str, str]]:
    """(table, foreign key) pairs that need this index: no other index covers their columns."""
    table = schema.get(table_name)
    if table is None or (index := table["indexes"].get(index_name)) is None:
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
