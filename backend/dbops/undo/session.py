"""A raw PyMySQL connection with the few verbs the undo code needs.

Values are inlined as literals escaped by the driver (which honours the server's
NO_BACKSLASH_ESCAPES), never passed as %s parameters: names of the application's tables
may hold a '%' that the driver's interpolation would misread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..identifiers import quote_identifier

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


class Session:
    def __init__(self, raw) -> None:
        self.raw = raw

    @classmethod
    def of(cls, connection: Connection) -> Session:
        return cls(connection.connection.dbapi_connection)

    @classmethod
    def autocommitting(cls, connection: Connection) -> Session:
        """Each statement its own transaction: how a rollback, a settle or a restore works."""
        session = cls.of(connection)
        session.raw.autocommit(True)
        return session

    def run(self, sql: str) -> int:
        with self.raw.cursor() as cursor:
            return cursor.execute(sql)

    def rows(self, sql: str) -> list[tuple]:
        with self.raw.cursor() as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall())

    def value(self, sql: str) -> Any:
        found = self.rows(sql)
        return found[0][0] if found else None

    def literal(self, value: Any) -> str:
        return self.raw.escape(value)

    def commit(self) -> None:
        self.raw.commit()

    def rollback(self) -> None:
        self.raw.rollback()

    @property
    def database(self) -> str:
        return self.value("SELECT DATABASE()") or ""


def q(name: str) -> str:
    """A quoted table, column, index or trigger name."""
    return quote_identifier(name, "name")


def column_list(names, prefix: str = "") -> str:
    return ", ".join(f"{prefix}{q(name)}" for name in names)


def key_match(key, left: str, right: str) -> str:
    """left.k1 = right.k1 AND ... (aliases given as already-quoted SQL, or NEW/OLD)."""
    return " AND ".join(f"{left}.{q(column)} = {right}.{q(column)}" for column in key)
