"""The fault suite's fixtures: a reference state, servers to kill, a shared target.

Every module sets `pytestmark = pytest.mark.faults("<scenario>")`; the summary table of the
scenarios and the `fault_cases` fixture are in tests/conftest.py. Helpers are in
tests/faults/helpers.py.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.config import Settings
from backend.dbops import admin, migrate
from backend.dbops.servers import create_user, start_instance, stop_instance
from tests.faults.helpers import F1, KillableServer, Reference, Target, db_state, prepare, server_env
from tests.helpers import HEAD, versions_with

# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def reference(mysql_server, tmp_path_factory) -> Reference:
    versions_env = versions_with(tmp_path_factory.mktemp("faults"), "faults")
    settings = Settings(
        host=mysql_server.host,
        port=mysql_server.port,
        user=mysql_server.user,
        password=mysql_server.password,
        database=f"ref_{os.getpid()}_{time.time_ns() % 10**8}",
        versions_dir=Path(versions_env["MIGRATIONS_DIR"]),
    )
    try:
        prepare(mysql_server, settings)
        before = db_state(mysql_server, settings.database)
        migrate.upgrade(settings, F1)
        after = db_state(mysql_server, settings.database)
    finally:
        admin.drop_database(settings)
    assert before["versions"] == [HEAD] and after["versions"] == [F1]
    return Reference(versions_env, before, after)


# ---------------------------------------------------------------- a server of their own


@pytest.fixture(scope="session")
def killable_server(tmp_path_factory) -> Iterator[KillableServer]:
    base_dir = tmp_path_factory.mktemp("killable")
    instance = start_instance(base_dir)
    server = KillableServer(base_dir, instance, "deployer", "")
    try:
        server.password = create_user(instance, server.user, "k1ll-me`'\"; -- x")
        yield server
    finally:
        stop_instance(server.instance)


@pytest.fixture
def lost_server(killable_server) -> Iterator[KillableServer]:
    """The killable server, running again after the test whatever happened in it."""
    killable_server.ensure_running()
    yield killable_server
    killable_server.ensure_running()


@pytest.fixture(scope="module")
def target(mysql_server, reference, tmp_path_factory) -> Iterator[Target]:
    """A seeded database at HEAD with one revision pending; the refused commands of a module share it."""
    folder = tmp_path_factory.mktemp("bad_input")
    name = f"input_{uuid.uuid4().hex[:10]}"
    settings = Settings(
        host=mysql_server.host,
        port=mysql_server.port,
        user=mysql_server.user,
        password=mysql_server.password,
        database=name,
        versions_dir=Path(reference.versions_env["MIGRATIONS_DIR"]),
    )
    try:
        prepare(mysql_server, settings)
        yield Target(name, server_env(mysql_server, name, reference, folder))
    finally:
        admin.drop_database(settings)
