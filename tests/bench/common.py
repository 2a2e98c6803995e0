"""What the benchmarks share: a throwaway server at head, alternating runs, the load average, a
steady application writer in its own process, and a deploy whose output lines carry their times."""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pymysql

from backend.config import PROJECT_ROOT, Settings
from backend.dbops import admin, migrate
from backend.dbops.servers import create_user, start_instance, stop_instance
from tests.helpers import HEAD


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


@contextmanager
def bench_server(folder: Path, versions: Path, extra_args: tuple[str, ...] = ()) -> Iterator[Settings]:
    """A throwaway server in folder with emotional_chat at HEAD for the user bench; stopped on exit."""
    instance = start_instance(folder, extra_args=extra_args)
    try:
        yield bench_database(instance, versions)
    finally:
        stop_instance(instance)


def bench_database(instance, versions: Path) -> Settings:
    """On a throwaway server: the user bench and emotional_chat at HEAD; its settings."""
    settings = Settings(
        host=instance.host,
        port=instance.port,
        user="bench",
        password=create_user(instance, "bench", "b3nch-pass"),
        database="emotional_chat",
        versions_dir=versions,
    )
    admin.create_database(settings)
    migrate.upgrade(settings, HEAD)
    return settings


def alternate(ways: dict[str, Callable[[], None]], repeats: int, between: Callable[[str], None] | None = None) -> None:
    """Each way once per repeat, the order rotated from one repeat to the next."""
    names = list(ways)
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            ways[name]()
            if between is not None:
                between(name)


def connect_app(settings: Settings) -> pymysql.Connection:
    """A connection as the application's: autocommit, utf8mb4."""
    return pymysql.connect(
        host=settings.host,
        port=settings.port,
        user=settings.user,
        password=settings.password,
        database=settings.database,
        charset="utf8mb4",
        autocommit=True,
    )


# ---------------------------------------------------------------- the application's writer


def _write(settings: Settings, interval: float, texts: list[str], ready, stopping, results) -> None:
    """The writer process: an insert into chat_messages every interval seconds (back to back with 0),
    each one's (start, seconds, error or ""); a slot missed while an insert waited is skipped,
    not caught up in a burst. ready is set after 20 inserts."""
    connection = connect_app(settings)
    attempts: list[tuple[float, float, str]] = []
    cursor = connection.cursor()
    due = time.monotonic()
    number = 0
    while not stopping.is_set():
        started = time.monotonic()
        error = ""
        try:
            cursor.execute(
                "INSERT INTO chat_messages (session_id, user_id, role, content, emotion, token_count) "
                "VALUES (%s, %s, 'user', %s, 'calm', %s)",
                (f"s{number % 1000}", number % 100 + 1, texts[number % len(texts)], number % 500),
            )
        except pymysql.err.MySQLError as exc:
            error = f"{exc.args[0]}: {exc.args[-1]}"[:200] if exc.args else type(exc).__name__
            if isinstance(exc, pymysql.err.OperationalError) and not connection.open:
                connection = connect_app(settings)
                cursor = connection.cursor()
        done = time.monotonic()
        attempts.append((started, done - started, error))
        number += 1
        if number == 20:
            ready.set()
        due = max(due + interval, done)
        if due > done:
            stopping.wait(due - done)
    connection.close()
    results.send(attempts)
    results.close()


class Writer:
    """The application: a process inserting chat messages steadily, each insert timed.

    In its own process, so that neither the benchmark's own work nor its interpreter lock delays it."""

    def __init__(self, settings: Settings, interval: float = 0.01, texts: list[str] | None = None) -> None:
        context = multiprocessing.get_context("spawn")
        self.ready, self.stopping = context.Event(), context.Event()
        self.receive, send = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_write,
            args=(settings, interval, texts or ["bench writer"], self.ready, self.stopping, send),
            daemon=True,
        )
        self.process.start()
        send.close()
        if not self.ready.wait(60):
            self.process.kill()
            raise RuntimeError("the writer made no 20 inserts within 60 s")

    def stop(self) -> list[tuple[float, float, str]]:
        """Every attempt: (monotonic start, seconds, error message or "")."""
        self.stopping.set()
        attempts = self.receive.recv()
        self.process.join()
        return attempts


def latency_figures(attempts: list[tuple[float, float, str]]) -> dict[str, float]:
    """Inserts, failed ones, and the p50/p99/max of every attempt's wait (a failed one waited too)."""
    ordered = sorted(seconds for _, seconds, _ in attempts)
    return {
        "inserts": len(ordered),
        "failed": sum(1 for *_, error in attempts if error),
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[max(0, int(len(ordered) * 0.99) - 1)],
        "max_ms": 1000 * ordered[-1],
    }


# ---------------------------------------------------------------- a deploy, line by line


def deploy_lines(env: dict[str, str], report: Path) -> tuple[int, dict, list[tuple[float, str]], float]:
    """invoke db.deploy --yes --report; (exit code, record, [(monotonic time, line)], monotonic start)."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "invoke", "db.deploy", "--yes", "--report", str(report)],
        cwd=PROJECT_ROOT,
        env={**env, "PYTHONUNBUFFERED": "1"},  # each line when it is said, for its time
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None  # a pipe: stdout=PIPE
    lines = [(time.monotonic(), line.rstrip()) for line in process.stdout]
    code = process.wait()
    record = json.loads(report.read_text()) if report.exists() else {}
    return code, record, lines, started


def bench_environment(settings: Settings, versions: Path, work: Path, **extra: str) -> dict[str, str]:
    """The environment of an `invoke` run against the benchmark's server and revisions."""
    return {
        **os.environ,
        "DB_CONFIG_FILE": str(work / "empty.env"),
        "MYSQL_HOST": settings.host,
        "MYSQL_PORT": str(settings.port),
        "MYSQL_USER": settings.user,
        "MYSQL_PASSWORD": settings.password,
        "MYSQL_DATABASE": settings.database,
        "MIGRATIONS_DIR": str(versions),
        "BACKUP_DIR": str(work / "backups"),
        "DEPLOY_SMOKE_SQL": "",
        "DEPLOY_FULL_BACKUP": "0",
        # The benchmark revisions are not in backend/database.py.
        "DEPLOY_VERIFY_MODELS": "0",
        **extra,
    }
