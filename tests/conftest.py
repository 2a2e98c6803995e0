"""Real-server fixtures.

One throwaway server per test session (from the mariadbd/mysqld on this machine, in a
temporary folder, on a free port), or a server of the version matrix when TEST_SERVER names
one (e.g. TEST_SERVER=mysql-9.7), or an existing server when TEST_MYSQL_URL is set,
e.g. TEST_MYSQL_URL=mysql://root:secret@127.0.0.1:3306. Each test gets its own database.
Helpers the test modules share are in tests/helpers.py and tests/command_line.py.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from dotenv import dotenv_values

from backend.config import Settings
from backend.dbops.errors import ServerUnavailable
from backend.dbops.providers import ServerHandle, acquire
from backend.dbops.servers import create_user, free_port, start_instance, stop_instance
from backend.dbops.targets import required_targets
from tests.command_line import CommandResult, run_invoke, run_invoke_process
from tests.helpers import SERVICE_VARIABLES, TEST_USER, ServerTarget, app_pid, command_env, stop_process


@pytest.fixture
def tmp_path(request, tmp_path_factory) -> Path:
    """pytest's tmp_path with a shorter name (the test's first 12 characters): servers started below
    it need a Unix socket path under 100 characters, which pytest-xdist's worker folders
    (.../pytest-N/popen-gwN/) and a 30-character test name would exceed."""
    return tmp_path_factory.mktemp(re.sub(r"\W", "_", request.node.name)[:12])


@contextmanager
def matrix_server(server_id: str, work_dir: Path) -> Iterator[ServerHandle]:
    """The target's server from the first provider that serves it. A target none can serve skips
    every test that needs it, with every provider's reason; when MATRIX_REQUIRED names it (ids,
    tags or all, separated by commas) it fails them instead."""
    required = server_id in required_targets(os.environ.get("MATRIX_REQUIRED"))
    with ExitStack() as stack:
        try:
            handle = stack.enter_context(acquire(server_id, work_dir))
        except ServerUnavailable as exc:
            if required:
                pytest.fail(f"{server_id} is required (MATRIX_REQUIRED), but {exc}", pytrace=False)
            pytest.skip(f"{server_id} not tested: {exc}")
        yield handle


@pytest.fixture(scope="session")
def mysql_server(tmp_path_factory) -> Iterator[ServerTarget]:
    server_id = os.environ.get("TEST_SERVER")
    if server_id:
        # A server of the version matrix (e.g. mysql-9.7), from its providers (nox -s migrations, server_tests).
        with matrix_server(server_id, tmp_path_factory.mktemp("server")) as handle:
            yield ServerTarget(handle.host, handle.port, handle.user, handle.password, handle.instance)
        return
    url = os.environ.get("TEST_MYSQL_URL")
    if url:
        parts = urlsplit(url)
        yield ServerTarget(
            parts.hostname or "127.0.0.1",
            parts.port or 3306,
            unquote(parts.username or "root"),
            unquote(parts.password or ""),
        )
        return
    instance = start_instance(tmp_path_factory.mktemp("mysql"))
    try:
        # A password-protected user, so that every test exercises credential handling.
        password = create_user(instance, TEST_USER, "p@ss w0rd;'`\"$(x)")
        yield ServerTarget(instance.host, instance.port, TEST_USER, password, instance)
    finally:
        stop_instance(instance)


@pytest.fixture
def database_name(mysql_server) -> Iterator[str]:
    """A fresh, not yet created database name; dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    connection = mysql_server.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        connection.close()


@pytest.fixture
def settings(mysql_server, database_name, tmp_path) -> Settings:
    return Settings(
        host=mysql_server.host,
        port=mysql_server.port,
        user=mysql_server.user,
        password=mysql_server.password,
        database=database_name,
        sandbox_dir=tmp_path / "sandbox",
    )


@pytest.fixture
def created_database(settings, mysql_server) -> Settings:
    connection = mysql_server.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{settings.database}` CHARACTER SET utf8mb4")
    finally:
        connection.close()
    return settings


@pytest.fixture
def cli_env(mysql_server, database_name, tmp_path) -> dict[str, str]:
    """Environment for the command line, pointing at this test's database only."""
    return command_env(mysql_server, database_name, tmp_path)


@pytest.fixture
def app_env(cli_env, settings, tmp_path):
    """A free port, pid and log files in tmp_path; the password also in a config file, where the service reads it."""
    config = tmp_path / "app.env"
    quoted = settings.password.replace("\\", "\\\\").replace("'", "\\'")
    config.write_text(f"MYSQL_PASSWORD='{quoted}'\n")
    assert dotenv_values(config)["MYSQL_PASSWORD"] == settings.password
    env = {key: value for key, value in cli_env.items() if key not in SERVICE_VARIABLES}
    env.update(
        DB_CONFIG_FILE=str(config),
        APP_HOST="127.0.0.1",
        APP_PORT=str(free_port()),
        PYTHON=sys.executable,
        APP_PID_FILE=str(tmp_path / "run" / "app.pid"),
        APP_LOG_FILE=str(tmp_path / "run" / "app.log"),
    )
    yield env
    stop_process(app_pid(Path(env["APP_PID_FILE"])))


@pytest.fixture
def invoke(cli_env):
    """invoke(*args) runs the command line, in this process, against this test's database."""

    def run(*args: str, env: dict[str, str] | None = None) -> CommandResult:
        return run_invoke({**cli_env, **(env or {})}, *args)

    return run


@pytest.fixture
def invoke_process(cli_env):
    """invoke_process(*args) runs `python -m invoke` as a process of its own against this test's database."""

    def run(*args: str, env: dict[str, str] | None = None) -> CommandResult:
        return run_invoke_process({**cli_env, **(env or {})}, *args)

    return run


# ---------------------------------------------------------------- the fault suite's summary table
# Every module of tests/faults sets `pytestmark = pytest.mark.faults("<scenario>")`. A test counts
# as one case of its scenario, unless it records cases of its own with the `fault_cases` fixture
# (a property-based test records each example). At the end of the run a table shows, per
# scenario, the cases tried and passed. The hooks live here, not in tests/faults/conftest.py:
# with pytest-xdist the reports are gathered in a process that loads only this conftest.

_CASES = pytest.StashKey["CaseRecorder"]()
_FAULT = "fault"  # the user property carrying (scenario, cases tried, cases passed or None)


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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Tag the reports of a fault test with its scenario and its sub-cases (where the test runs)."""
    report = yield
    marker = item.get_closest_marker("faults")
    if marker is not None and marker.args:
        recorder = item.stash.get(_CASES, None)
        cases = (recorder.tried, recorder.passed) if recorder is not None and recorder.tried else None
        report.user_properties.append((_FAULT, (str(marker.args[0]), cases)))
    return report


class _FaultTable:
    """Counts the tagged reports where they are gathered (the only process, or pytest-xdist's
    controller) and prints the table at the end."""

    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}

    def pytest_runtest_logreport(self, report) -> None:
        tag = next((value for name, value in report.user_properties if name == _FAULT), None)
        if tag is None:
            return
        scenario, cases = tag
        row = self.rows.setdefault(scenario, {"tried": 0, "passed": 0, "skipped": 0, "seconds": 0.0})
        row["seconds"] += report.duration
        if not (report.when == "call" or (report.when == "setup" and not report.passed)):
            return
        if report.skipped:
            row["skipped"] += 1
        elif cases:
            tried, passed = cases
            row["tried"] += tried
            row["passed"] += passed if report.passed else min(passed, tried - 1)
        else:
            row["tried"] += 1
            row["passed"] += int(report.passed)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.rows:
            return
        write = terminalreporter.write_line
        terminalreporter.write_sep("=", "fault suite")
        width = max(len("scenario"), *(len(name) for name in self.rows))
        write(f"{'scenario':<{width}}  {'cases tried':>11}  {'cases passed':>12}  {'seconds':>8}")
        total = {"tried": 0, "passed": 0, "skipped": 0, "seconds": 0.0}
        for name, row in sorted(self.rows.items()):
            skipped = f"  ({row['skipped']} skipped)" if row["skipped"] else ""
            write(f"{name:<{width}}  {row['tried']:>11}  {row['passed']:>12}  {row['seconds']:>8.1f}{skipped}")
            for key in total:
                total[key] += row[key]
        write(f"{'total':<{width}}  {total['tried']:>11}  {total['passed']:>12}  {total['seconds']:>8.1f}")


def pytest_configure(config) -> None:
    config.pluginmanager.register(_FaultTable(), "fault-table")
