"""What the fault suite's modules share: the fault revision's window, seeded states, the
environments of its commands, the server the lost-server tests kill."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import pymysql

from backend.config import Settings
from backend.dbops import admin, migrate
from backend.dbops.servers import ServerInstance, pid_alive, start_instance
from tests.helpers import (
    HEAD,
    ServerTarget,
    checksums,
    command_env,
    lock_holder,
    query,
    raw_schema,
    schema_names,
    statements_running,
    version_rows,
    wait_until,
)

F1 = "f1a2b3c4d5e6"  # tests/revisions/faults: three statements with pauses between them
FIXED_TIME = "2024-01-02 03:04:05"


# ---------------------------------------------------------------- the server's view


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
def held_connection(server: ServerTarget, database: str | None, *statements: str) -> Iterator[pymysql.Connection]:
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


# ---------------------------------------------------------------- environments


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
    instance: ServerInstance
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


def server_env(target: ServerTarget, database: str, reference: Reference, tmp_path: Path) -> dict[str, str]:
    """Like cli_env, for a database on another server."""
    return clean_env(command_env(target, database, tmp_path), reference, tmp_path)


@dataclass(frozen=True)
class Target:
    database: str
    env: dict


def server_state(server, database: str) -> dict:
    """What a refused command must leave as it was: the schemas of the server, the database's state,
    its journal, lock and deploy records."""
    schemas = schema_names(server)
    history = {
        table: query(server, f"SELECT COUNT(*) FROM {table}", database=database)[0][0]
        for table in ("alembic_journal", "alembic_lock")
    }
    deploys = query(
        server,
        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'alembic_deploys'",
        (database,),
    )[0][0]
    return {
        "schemas": schemas,
        "database": db_state(server, database),
        "history": history,
        "deploys": deploys,
        "lock": lock_holder(server, database),
    }
