"""Read-only questions db.lint asks the configured database."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..connection import ServerInfo, server_info
from ..identifiers import quote_identifier

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


class Live:
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
            for name, rows, size in connection.execute(
                text(
                    "SELECT TABLE_NAME, TABLE_ROWS, DATA_LENGTH + INDEX_LENGTH FROM information_schema.TABLES "
                    "WHERE TABLE_SCHEMA = :db AND TABLE_TYPE = 'BASE TABLE'"
                ),
                {"db": database},
            )
        }
        self.columns: dict[str, set[str]] = {}
        for table, column in connection.execute(
            text("SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = :db"),
            {"db": database},
        ):
            self.columns.setdefault(table, set()).add(column.lower())

    def has_columns(self, table: str, columns: list[str]) -> bool:
        return table in self.columns and all(column.lower() in self.columns[table] for column in columns)

    def duplicate(self, table: str, columns: list[str]) -> tuple[tuple, int] | None:
        """One group of rows the unique index would refuse: (values, count)."""
        from sqlalchemy import text

        quoted = ", ".join(quote_identifier(column, "column name") for column in columns)
        # NULLs never collide in a unique index.
        not_null = " AND ".join(f"{quote_identifier(column, 'column name')} IS NOT NULL" for column in columns)
        row = self.connection.execute(
            text(
                f"SELECT {quoted}, COUNT(*) FROM {quote_identifier(table, 'table name')} WHERE {not_null} "
                f"GROUP BY {quoted} HAVING COUNT(*) > 1 LIMIT 1"
            )
        ).first()
        return (tuple(row[:-1]), int(row[-1])) if row else None

    def old_instant_add(self) -> bool:
        """Servers that copy the table to add a column with AFTER/FIRST (instant since MySQL 8.0.29, MariaDB 10.4)."""
        version = self.server.version_tuple
        return version < ((10, 4) if self.server.flavour == "mariadb" else (8, 0, 29))
