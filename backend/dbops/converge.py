"""Bring the live schema to a reference schema: the reverse difference of a half-applied revision.

MySQL commits DDL statement by statement, so a revision that fails halfway leaves part of
its changes. Comparing the live schema with the schema before (or after) the revision and
running the difference, as autogenerate would write it, undoes (or finishes) it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..config import Settings
from .authoring import comparing_context
from .connection import connect
from .identifiers import quote_identifier
from .tool_tables import ignored_tables

if TYPE_CHECKING:
    from sqlalchemy import MetaData


@dataclass
class Converged:
    operations: list[str] = field(default_factory=list)
    # Tables whose data the difference cannot bring back (re-created tables, re-added or retyped columns).
    data_lost: set[str] = field(default_factory=set)


def reflect_schema(settings: Settings) -> MetaData:
    """The application tables of the database as they are now."""
    from sqlalchemy import MetaData

    metadata = MetaData()
    with connect(settings) as connection:
        ignored = ignored_tables(settings)
        metadata.reflect(connection, only=lambda name, _: name not in ignored)
    return metadata


def converge(settings: Settings, reference: MetaData) -> Converged:
    """Run the operations that turn the live schema into reference."""
    from alembic.autogenerate import produce_migrations
    from alembic.operations import Operations, ops

    result = Converged()
    with connect(settings, guard_ddl=True) as connection:
        context = comparing_context(connection, settings)
        operations = Operations(context)
        queue: list[ops.MigrateOperation] = list(produce_migrations(context, reference).upgrade_ops_list)
        while queue:
            operation = queue.pop(0)
            if isinstance(operation, ops.OpContainer):
                queue.extend(operation.ops)
                continue
            operations.invoke(operation)
            result.operations.append(_describe(operation))
            if isinstance(operation, ops.CreateTableOp | ops.AddColumnOp):
                result.data_lost.add(operation.table_name)
            elif isinstance(operation, ops.AlterColumnOp) and operation.modify_type is not None:
                result.data_lost.add(operation.table_name)
        connection.commit()
    return result


def _describe(operation) -> str:
    name = re.sub(r"Op$", "", type(operation).__name__)
    table = getattr(operation, "table_name", "")
    column = getattr(operation, "column_name", "") or getattr(getattr(operation, "column", None), "name", "")
    return " ".join(part for part in (name, table + (f".{column}" if column else "")) if part)


def align_column_order(settings: Settings, reference: Settings, tables: list[str]) -> list[str]:
    """Put columns back in the reference database's order (a re-added column lands last).

    Uses the reference's SHOW CREATE TABLE for each column's exact definition.
    """
    from sqlalchemy import text

    moved = []
    with connect(reference) as source, connect(settings, guard_ddl=True) as target:
        for table in tables:
            quoted = quote_identifier(table, "table name")
            wanted = [row[0] for row in source.execute(text(f"SHOW COLUMNS FROM {quoted}"))]
            have = [row[0] for row in target.execute(text(f"SHOW COLUMNS FROM {quoted}"))]
            if wanted == have or sorted(wanted) != sorted(have):
                continue
            create = source.execute(text(f"SHOW CREATE TABLE {quoted}")).one()[1]
            definitions = {
                match.group(1).replace("``", "`"): match.group(0).rstrip(",")
                for match in re.finditer(r"^\s*`((?:[^`]|``)+)` .*$", create, re.M)
            }
            previous = None
            for column in wanted:
                position = f"AFTER {quote_identifier(previous, 'column name')}" if previous else "FIRST"
                target.execute(text(f"ALTER TABLE {quoted} MODIFY COLUMN {definitions[column].strip()} {position}"))
                previous = column
            moved.append(table)
        target.commit()
    return moved
