"""pytest-alembic's fixtures, on the session's test server (tests/conftest.py's mysql_server, so
TEST_SERVER and TEST_MYSQL_URL choose it as everywhere), with a fresh database for each test.

pytest-alembic's pytest plugin is disabled (`-p no:pytest_alembic` in pyproject.toml): from pytest
9.2 on, its collector (0.13.1, the newest) breaks the collection of the whole suite ("'TestCollector'
object has no attribute '_nodeid'"), merely by being installed. Disabling it works on every pytest,
where pinning pytest below 9.2 would hold the whole suite back for one plugin. Its built-in tests
are plain functions that test_builtin.py imports; they take the `alembic_runner` fixture, which the
plugin would have provided and which is built here from its public `runner`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.config import Config as AlembicConfig
from pytest_alembic import Config, MigrationContext, runner
from sqlalchemy.engine import Engine

from backend.config import Settings
from backend.dbops import alembic_setup
from backend.dbops.connection import make_engine


@pytest.fixture
def alembic_config(created_database: Settings) -> AlembicConfig:
    """The project's own Alembic config (env.py, the revisions, Settings), as `invoke db.*` builds it."""
    return alembic_setup.alembic_config(created_database)


@pytest.fixture
def alembic_engine(created_database: Settings) -> Engine:
    """An engine on this test's empty database; pytest-alembic hands it to env.py."""
    return make_engine(created_database)


@pytest.fixture
def alembic_runner(alembic_config: AlembicConfig, alembic_engine: Engine) -> Iterator[MigrationContext]:
    with runner(config=Config.from_raw_config(alembic_config), engine=alembic_engine) as context:
        yield context
