"""Real-server fixtures.

One throwaway server per test session (from the mariadbd/mysqld on this machine, in a
temporary folder, on a free port), or a server of the version matrix when TEST_SERVER names
one (e.g. TEST_SERVER=mysql-9.7), or an existing server when TEST_MYSQL_URL is set,
e.g. TEST_MYSQL_URL=mysql://root:secret@127.0.0.1:3306. Each test gets its own database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pymysql
import pytest
from dotenv import dotenv_values

from backend.config import PROJECT_ROOT, Settings
from backend.dbops.errors import ServerUnavailable
from backend.dbops.providers import ServerHandle, acquire
from backend.dbops.servers import ServerInstance, create_user, free_port, pid_alive, start_instance, stop_instance
from backend.dbops.targets import required_targets
from backend.dbops.tool_tables import HISTORY_TABLES, HOLD_PREFIX

TEST_USER = "migrator"
# Variables a developer's shell might carry that would leak into the subprocesses.
CLEARED_VARIABLES = (
    "MYSQL_HOST",
    "MYSQL_PORT",
    "MYSQL_USER",
    "MYSQL_PASSWORD",
    "MYSQL_DATABASE",
    "APP_ENV",
    "MIGRATIONS_DIR",
    "DB_CONFIG_FILE",
    "DB_DEBUG",
    "SANDBOX_DIR",
)


@dataclass(frozen=True)
class ServerTarget:
    host: str
    port: int
    user: str
    password: str
    instance: ServerInstance | None = None

    def connect(self, database: str | None = None, **kwargs) -> pymysql.Connection:
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=database,
            **{"autocommit": True, **kwargs},
        )

    def execute(self, database: str | None, *statements: str) -> None:
        """Run statements (autocommitted) in database, or with none selected."""
        connection = self.connect(database)
        try:
            with connection.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
        finally:
            connection.close()


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
def mysql_server(tmp_path_factory) -> ServerTarget:
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
def database_name(mysql_server) -> str:
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
def cli_env(settings, tmp_path) -> dict[str, str]:
    """Environment for `invoke` subprocesses, pointing at this test's database only."""
    env = {key: value for key, value in os.environ.items() if key not in CLEARED_VARIABLES}
    empty_config = tmp_path / "config.env"
    empty_config.write_text("")
    env.update(
        MYSQL_HOST=settings.host,
        MYSQL_PORT=str(settings.port),
        MYSQL_USER=settings.user,
        MYSQL_PASSWORD=settings.password,
        MYSQL_DATABASE=settings.database,
        DB_CONFIG_FILE=str(empty_config),
        SANDBOX_DIR=str(settings.sandbox_dir),
    )
    return env


# Variables of the service and its restart a developer's shell might carry.
SERVICE_VARIABLES = (
    "APP_HOST",
    "APP_PORT",
    "RESTART_COMMAND",
    "HEALTH_URL",
    "HEALTH_COMMAND",
    "HEALTH_TIMEOUT",
    "HEALTH_RETRIES",
    "APP_PID_FILE",
    "APP_LOG_FILE",
    "PYTHON",
    "MYSQL_PWD",
)


def app_pid(pid_file: Path) -> int | None:
    """The pid in the file, if it is a running backend.app (never another process)."""
    try:
        pid = int(pid_file.read_text())
        return pid if b"backend.app" in Path(f"/proc/{pid}/cmdline").read_bytes() else None
    except (OSError, ValueError):
        return None


def stop_process(pid: int | None) -> None:
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


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


@dataclass
class CommandResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_invoke(env: dict[str, str], *args: str, input: str | None = None, timeout: float = 180) -> CommandResult:
    completed = subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=PROJECT_ROOT,
        env=env,
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return CommandResult(completed.returncode, completed.stdout, completed.stderr)


@pytest.fixture
def invoke(cli_env):
    """invoke(*args) runs the real command line against this test's database."""

    def run(*args: str, env: dict[str, str] | None = None, **kwargs) -> CommandResult:
        return run_invoke({**cli_env, **(env or {})}, *args, **kwargs)

    return run


def tables(server: ServerTarget, database: str) -> list[str]:
    """Tables of the database, without the tool's lock, journal, deploy-history and holding tables."""
    connection = server.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (database,))
            return sorted(
                row[0]
                for row in cursor.fetchall()
                if row[0] not in HISTORY_TABLES and not row[0].startswith(HOLD_PREFIX)
            )
    finally:
        connection.close()


def version_rows(server: ServerTarget, database: str) -> list[str]:
    connection = server.connect(database)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT version_num FROM alembic_version")
            return sorted(row[0] for row in cursor.fetchall())
    finally:
        connection.close()


def assert_one_error_line(result: CommandResult) -> str:
    """The failure contract: non-zero exit, one line starting with ❌, no traceback."""
    assert result.returncode != 0, result.output
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("❌ "), result.output
    return lines[0]


class Answers:
    """A stand-in for the person at the terminal: gives one answer, keeps the prompts."""

    def __init__(self, answer: str) -> None:
        self.answer, self.prompts = answer, []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.answer


APP_TABLES = sorted(
    [
        "chat_messages",
        "chat_sessions",
        "emotion_analysis",
        "knowledge",
        "system_logs",
        "user_feedback",
        "users",
    ]
)
VERSIONS_DIR = PROJECT_ROOT / "alembic" / "versions"
HEAD = "e9e7d98878ca"


def copy_versions(target: Path) -> Path:
    """A private copy of the project's revisions, for tests that write revision files."""
    target.mkdir(parents=True, exist_ok=True)
    for path in VERSIONS_DIR.glob("*.py"):
        (target / path.name).write_text(path.read_text())
    return target
