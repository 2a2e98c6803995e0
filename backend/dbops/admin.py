"""Server-level administration: create, drop and inspect databases."""

from __future__ import annotations

from ..config import Settings
from .connection import connect, require_configured
from .identifiers import quote_identifier, validate_identifier


def _literal_colons(quoted: str) -> str:
    """A quoted name for text(): a ':' in it (a database named ':0') would read as a bind parameter."""
    return quoted.replace(":", "\\:")


def database_exists(settings: Settings, name: str | None = None) -> bool:
    from sqlalchemy import text

    name = validate_identifier(name or settings.database)
    with connect(settings, database=None) as connection:
        found = connection.execute(
            text("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :name"),
            {"name": name},
        ).first()
    return found is not None


def create_database(settings: Settings, name: str | None = None, like: str | None = None) -> bool:
    """Create the database if missing (utf8mb4, or the character set of the database like
    names when it exists); return True when it was created."""
    from sqlalchemy import text

    require_configured(settings)
    name = name or settings.database
    quoted = quote_identifier(name)
    if database_exists(settings, name):
        return False
    with connect(settings, database=None) as connection:
        charset = (
            connection.execute(
                text(
                    "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
                    "WHERE SCHEMA_NAME = :name"
                ),
                {"name": like},
            ).first()
            if like
            else None
        )
        character_set, collation = charset or ("utf8mb4", "utf8mb4_unicode_ci")
        connection.execute(
            text(
                f"CREATE DATABASE IF NOT EXISTS {_literal_colons(quoted)} CHARACTER SET {character_set} "
                f"COLLATE {collation}"
            )
        )
    return True


def drop_database(settings: Settings, name: str | None = None) -> bool:
    """Drop the database if present; return True when it existed."""
    from sqlalchemy import text

    require_configured(settings)
    name = name or settings.database
    quoted = quote_identifier(name)
    if not database_exists(settings, name):
        return False
    with connect(settings, database=None) as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {_literal_colons(quoted)}"))
    return True


def list_tables(settings: Settings, name: str | None = None) -> list[str]:
    """Base tables of the database, sorted by name."""
    from sqlalchemy import text

    name = validate_identifier(name or settings.database)
    with connect(settings, database=None) as connection:
        rows = connection.execute(
            text(
                "SELECT TABLE_NAME FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = :name AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME"
            ),
            {"name": name},
        )
        return [row[0] for row in rows]


def empty_database(settings: Settings, keep: tuple[str, ...] = ()) -> list[str]:
    """Drop every table and view of the configured database except those in keep; return them."""
    from sqlalchemy import text

    require_configured(settings)
    with connect(settings) as connection:
        rows = connection.execute(
            text("SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = :name"),
            {"name": settings.database},
        ).all()
        dropped = sorted(name for name, _ in rows if name not in keep)
        connection.execute(text("SET SESSION FOREIGN_KEY_CHECKS = 0"))
        for name, kind in rows:
            if name not in keep:
                statement = "DROP VIEW" if kind == "VIEW" else "DROP TABLE"
                connection.execute(
                    text(f"{statement} IF EXISTS {_literal_colons(quote_identifier(name, 'table name'))}")
                )
        connection.execute(text("SET SESSION FOREIGN_KEY_CHECKS = 1"))
    return dropped
