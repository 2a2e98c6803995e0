"""The fault suite's fixtures (a reference state, servers to kill, a shared target) and its summary table.

Its helpers are in tests/faults/helpers.py.

Every module sets `pytestmark = pytest.mark.faults("<scenario>")`. A test counts as one case
of its scenario, unless it records cases of its own with the `fault_cases` fixture (a
property-based test records each example). At the end of the run a table shows, per
scenario, the cases tried and passed.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from backend.config import Settings
from backend.dbops import admin, migrate
from backend.dbops.servers import create_user, start_instance, stop_instance
from tests.faults.helpers import F1, KillableServer, Reference, Target, db_state, prepare, server_env
from tests.helpers import HEAD, versions_with

# ---------------------------------------------------------------- the summary table

_CASES = pytest.StashKey["CaseRecorder"]()
_TABLE = pytest.StashKey[dict]()


@dataclass
class CaseRecorder:
    tried: int = 0
    passed: int = 0

    @contextmanager
    def case(self) -> Iterator[None]:
        self.tried += 1
        yield
        self.passed += 1


@pytest.fixture
def fault_cases(request) -> CaseRecorder:
    """Record sub-cases (e.g. each hypothesis example) instead of counting the test as one case."""
    recorder = CaseRecorder()
    request.node.stash[_CASES] = recorder
    return recorder


def _scenario(item) -> str | None:
    marker = item.get_closest_marker("faults")
    return str(marker.args[0]) if marker is not None and marker.args else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    scenario = _scenario(item)
    if scenario is None:
        return report
    table = item.config.stash.setdefault(_TABLE, {})
    row = table.setdefault(scenario, {"tried": 0, "passed": 0, "skipped": 0, "seconds": 0.0})
    row["seconds"] += report.duration
    final = report.when == "call" or (report.when == "setup" and not report.passed)
    if final and report.skipped:
        row["skipped"] += 1
    elif final:
        recorder = item.stash.get(_CASES, None)
        if recorder is not None and recorder.tried:
            row["tried"] += recorder.tried
            row["passed"] += recorder.passed if report.passed else min(recorder.passed, recorder.tried - 1)
        else:
            row["tried"] += 1
            row["passed"] += int(report.passed)
    return report


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    table = config.stash.get(_TABLE, None)
    if not table:
        return
    write = terminalreporter.write_line
    terminalreporter.write_sep("=", "fault suite")
    width = max(len("scenario"), *(len(name) for name in table))
    write(f"{'scenario':<{width}}  {'cases tried':>11}  {'cases passed':>12}  {'seconds':>8}")
    total = {"tried": 0, "passed": 0, "skipped": 0, "seconds": 0.0}
    for name, row in table.items():
        skipped = f"  ({row['skipped']} skipped)" if row["skipped"] else ""
        write(f"{name:<{width}}  {row['tried']:>11}  {row['passed']:>12}  {row['seconds']:>8.1f}{skipped}")
        for key in total:
            total[key] += row[key]
    write(f"{'total':<{width}}  {total['tried']:>11}  {total['passed']:>12}  {total['seconds']:>8.1f}")


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
