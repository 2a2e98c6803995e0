"""Alembic environment: the URL comes from backend.config.Settings, never from alembic.ini.

Run by `invoke db.*` (which passes Settings and an open connection in config.attributes),
by pytest-alembic (which passes an Engine there, as Alembic's cookbook does) and by the plain
`alembic` command line (which loads Settings from the environment).
"""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

from sqlalchemy.engine import Connection

from alembic import context
from backend.config import Settings, load_settings
from backend.database import Base
from backend.dbops.authoring import process_revision_directives
from backend.dbops.connection import make_engine, make_url
from backend.dbops.tool_tables import ignored_tables

config = context.config


def _settings() -> Settings:
    passed: Settings | None = config.attributes.get("settings")
    if passed is not None:
        return passed
    # Plain `alembic` command line: configure its logging from alembic.ini.
    if config.config_file_name is not None:
        fileConfig(config.config_file_name)
    return load_settings()


settings = _settings()
target_metadata = Base.metadata

COMMON_OPTIONS: dict[str, Any] = dict(
    target_metadata=target_metadata,
    compare_type=True,
    compare_server_default=True,
    include_name=ignored_tables(settings).include_name,
    process_revision_directives=process_revision_directives,
)


def run_migrations_offline() -> None:
    """Render SQL without a connection (`invoke db.sql`, `alembic upgrade --sql`)."""
    url = make_url(settings) if settings.is_configured else "mysql+pymysql://"
    context.configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"}, **COMMON_OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if isinstance(connectable, Connection):
        _run_on(connectable)
        return
    engine = connectable if connectable is not None else make_engine(settings)
    # connect(), not begin(): an outer transaction would make Alembic skip the per-revision commits.
    with engine.connect() as own_connection:
        _run_on(own_connection)


def _run_on(connection: Connection) -> None:
    # One transaction per revision so that a failure keeps the earlier revisions recorded.
    context.configure(connection=connection, transaction_per_migration=True, **COMMON_OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
