"""What the test modules share: the server target, queries of a database's state, revision
files, waiting for events, the processes a test started. Fixtures live in conftest.py; the
command-line runners in tests/command_line.py."""

from __future__ import annotations

import os
import re
import signal
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pymysql

from backend.config import PROJECT_ROOT
from backend.dbops.servers import ServerInstance, pid_alive
from backend.dbops.tool_tables import HISTORY_TABLES, HOLD_PREFIX

TEST_USER = "migrator"
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
REVISIONS = PROJECT_ROOT / "tests" / "revisions"
HEAD = "e9e7d98878ca"
GUIDE = PROJECT_ROOT / "docs" / "数据库版本管理.md"
NO_BACKUP = {"DEPLOY_STEPS": "preflight,upgrade,verify"}
WAIT = 30.0

# Variables a developer's shell might carry that would leak into the command line under test.
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


# ---------------------------------------------------------------- the server


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


def command_env(server: ServerTarget, database: str, folder: Path) -> dict[str, str]:
    """Environment for the command line on database of server: an empty config file and the
    sandbox in folder, nothing of the developer's shell that would point elsewhere."""
    config = folder / "config.env"
    config.write_text("")
    env = {key: value for key, value in os.environ.items() if key not in CLEARED_VARIABLES}
    env.update(
        MYSQL_HOST=server.host,
        MYSQL_PORT=str(server.port),
        MYSQL_USER=server.user,
        MYSQL_PASSWORD=server.password,
        MYSQL_DATABASE=database,
        DB_CONFIG_FILE=str(config),
        SANDBOX_DIR=str(folder / "sandbox"),
    )
    return env


def query(server: ServerTarget, sql: str, args=None, database: str | None = None) -> list[tuple]:
    connection = server.connect(database)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, args)
            return list(cursor.fetchall())
    finally:
        connection.close()


def run_sql(server: ServerTarget, database: str | None, *statements: str, many=None) -> tuple[tuple, ...]:
    """Run statements (then executemany(*many)) on one connection; the last statement's rows."""
    connection = server.connect(database)
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
            if many:
                cursor.executemany(*many)
            return cursor.fetchall()
    finally:
        connection.close()


def tables(server: ServerTarget, database: str) -> list[str]:
    """Tables of the database, without the tool's lock, journal, deploy-history and holding tables."""
    return sorted(
        name
        for (name,) in query(
            server, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (database,)
        )
        if name not in HISTORY_TABLES and not name.startswith(HOLD_PREFIX)
    )


def version_rows(server: ServerTarget, database: str) -> list[str]:
    return sorted(row[0] for row in query(server, "SELECT version_num FROM alembic_version", database=database))


def schema_names(server: ServerTarget) -> set[str]:
    return {row[0] for row in query(server, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")}


def raw_schema(server: ServerTarget, database: str) -> dict:
    """information_schema as the server reports it (no normalization of ours)."""
    result = {}
    for kind, sql in {
        "columns": "SELECT TABLE_NAME, COLUMN_NAME, ORDINAL_POSITION, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, "
        "EXTRA FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s",
        "indexes": "SELECT TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, NON_UNIQUE "
        "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s",
        "keys": "SELECT TABLE_NAME, CONSTRAINT_NAME, COLUMN_NAME, REFERENCED_TABLE_NAME, REFERENCED_COLUMN_NAME "
        "FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = %s",
    }.items():
        result[kind] = sorted(row for row in query(server, sql, (database,)) if not str(row[0]).startswith("alembic_"))
    return result


def checksums(server: ServerTarget, database: str, names: list[str] = APP_TABLES) -> dict[str, int]:
    """CHECKSUM TABLE of the named tables (default: the application's), by table name."""
    if not names:
        return {}
    rows = query(server, "CHECKSUM TABLE " + ", ".join(f"`{name}`" for name in names), database=database)
    return {name.split(".", 1)[1]: value for name, value in rows}


def seed(server: ServerTarget, database: str) -> None:
    """A few users, sessions, 50 messages and a knowledge row."""
    connection = server.connect(database)
    try:
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO users (username, password_hash) VALUES ('amy', 'h1'), ('bo', 'h2')")
            cursor.execute(
                "INSERT INTO chat_sessions (id, user_id, title) VALUES ('s1', 1, 'first'), ('s2', 2, 'second')"
            )
            cursor.executemany(
                "INSERT INTO chat_messages (session_id, user_id, role, content, emotion) VALUES (%s, %s, %s, %s, %s)",
                [("s1", 1, "user", f"message {i}", ["calm", "sad", "happy"][i % 3]) for i in range(50)],
            )
            cursor.execute("INSERT INTO knowledge (category, title, content) VALUES ('sleep', 'tips', 'rest well')")
    finally:
        connection.close()


def statements_running(server: ServerTarget, pattern: str, state: str = "") -> list[tuple]:
    """(id, state, info) of other connections whose statement matches the regular expression."""
    rows = query(
        server,
        "SELECT ID, STATE, INFO FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND INFO IS NOT NULL",
    )
    return [row for row in rows if re.search(pattern, row[2], re.S) and state in (row[1] or "")]


def lock_holder(server: ServerTarget, database: str) -> int | None:
    """The connection id holding the migration lock of database, None when it is free."""
    return query(server, "SELECT IS_USED_LOCK(%s)", (f"alembic:{database}",))[0][0]


# ---------------------------------------------------------------- revision files


def copy_versions(target: Path) -> Path:
    """A private copy of the project's revisions, for tests that write revision files."""
    target.mkdir(parents=True, exist_ok=True)
    for path in VERSIONS_DIR.glob("*.py"):
        (target / path.name).write_text(path.read_text())
    return target


def versions_with(tmp_path: Path, extra: str, pattern: str = "*.py") -> dict[str, str]:
    """The project's revisions plus the test revisions of tests/revisions/<extra> matching pattern.

    Those change the schema away from backend/database.py: verify (and the rehearsal) leave the models out."""
    target = copy_versions(tmp_path / "versions")
    for path in (REVISIONS / extra).glob(pattern):
        (target / path.name).write_text(path.read_text())
    return {"MIGRATIONS_DIR": str(target), "DEPLOY_VERIFY_MODELS": "0"}


def revision_text(
    revision: str, down: str = HEAD, upgrade: str = "pass", downgrade: str = "pass", doc: str = "", preamble: str = ""
) -> str:
    """The text of a revision file; upgrade and downgrade are function bodies (dedented, then indented),
    preamble goes between the docstring and the imports (e.g. lint silences)."""

    def body(code: str) -> str:
        return textwrap.indent(textwrap.dedent(code).strip("\n"), "    ")

    return (
        f'"""{doc or f"Test revision {revision}."}\n\nRevision ID: {revision}\nRevises: {down}\n"""\n'
        f"{preamble}\n"
        "import sqlalchemy as sa\n\nfrom alembic import op\n\n"
        f'revision = "{revision}"\ndown_revision = "{down}"\nbranch_labels = None\ndepends_on = None\n\n\n'
        f"def upgrade() -> None:\n{body(upgrade)}\n\n\ndef downgrade() -> None:\n{body(downgrade)}\n"
    )


# ---------------------------------------------------------------- waiting and processes


def wait_until(predicate: Callable[[], object], what: str, timeout: float = WAIT, interval: float = 0.05):
    """predicate's first truthy value; AssertionError naming what did not happen in time."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def app_pid(pid_file: Path) -> int | None:
    """The pid in the file, if it is a running backend.app (never another process)."""
    try:
        pid = int(pid_file.read_text())
        return pid if b"backend.app" in Path(f"/proc/{pid}/cmdline").read_bytes() else None
    except (OSError, ValueError):
        return None


def stop_process(pid: int | None) -> None:
    """SIGTERM pid and wait until it is gone."""
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not pid_alive(pid), f"process {pid} to stop after SIGTERM")


def descendants(pid: int) -> list[int]:
    """Every live process below pid (children, their children...)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Answers:
    """A stand-in for the person at the terminal: gives one answer, keeps the prompts."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.prompts: list[str] = []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.answer
