"""Rollback benchmark: what keeping every write of the application costs, and what it saves.

    python -m tests.bench.rollback --rows 2000000        (or: nox -s bench_rollback)

Starts its own throwaway servers and prints, each against the raw way measured in the same run:

1. a steady writer's insert latency (p50, p99, max) during an additive deploy on
   chat_messages, without and with an application transaction holding the table for 3 s;
   raw: `alembic upgrade` of the same revision under the same holder;
2. a revision that dropped chat_messages.emotion, then a failed verify: the deploy's capture
   (the column copied online) and its rollback (the column joined back by key), against the
   raw ALTER and today's rollback by reloading the table from its dump;
3. a revision's UPDATE of 10 % of chat_messages: run captured (before- and after-images in the
   same transaction) against run plain, and the way not taken, the binary log: the same UPDATE
   on a server writing a ROW binlog, then `mariadb-binlog --flashback` reading it back.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pymysql

from backend.config import Settings
from backend.dbops import alembic_setup, migrate
from backend.dbops.clients import client_options, defaults_file, find_client
from backend.dbops.servers import start_instance, stop_instance
from tests.bench.common import Writer, bench_database, bench_environment, deploy_lines, latency_figures
from tests.bench.datagen import fill
from tests.faults.live import FIRST as BENCH
from tests.faults.live import write_revisions
from tests.helpers import HEAD, copy_versions


def _environment(settings: Settings, versions: Path, work: Path, **extra: str) -> dict[str, str]:
    return bench_environment(
        settings, versions, work, DEPLOY_STEPS="preflight,upgrade,verify", HOLD_RETENTION_HOURS="0", **extra
    )


def _revision(work: Path, body: str, undo: str = "pass") -> None:
    """The benchmark's revision (on top of HEAD), written into work/versions."""
    write_revisions(work, body, first_downgrade=undo)


def _deploy(env: dict[str, str], report: Path) -> tuple[int, dict, list[tuple[float, str]]]:
    """invoke db.deploy --report; (exit code, record, [(seconds since start, line)])."""
    code, record, lines, started = deploy_lines(env, report)
    return code, record, [(at - started, line) for at, line in lines]


def _alembic(settings: Settings, target: str) -> float:
    """Plain `alembic upgrade target` through the command API: no capture, no metadata-lock guard."""
    from alembic import command
    from backend.dbops.connection import connect

    started = time.monotonic()
    with connect(settings) as connection:
        command.upgrade(alembic_setup.alembic_config(settings, connection), target)
        connection.commit()
    return time.monotonic() - started


def _sql(settings: Settings, *statements: str) -> None:
    connection = pymysql.connect(
        host=settings.host,
        port=settings.port,
        user=settings.user,
        password=settings.password,
        database=settings.database,
        autocommit=True,
    )
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    connection.close()


class Holder:
    """An application transaction that holds chat_messages (its metadata lock) for `seconds`."""

    def __init__(self, settings: Settings, seconds: float) -> None:
        self.connection = pymysql.connect(
            host=settings.host,
            port=settings.port,
            user=settings.user,
            password=settings.password,
            database=settings.database,
            autocommit=False,
        )
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT id FROM chat_messages LIMIT 1")
        self.timer = threading.Timer(seconds, self.connection.rollback)
        self.timer.start()

    def close(self) -> None:
        self.timer.join()
        self.connection.close()


def latency(settings: Settings, versions: Path, work: Path, say) -> dict:
    _revision(
        work,
        'op.add_column("chat_messages", sa.Column("bench_flag", sa.Integer(), nullable=True))',
        'op.drop_column("chat_messages", "bench_flag")',
    )
    env = _environment(settings, versions, work)
    figures = {}
    for case in ("ours, no holder", "ours, 3 s holder", "raw alembic upgrade, 3 s holder"):
        holder = Holder(settings, 3.0) if "holder" in case and "no holder" not in case else None
        writer = Writer(settings, interval=0)  # back to back; started once it made 20 inserts
        if case.startswith("raw"):
            _alembic(settings, BENCH)
        else:
            code, _, _ = _deploy(env, work / "latency.json")
            assert code == 0, f"deploy failed in {case}"
        figures[case] = latency_figures(writer.stop())
        if holder is not None:
            holder.close()
        migrate.downgrade(settings, HEAD)
        say(f"  {case}: {figures[case]}")
    return figures


def drop_column_rollback(settings: Settings, versions: Path, work: Path, say) -> dict:
    _revision(
        work,
        'op.drop_column("chat_messages", "emotion")',
        'op.add_column("chat_messages", sa.Column("emotion", sa.String(32), nullable=True))',
    )
    env = _environment(settings, versions, work, DEPLOY_SMOKE_SQL="SELECT no_such_column FROM users")
    code, record, lines = _deploy(env, work / "drop.json")
    assert code == 1 and record["status"] == "rolled back", lines[-1]
    upgrade = next(step["seconds"] for step in record["steps"] if step["name"] == "upgrade")
    rollback_from = next(at for at, line in lines if line.startswith("↩ rollback"))
    rollback = lines[-1][0] - rollback_from
    # Raw: the ALTER alone, then today's rollback: the table reloaded from its dump.
    raw_alter = _alembic(settings, BENCH)
    migrate.downgrade(settings, HEAD)
    dump = work / "chat_messages.sql.zst"
    with client_options(settings) as [options]:
        dump_client = [find_client(["mariadb-dump", "mysqldump"], "dump client"), defaults_file(options)]
        subprocess.run(
            f"{' '.join(dump_client)} --single-transaction --quick {settings.database} chat_messages "
            f"| zstd -q -1 -T2 > {dump}",
            shell=True,
            check=True,
            pass_fds=(options,),
        )
    with client_options(settings) as [options]:
        client = [find_client(["mariadb", "mysql"], "mysql client"), defaults_file(options)]
        started = time.monotonic()
        subprocess.run(
            f"zstd -q -dc {dump} | {' '.join(client)} {settings.database}", shell=True, check=True, pass_fds=(options,)
        )
        reload = time.monotonic() - started
    figures = {
        "capture (upgrade step)": upgrade,
        "raw ALTER DROP COLUMN": raw_alter,
        "rollback (column joined back)": rollback,
        "today's rollback: reload the table": reload,
    }
    say(f"  {figures}")
    return figures


def data_change(settings: Settings, versions: Path, work: Path, rows: int, binlog: Settings, say) -> dict:
    changed = rows // 10
    update = f"UPDATE chat_messages SET token_count = token_count + 1 WHERE id <= {changed}"
    _revision(work, f'op.execute("{update}")')
    env = _environment(settings, versions, work, DEPLOY_SMOKE_SQL="SELECT no_such_column FROM users")
    code, record, lines = _deploy(env, work / "update.json")
    assert code == 1 and record["status"] == "rolled back", lines[-1]
    captured = next(step["seconds"] for step in record["steps"] if step["name"] == "upgrade")
    rollback = lines[-1][0] - next(at for at, line in lines if line.startswith("↩ rollback"))
    plain = _alembic(settings, BENCH)
    migrate.downgrade(settings, HEAD)
    _sql(settings, f"UPDATE chat_messages SET token_count = token_count - 1 WHERE id <= {changed}")
    # The binary log: the same UPDATE on a server writing a ROW binlog, then read back reversed.
    connection = pymysql.connect(
        host=binlog.host,
        port=binlog.port,
        user=binlog.user,
        password=binlog.password,
        database=binlog.database,
        autocommit=True,
    )
    with connection.cursor() as cursor:
        cursor.execute("FLUSH BINARY LOGS")
        cursor.execute("SHOW MASTER STATUS")
        status = cursor.fetchone()
        assert status is not None, "the binlog server writes no binary log"
        log_file = status[0]
        started = time.monotonic()
        cursor.execute(update)
        binlog_update = time.monotonic() - started
        cursor.execute("SELECT @@log_bin_basename")
        ((basename,),) = cursor.fetchall()
        folder = Path(basename).parent
    connection.close()
    started = time.monotonic()
    reversed_sql = subprocess.run(
        [find_client(["mariadb-binlog", "mysqlbinlog"], "binlog client"), "--flashback", str(folder / log_file)],
        capture_output=True,
        check=True,
    ).stdout
    flashback = time.monotonic() - started
    figures = {
        "rows changed": changed,
        "plain UPDATE (alembic upgrade)": plain,
        "captured UPDATE (deploy's upgrade step)": captured,
        "rollback of it": rollback,
        "UPDATE with a ROW binlog": binlog_update,
        "mariadb-binlog --flashback of it": flashback,
        "flashback SQL MB": len(reversed_sql) / 1e6,
    }
    say(f"  {figures}")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="chat_messages rows (default 2,000,000)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="rollback-bench-"))
    (work / "empty.env").write_text("")
    versions = copy_versions(work / "versions")
    servers = []
    try:
        plain_server = start_instance(work / "server", extra_args=("--innodb-buffer-pool-size=1G",))
        servers.append(plain_server)
        binlog_server = start_instance(
            work / "binlog-server",
            extra_args=(
                "--innodb-buffer-pool-size=512M",
                "--log-bin=bench-bin",
                "--binlog-format=ROW",
                "--server-id=1",
            ),
        )
        servers.append(binlog_server)
        targets = []
        for instance, rows in ((plain_server, args.rows), (binlog_server, args.rows // 10)):
            settings = bench_database(instance, versions)
            fill(settings, rows, say=lambda line: None)
            targets.append(settings)
        print(f"dataset: {args.rows:,} chat_messages rows ({args.rows // 10:,} on the binlog server)")
        figures = {
            "writer latency": latency(targets[0], versions, work, print),
            "drop column": drop_column_rollback(targets[0], versions, work, print),
            "data change": data_change(targets[0], versions, work, args.rows, targets[1], print),
        }
        print(json.dumps(figures, indent=2))
    finally:
        for instance in servers:
            stop_instance(instance)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
