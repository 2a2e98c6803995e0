"""Deploy benchmark: `invoke db.deploy` phase by phase against the raw sequence a user types.

    python -m tests.bench.deploy --rows 2000000      (or: nox -s bench)

Fills a database on the configured server (or the sandbox) with a realistic dataset,
then in the same run measures:
  raw:    mariadb-dump ... | zstd -1 -T2 > file;  alembic upgrade head;  zstd -dc file | mariadb
  ours:   invoke db.deploy (preflight, backup, upgrade, verify);  invoke db.restore --into
and prints each figure (the median of --repeats runs, raw and ours alternating) with its ratio
to the raw one.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from backend.config import PROJECT_ROOT, Settings, load_settings
from backend.dbops import admin, alembic_setup, migrate, revision_graph
from backend.dbops.backup import data_and_index_bytes
from backend.dbops.clients import client_options, defaults_file
from backend.dbops.connection import connect
from backend.dbops.identifiers import validate_identifier

BENCH_REVISION = '''"""Benchmark revision: an online column add on chat_messages.

Revision ID: {revision}
Revises: {down}
"""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("chat_messages", sa.Column("bench_flag", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("chat_messages", "bench_flag")
'''

BENCH_REVISION_ID = "be0c4a11d00d"

# Typical message lengths of an emotional-support chat: a few sentences.
CONTENT = (
    "I have been feeling anxious about work lately and I cannot sleep well at night; "
    "talking about it helps a little, thank you for listening. "
)


def fill(settings: Settings, rows: int, say=print) -> None:
    """chat_messages gets `rows` rows (about 330 bytes each) by doubling; other tables a few."""
    from sqlalchemy import text

    with connect(settings) as connection:
        have = connection.execute(text("SELECT COUNT(*) FROM chat_messages")).scalar_one()
        if have >= rows:
            say(f"chat_messages already holds {have:,} rows")
            return
        connection.execute(
            text(
                "INSERT IGNORE INTO users (id, username, password_hash) VALUES "
                + ", ".join(f"({i}, 'user{i}', 'x')" for i in range(1, 101))
            )
        )
        connection.execute(
            text(
                "INSERT IGNORE INTO chat_sessions (id, user_id, title) VALUES "
                + ", ".join(f"('s{i}', {i % 100 + 1}, 'session {i}')" for i in range(1000))
            )
        )
        connection.execute(
            text(
                "INSERT INTO chat_messages (session_id, user_id, role, content, emotion, token_count) VALUES "
                + ", ".join(
                    f"('s{i % 1000}', {i % 100 + 1}, '{('user', 'assistant')[i % 2]}', "
                    f"'{CONTENT}{CONTENT[: i % 80]} #{i}', '{('calm', 'sad', 'anxious', 'happy')[i % 4]}', {i % 300})"
                    for i in range(max(1, 1000 - have))
                )
            )
        )
        connection.commit()
        started = time.monotonic()
        while (count := connection.execute(text("SELECT COUNT(*) FROM chat_messages")).scalar_one()) < rows:
            connection.execute(
                text(
                    "INSERT INTO chat_messages (session_id, user_id, role, content, emotion, token_count) "
                    f"SELECT session_id, user_id, role, content, emotion, token_count FROM chat_messages "
                    f"LIMIT {min(count, rows - count)}"
                )
            )
            connection.commit()
            say(f"  chat_messages: {count:,} rows ({time.monotonic() - started:.0f} s)")


def _timed(command: list[str] | str, **kwargs) -> float:
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{command} failed: {(result.stdout + result.stderr)[-2000:]}")
    return time.monotonic() - started


def run(settings: Settings, rows: int, repeats: int = 3, say=print) -> dict:
    from backend.dbops.servers import find_program

    dump_client = find_program("mariadb-dump", "mysqldump")
    client = find_program("mariadb", "mysql")
    work = Path(tempfile.mkdtemp(prefix="deploy-bench-"))
    versions = work / "versions"
    shutil.copytree(settings.versions_dir, versions)
    head = revision_graph.single_head(alembic_setup.script_directory(settings))
    (versions / f"{BENCH_REVISION_ID}_bench.py").write_text(
        BENCH_REVISION.format(down=head, revision=BENCH_REVISION_ID)
    )
    bench = replace(
        settings,
        versions_dir=versions,
        backup_dir=work / "backups",
        deploy_steps=("preflight", "backup", "upgrade", "verify"),
    )
    environment = {
        **os.environ,
        "MYSQL_HOST": bench.host,
        "MYSQL_PORT": str(bench.port),
        "MYSQL_USER": bench.user,
        "MYSQL_PASSWORD": bench.password,
        "MYSQL_DATABASE": bench.database,
        "MIGRATIONS_DIR": str(versions),
        "BACKUP_DIR": str(bench.backup_dir),
        "DEPLOY_STEPS": "preflight,backup,upgrade,verify",
        "DEPLOY_SMOKE_SQL": "",
        # The benchmark revision is not in backend/database.py.
        "DEPLOY_VERIFY_MODELS": "0",
    }
    ini = work / "alembic.ini"
    ini.write_text(
        (PROJECT_ROOT / "alembic.ini")
        .read_text()
        .replace(
            "script_location = %(here)s/alembic",
            f"script_location = {PROJECT_ROOT / 'alembic'}\nversion_locations = {versions}",
        )
    )
    figures: dict[str, float] = {}
    try:
        admin.create_database(bench)
        if alembic_setup.current(bench) == (BENCH_REVISION_ID,):
            migrate.downgrade(bench, head)  # left by an earlier run
        migrate.upgrade(bench, head)
        fill(bench, rows, say)
        with connect(bench) as connection:
            data_bytes, index_bytes = data_and_index_bytes(connection, bench.database)
        say(
            f"dataset: {rows:,} chat_messages rows, {data_bytes / 1e6:,.0f} MB data + {index_bytes / 1e6:,.0f} MB index"
        )

        raw_file = work / "raw.sql.zst"
        runs: list[dict[str, float]] = []
        # Raw and ours alternate, several times: the medians resist the machine's noise.
        for _ in range(repeats):
            run_figures: dict[str, float] = {}
            with client_options(bench) as [options]:
                run_figures["raw backup"] = _timed(
                    f"'{dump_client}' {defaults_file(options)} --single-transaction --quick --routines "
                    f"--triggers --events --hex-blob --no-tablespaces "
                    f"{shlex.quote(validate_identifier(bench.database))} | zstd -q -1 -T2 -c > '{raw_file}'",
                    shell=True,
                    executable="/bin/bash",
                    pass_fds=(options,),
                )
            run_figures["raw upgrade"] = _timed(
                [sys.executable, "-m", "alembic", "-c", str(ini), "upgrade", "head"], cwd=PROJECT_ROOT, env=environment
            )
            run_figures["raw total"] = run_figures["raw backup"] + run_figures["raw upgrade"]
            migrate.downgrade(bench, head)

            report = work / "deploy.json"
            run_figures["deploy total"] = _timed(
                [sys.executable, "-m", "invoke", "db.deploy", "--report", str(report)],
                cwd=PROJECT_ROOT,
                env=environment,
            )
            record = json.loads(report.read_text())
            for step in record["steps"]:
                run_figures[f"deploy {step['name']}"] = step["seconds"]
            backup_file = Path(record["backup_file"])
            runs.append(run_figures)
            if len(runs) < repeats:
                migrate.downgrade(bench, head)
        figures.update({name: statistics.median(run[name] for run in runs) for name in runs[0]})
        figures["backup MB"] = backup_file.stat().st_size / 1e6
        figures["raw backup MB"] = raw_file.stat().st_size / 1e6

        restored = f"{bench.database[:40]}_restored"
        # One pipe for each client: each reads its options to the end.
        with client_options(bench, 2) as [create, load]:
            figures["raw restore"] = _timed(
                f"'{client}' {defaults_file(create)} -e 'CREATE DATABASE IF NOT EXISTS {restored}' && "
                f"zstd -dc '{raw_file}' | '{client}' {defaults_file(load)} {restored}",
                shell=True,
                executable="/bin/bash",
                pass_fds=(create, load),
            )
        admin.drop_database(replace(bench, database=restored))
        figures["restore"] = _timed(
            [sys.executable, "-m", "invoke", "db.restore", str(backup_file), "--into", restored, "--yes"],
            cwd=PROJECT_ROOT,
            env=environment,
        )
        admin.drop_database(replace(bench, database=restored))
        migrate.downgrade(bench, head)  # ready for the next run
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return figures


def print_figures(figures: dict[str, float], say=print) -> None:
    rows = [
        ("backup (dump + zstd)", figures["deploy backup"], figures["raw backup"]),
        ("upgrade", figures["deploy upgrade"], figures["raw upgrade"]),
        ("whole deploy vs raw sequence", figures["deploy total"], figures["raw total"]),
        ("restore", figures["restore"], figures["raw restore"]),
    ]
    say(f"{'phase':34} {'ours s':>8} {'raw s':>8} {'ratio':>6}")
    for name, ours, raw in rows:
        say(f"{name:34} {ours:8.2f} {raw:8.2f} {ours / raw:6.2f}")
    for step in ("preflight", "verify"):
        say(f"{'deploy ' + step:34} {figures[f'deploy {step}']:8.2f}")
    say(
        f"backup throughput vs raw dump: {figures['raw backup'] / figures['deploy backup']:.2f}x "
        f"(files {figures['backup MB']:,.0f} MB vs {figures['raw backup MB']:,.0f} MB)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="chat_messages rows (default 2,000,000)")
    parser.add_argument("--database", default="emotional_chat_bench", help="database to fill (kept for reruns)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the raw sequence and the deploy (medians)")
    args = parser.parse_args(argv)
    settings = load_settings()
    if not settings.is_configured:
        print("❌ no database configured: run `invoke sandbox.up` first or set MYSQL_*", file=sys.stderr)
        return 1
    figures = run(replace(settings, database=args.database), args.rows, args.repeats)
    print_figures(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
