"""The fault suite: helpers to start, watch and kill real processes and servers, and the summary table.

Every module sets `pytestmark = pytest.mark.faults("<scenario>")`. A test counts as one case
of its scenario, unless it records cases of its own with the `fault_cases` fixture (a
property-based test records each example). At the end of the run a table shows, per
scenario, the cases tried and passed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from backend.config import PROJECT_ROOT, Settings
from backend.dbops import admin, migrate
from backend.dbops.servers import create_user, pid_alive, start_instance, stop_instance
from tests.conftest import HEAD, ServerTarget, version_rows
from tests.test_deploy import checksums, raw_schema, versions_with

F1 = "f1a2b3c4d5e6"  # tests/revisions/faults: three statements with pauses between them
FIXED_TIME = "2024-01-02 03:04:05"
WAIT = 30.0

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


# ---------------------------------------------------------------- waiting and the server's view


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


def query(server: ServerTarget, sql: str, args=None, database: str | None = None) -> list[tuple]:
    connection = server.connect(database)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, args)
            return list(cursor.fetchall())
    finally:
        connection.close()


def schema_names(server: ServerTarget) -> set[str]:
    return {row[0] for row in query(server, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")}


def statements_running(server: ServerTarget, pattern: str, state: str = "") -> list[tuple]:
    """(id, state, info) of other connections whose statement matches the regular expression."""
    rows = query(
        server,
        "SELECT ID, STATE, INFO FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND INFO IS NOT NULL",
    )
    return [row for row in rows if re.search(pattern, row[2], re.S) and state in (row[1] or "")]


def lock_holder(server: ServerTarget, database: str) -> int | None:
    return query(server, "SELECT IS_USED_LOCK(%s)", (f"alembic:{database}",))[0][0]


def wait_lock_free(server: ServerTarget, database: str, timeout: float = 15.0) -> None:
    """A dead holder's connection is closed by the server; its lock must go with it."""
    wait_until(lambda: lock_holder(server, database) is None, f"the migration lock on {database} to be free", timeout)


def unfinished_journal(server: ServerTarget, database: str) -> list[tuple]:
    return query(
        server,
        "SELECT revision, direction, status FROM alembic_journal WHERE status IN ('running', 'failed') ORDER BY id",
        database=database,
    )


@contextmanager
def held_connection(server: ServerTarget, database: str | None, *statements: str) -> Iterator[object]:
    """A connection of the test that runs statements (LOCK TABLES, GET_LOCK...) and holds what they take."""
    connection = server.connect(database)
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
        yield connection
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute("UNLOCK TABLES")
                cursor.execute("SELECT RELEASE_ALL_LOCKS()")
        except Exception:
            pass  # the server may be gone (lost-server tests)
        connection.close()


# The backup counts rows in the base tables, then the dump client reads every table and
# sequence in name order. A sequence locked by the test stops the dump alone, halfway through.
PARK_SEQUENCE = "park_seq"


def park_dump(stack, server: ServerTarget, database: str) -> None:
    """Create the parking sequence and hold it locked for the rest of stack; the test drops it afterwards."""
    query(server, f"CREATE SEQUENCE {PARK_SEQUENCE}", database=database)
    stack.enter_context(held_connection(server, database, f"LOCK TABLES {PARK_SEQUENCE} WRITE"))


def dump_parked(server: ServerTarget) -> bool:
    return bool(statements_running(server, f"FROM `{PARK_SEQUENCE}`", "metadata lock"))


def applied_statements(server, database: str) -> tuple[bool, bool, bool]:
    """Which of the fault revision's three statements show in the schema."""
    table = query(
        server,
        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'mood_tags'",
        (database,),
    )[0][0]
    column = query(
        server,
        "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
        "AND TABLE_NAME = 'knowledge' AND COLUMN_NAME = 'summary'",
        (database,),
    )[0][0]
    index = query(
        server,
        "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s "
        "AND TABLE_NAME = 'knowledge' AND INDEX_NAME = 'ix_knowledge_summary'",
        (database,),
    )[0][0]
    return bool(table), bool(column), bool(index)


def hold_window(stack, server: ServerTarget, database: str, statements: int) -> None:
    """Hold the fault revision's window in database after its first `statements` statements for
    the rest of stack: a deploy that gets there waits in it."""
    connection = stack.enter_context(held_connection(server, database))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT GET_LOCK(CONCAT('fault_window_{statements}:', MD5(DATABASE())), 0)")
        assert cursor.fetchone()[0] == 1, f"the window after {statements} statement(s) is held already"


def in_window(server, database: str, statements: int) -> bool:
    """Waiting in the window (held by hold_window) that follows the first `statements` statements
    of the fault revision."""
    if not statements_running(server, rf"GET_LOCK\(CONCAT\('fault_window_{statements}:'", "lock"):
        return False
    if statements == 0 and not unfinished_journal(server, database):
        return False
    return applied_statements(server, database) == tuple(index < statements for index in range(3))


# ---------------------------------------------------------------- database states


def seed_fixed(server: ServerTarget, database: str) -> None:
    """Rows with explicit ids and timestamps: two databases seeded alike have equal CHECKSUM TABLE values."""
    connection = server.connect(database)
    t = FIXED_TIME
    try:
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO users (id, username, email, password_hash, created_at, updated_at) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                [(1, "amy", "a@x", "h1", t, t), (2, "bo", None, "h2", t, t), (3, "cy", "c@x", "h3", t, t)],
            )
            cursor.executemany(
                "INSERT INTO chat_sessions (id, user_id, title, created_at, updated_at) VALUES (%s, %s, %s, %s, %s)",
                [("s1", 1, "first", t, t), ("s2", 2, "sécond 😀", t, t)],
            )
            cursor.executemany(
                "INSERT INTO chat_messages (id, session_id, user_id, role, content, emotion, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        i,
                        "s1" if i % 2 else "s2",
                        1 + i % 3,
                        ["user", "assistant", "system"][i % 3],
                        f'message {i}: it\'s (a),(b) \\ "q"\n; -- x',
                        ["calm", "sad", None][i % 3],
                        t,
                    )
                    for i in range(1, 41)
                ],
            )
            cursor.executemany(
                "INSERT INTO emotion_analysis (id, message_id, session_id, user_id, emotion, keywords, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [(1, 1, "s1", 2, "calm", '["tea"]', t), (2, 2, "s2", 3, "sad", None, t)],
            )
            cursor.executemany(
                "INSERT INTO knowledge (id, category, title, content, created_at, updated_at) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                [(1, "sleep", "tips", "rest well", t, t), (2, "stress", "tips", "breathe", t, t)],
            )
            cursor.executemany(
                "INSERT INTO system_logs (id, module, message, user_id, created_at) VALUES (%s, %s, %s, %s, %s)",
                [(1, "auth", "login", 1, t), (2, "chat", "reply", None, t)],
            )
            cursor.executemany(
                "INSERT INTO user_feedback (id, user_id, session_id, rating, comment, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                [(1, 1, "s1", 5, "great", t), (2, 2, None, 1, None, t)],
            )
    finally:
        connection.close()


def db_state(server: ServerTarget, database: str) -> dict:
    """What a deploy may change: the schema, every application table's CHECKSUM TABLE, alembic_version."""
    return {
        "schema": raw_schema(server, database),
        "checksums": checksums(server, database),
        "versions": version_rows(server, database),
    }


@dataclass(frozen=True)
class Reference:
    """The states of a seeded database before the fault revision and after it applied cleanly."""

    versions_env: dict[str, str]
    before: dict
    after: dict


def fault_settings(settings: Settings, versions_env: dict[str, str]) -> Settings:
    return replace(settings, versions_dir=Path(versions_env["MIGRATIONS_DIR"]))


def prepare(server: ServerTarget, settings: Settings) -> None:
    """The database created, at HEAD (with the tool's tables) and seeded, without the command line."""
    admin.create_database(settings)
    migrate.upgrade(settings, HEAD)
    seed_fixed(server, settings.database)


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


# ---------------------------------------------------------------- processes


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


class Spawned:
    """`python -m invoke ARGS` running in the background, its output collected line by line as it comes."""

    def __init__(self, env: dict[str, str], *args: str, preexec_fn=None) -> None:
        self.args = args
        self.process = subprocess.Popen(
            [sys.executable, "-m", "invoke", *args],
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=preexec_fn,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.orphans: list[int] = []
        self.started = time.monotonic()
        self.ended: float | None = None
        self._readers = [
            threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            for stream, lines in ((self.process.stdout, self.stdout), (self.process.stderr, self.stderr))
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def output(self) -> str:
        return "\n".join(self.stdout + self.stderr)

    def saw(self, text: str) -> bool:
        return any(text in line for line in list(self.stdout))

    def wait_for(self, text: str, timeout: float = WAIT) -> None:
        """Until a line of stdout contains text; fails if the process ends first."""

        def seen() -> bool:
            if self.saw(text):
                return True
            if self.process.poll() is not None:
                self.finish()
                raise AssertionError(f"{' '.join(self.args)} ended before printing {text!r}:\n{self.output}")
            return False

        wait_until(seen, f"{text!r} from {' '.join(self.args)}", timeout)

    def finish(self, timeout: float = 180) -> int:
        code = self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        self.ended = self.ended or time.monotonic()
        return code

    def sigkill(self) -> None:
        """SIGKILL the invoke process only, as the OOM killer or `kill -9 PID` would; its children live on."""
        self.orphans = descendants(self.pid)
        os.kill(self.pid, signal.SIGKILL)
        self.finish()

    def reap_orphans(self, timeout: float = 15.0) -> list[str]:
        """Wait for the children it left to end by themselves; kill those that do not. Returns the killed ones."""
        deadline = time.monotonic() + timeout
        while any(pid_alive(pid) for pid in self.orphans) and time.monotonic() < deadline:
            time.sleep(0.05)
        killed = []
        for pid in self.orphans:
            if pid_alive(pid):
                killed.append(cmdline(pid))
                os.kill(pid, signal.SIGKILL)
        return killed

    def result(self):
        from tests.conftest import CommandResult

        self.finish()
        return CommandResult(self.process.returncode, "\n".join(self.stdout) + "\n", "\n".join(self.stderr) + "\n")


def clean_env(cli_env: dict[str, str], reference: Reference, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The test database, the fault revisions, a private backup folder, and a restart that does nothing."""
    return {
        **cli_env,
        **reference.versions_env,
        "BACKUP_DIR": str(tmp_path / "backups"),
        "RESTART_COMMAND": "true",
        "HEALTH_COMMAND": "true",
        "DEPLOY_LOCK_TIMEOUT": "30",
        **extra,
    }


# ---------------------------------------------------------------- a server of their own


@dataclass
class KillableServer:
    """A throwaway server the lost-server tests may SIGKILL, then start again on the same data and port."""

    base_dir: Path
    instance: object
    user: str
    password: str
    kills: int = field(default=0)

    @property
    def target(self) -> ServerTarget:
        return ServerTarget(self.instance.host, self.instance.port, self.user, self.password, self.instance)

    def kill(self) -> None:
        pid = self.instance.pid
        os.kill(pid, signal.SIGKILL)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            wait_until(lambda: not pid_alive(pid), "the killed server to go")
        self.kills += 1

    def restart(self) -> None:
        self.instance = start_instance(self.base_dir, port=self.instance.port)

    def ensure_running(self) -> None:
        if not self.instance.is_running():
            self.restart()


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


def server_env(target: ServerTarget, database: str, reference: Reference, tmp_path: Path) -> dict[str, str]:
    """Like cli_env, for a database on another server."""
    from tests.conftest import CLEARED_VARIABLES

    config = tmp_path / "empty.env"
    config.write_text("")
    env = {key: value for key, value in os.environ.items() if key not in CLEARED_VARIABLES}
    env.update(
        MYSQL_HOST=target.host,
        MYSQL_PORT=str(target.port),
        MYSQL_USER=target.user,
        MYSQL_PASSWORD=target.password,
        MYSQL_DATABASE=database,
        DB_CONFIG_FILE=str(config),
        SANDBOX_DIR=str(tmp_path / "sandbox"),
    )
    return clean_env(env, reference, tmp_path)
