"""Deploy benchmark: each of our phases against the raw tools and mydumper/myloader, on realistic chat data.

    python -m tests.bench.deploy --sizes 1000000,4000000 --repeats 3 --json bench.json   (or: nox -s bench)

Starts its own throwaway server, fills chat_messages with generated chat (mixed Chinese and
English, varied lengths: see datagen.py; the zstd -1 ratio of a sample is printed), lets the
server write the fill's pages out and, at each size, measures in the same run, raw and ours
alternating (medians of --repeats):

  additive deploy   invoke db.deploy (preflight, backup, upgrade, verify; no restart) of a nullable
                    column plus an index on chat_messages  vs  alembic upgrade head
                    (target: ours <= 1.2 x raw + 1 s); once more with DEPLOY_FULL_BACKUP=1
  drop column       invoke db.deploy of a revision dropping chat_messages.emotion  vs  alembic
                    upgrade head; its protection: the undo log's holding table (bytes, seconds)
                    against the database's size and a full dump
  full backup       invoke db.backup  vs  mariadb-dump | zstd -1  vs  mydumper -t 2 -c; then one
                    more run of ours and of raw under the application's inserts (p99, max)
  restore           invoke db.restore --into  vs  zstd -dc | mariadb  vs  myloader -t 2

then how each grows from one size to the next, and our processes' peak memory (max RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pymysql

from backend.config import PROJECT_ROOT, Settings
from backend.dbops import admin, migrate
from backend.dbops.backup import data_and_index_bytes
from backend.dbops.clients import client_options, defaults_file
from backend.dbops.connection import connect
from backend.dbops.deploy import settle_deploys
from backend.dbops.lock import migration_lock
from backend.dbops.servers import find_program, start_instance, stop_instance
from backend.dbops.tool_tables import HOLD_PREFIX
from backend.dbops.undo.session import Session
from tests.bench.common import Writer, alternate, bench_database, bench_environment, latency_figures, uptime
from tests.bench.datagen import content_ratio, fill, zstd_ratio
from tests.helpers import HEAD, copy_versions

BENCH_REVISION = "be0c4a11d00d"
ADDITIVE = (
    'op.add_column("chat_messages", sa.Column("bench_flag", sa.Integer(), nullable=True))\n'
    'op.create_index("ix_chat_messages_bench_flag", "chat_messages", ["bench_flag"])',
    'op.drop_index("ix_chat_messages_bench_flag", table_name="chat_messages")\n'
    'op.drop_column("chat_messages", "bench_flag")',
)
# The downgrade adds the column back with a default and then drops the default: both instant, and
# every row reads a value again, so each run drops (and the deploy keeps) a full column.
DROP = (
    'op.drop_column("chat_messages", "emotion")',
    'op.add_column("chat_messages", sa.Column("emotion", sa.String(32), server_default="calm"))\n'
    'op.alter_column("chat_messages", "emotion", existing_type=sa.String(32), server_default=None)',
)
REVISION_FILE = '''"""Benchmark revision.

Revision ID: {revision}
Revises: {down}
"""
# lint: ignore[drop-column] the benchmark measures what keeping the dropped column costs
import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
{upgrade}


def downgrade() -> None:
{downgrade}
'''
TARGET_FACTOR, TARGET_SLACK = 1.2, 1.0  # additive deploy: ours <= 1.2 x raw + 1 s
WRITER_INTERVAL = 0.01  # seconds between the application's inserts during a backup


@dataclass
class Run:
    """One measured command: wall seconds and the peak RSS (MB) of it and the children it waited for."""

    seconds: float
    rss_mb: float


def measure(command: list[str] | str, env: dict[str, str] | None = None, pass_fds: tuple[int, ...] = ()) -> Run:
    # /usr/bin/time measures the peak of its child and the children that child waited for. Not
    # os.wait4 from here: a child's max RSS starts from this (large) process's, copied at fork.
    argv = ["/bin/bash", "-c", command] if isinstance(command, str) else command
    with tempfile.TemporaryFile() as output, tempfile.NamedTemporaryFile("r") as peak:
        started = time.monotonic()
        result = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", peak.name, *argv],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=PROJECT_ROOT,
            pass_fds=pass_fds,
        )
        seconds = time.monotonic() - started
        if result.returncode:
            output.seek(0)
            raise RuntimeError(f"{command} failed: {output.read().decode(errors='replace')[-2000:]}")
        return Run(seconds, int(peak.read().split()[-1]) / 1024)


@dataclass
class Phase:
    """The runs of one phase, per way of doing it (ours, raw, mydumper)."""

    runs: dict[str, list[Run]] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)

    def add(self, way: str, run: Run) -> None:
        self.runs.setdefault(way, []).append(run)

    def to_dict(self) -> dict:
        figures: dict[str, float] = {}
        for way, runs in self.runs.items():
            figures[way] = statistics.median(run.seconds for run in runs)
            figures[f"{way}_max_rss_mb"] = max(run.rss_mb for run in runs)
            figures[f"{way}_runs"] = [round(run.seconds, 3) for run in runs]  # in the order run
        if "ours" in self.runs and "raw" in self.runs:
            figures["ours_vs_raw"] = figures["ours"] / figures["raw"]
        return {**figures, **self.extra}


class Bench:
    def __init__(self, settings: Settings, work: Path, repeats: int, say, phases: tuple[str, ...] = ()) -> None:
        self.settings, self.work, self.repeats, self.say = settings, work, repeats, say
        self.phases = phases or PHASES
        (work / "empty.env").write_text("")
        self.backups = work / "backups"
        self.restored = "emotional_chat_restored"

    # -- setup -------------------------------------------------------------------------------

    def revision(self, name: str, upgrade: str, downgrade: str) -> tuple[Settings, dict[str, str], Path]:
        """Settings, environment and alembic.ini for the project's revisions plus one benchmark revision."""
        versions = copy_versions(self.work / name / "versions")
        (versions / f"{BENCH_REVISION}_bench.py").write_text(
            REVISION_FILE.format(
                revision=BENCH_REVISION,
                down=HEAD,
                upgrade=textwrap.indent(upgrade, "    "),
                downgrade=textwrap.indent(downgrade, "    "),
            )
        )
        ini = self.work / name / "alembic.ini"
        ini.write_text(
            (PROJECT_ROOT / "alembic.ini")
            .read_text()
            .replace(
                "script_location = %(here)s/alembic",
                f"script_location = {PROJECT_ROOT / 'alembic'}\nversion_locations = {versions}",
            )
        )
        return replace(self.settings, versions_dir=versions), self.environment(versions), ini

    def environment(self, versions: Path, **extra: str) -> dict[str, str]:
        return bench_environment(
            self.settings, versions, self.work, DEPLOY_STEPS="preflight,backup,upgrade,verify", **extra
        )

    def sql(self, *statements: str, database: str | None = None) -> list[tuple]:
        connection = pymysql.connect(
            host=self.settings.host,
            port=self.settings.port,
            user=self.settings.user,
            password=self.settings.password,
            database=database or self.settings.database,
            autocommit=True,
        )
        try:
            with connection.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
                return list(cursor.fetchall())
        finally:
            connection.close()

    def flush_dirty_pages(self, timeout: float = 600) -> float:
        """Write the fill's dirty pages out before measuring: InnoDB flushing a gigabyte in the
        background slows whichever runs come first (backup runs right after a 4M fill: ours/raw
        1.08-1.18, against 1.01 once flushed). Seconds it took."""
        started = time.monotonic()
        [(share, capacity, capacity_max)] = self.sql(
            "SELECT @@GLOBAL.innodb_max_dirty_pages_pct, @@GLOBAL.innodb_io_capacity, @@GLOBAL.innodb_io_capacity_max"
        )
        # At the default 200 pages a second the fill's gigabyte takes minutes to flush.
        self.sql(
            "SET GLOBAL innodb_io_capacity_max = 40000",
            "SET GLOBAL innodb_io_capacity = 20000",
            "SET GLOBAL innodb_max_dirty_pages_pct = 0",
        )
        try:
            while int(self.sql("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")[0][1]) > 100:
                if time.monotonic() - started > timeout:
                    raise SystemExit(f"❌ the server still had dirty pages after {timeout:.0f} s")
                time.sleep(0.5)
        finally:
            self.sql(
                f"SET GLOBAL innodb_max_dirty_pages_pct = {share}",
                f"SET GLOBAL innodb_io_capacity = {capacity}",
                f"SET GLOBAL innodb_io_capacity_max = {capacity_max}",
            )
        return time.monotonic() - started

    def dataset(self, rows: int) -> dict:
        started = time.monotonic()
        fill(self.settings, rows, self.say)
        filled = time.monotonic() - started
        self.sql("ANALYZE TABLE chat_messages")
        flushed = self.flush_dirty_pages()
        with connect(self.settings) as connection:
            data_bytes, index_bytes = data_and_index_bytes(Session.of(connection))
        ratio, average = content_ratio(self.settings)
        sample = self.work / "sample.sql"
        with client_options(self.settings) as [options]:
            subprocess.run(
                f"'{find_program('mariadb-dump', 'mysqldump')}' {defaults_file(options)} "
                f"--where='id <= 20000' {self.settings.database} chat_messages > '{sample}'",
                shell=True,
                executable="/bin/bash",
                check=True,
                pass_fds=(options,),
            )
        dump_ratio = zstd_ratio(sample.read_bytes())
        sample.unlink()
        figures = {
            "rows": rows,
            "fill_seconds": filled,
            "flush_seconds": flushed,
            "data_mb": data_bytes / 1e6,
            "index_mb": index_bytes / 1e6,
            "average_message_bytes": average,
            "content_zstd1_ratio": ratio,
            "dump_zstd1_ratio": dump_ratio,
        }
        self.say(
            f"dataset: {rows:,} chat_messages rows, {figures['data_mb']:,.0f} MB data + {figures['index_mb']:,.0f} MB "
            f"index, {average:.0f} bytes a message, filled in {filled:.0f} s (INSERT ... SELECT), "
            f"its dirty pages flushed in {flushed:.0f} s; "
            f"zstd -1 ratio {ratio:.2f}:1 (content), {dump_ratio:.2f}:1 (dump)"
        )
        return figures

    # -- phases ------------------------------------------------------------------------------

    def alternate(self, ways: dict, between=None) -> None:
        alternate(ways, self.repeats, between)

    def deploy(self, env: dict[str, str], report: Path) -> tuple[Run, dict]:
        run = measure([sys.executable, "-m", "invoke", "db.deploy", "--yes", "--report", str(report)], env)
        return run, json.loads(report.read_text())

    def additive(self) -> dict:
        settings, env, ini = self.revision("additive", *ADDITIVE)
        phase = Phase()
        steps: dict[str, list[float]] = {}

        def ours() -> None:
            run, record = self.deploy(env, self.work / "additive.json")
            phase.add("ours", run)
            for step in record["steps"]:
                steps.setdefault(step["name"], []).append(step["seconds"])

        def raw() -> None:
            phase.add("raw", measure([sys.executable, "-m", "alembic", "-c", str(ini), "upgrade", "head"], env))

        self.alternate({"raw": raw, "ours": ours}, between=lambda _: migrate.downgrade(settings, HEAD))
        full_run, record = self.deploy({**env, "DEPLOY_FULL_BACKUP": "1"}, self.work / "full.json")
        migrate.downgrade(settings, HEAD)
        phase.extra.update({f"ours_{name}_step": statistics.median(values) for name, values in steps.items()})
        phase.extra["full_backup_deploy"] = full_run.seconds
        phase.extra["full_backup_deploy_backup_step"] = next(
            step["seconds"] for step in record["steps"] if step["name"] == "backup"
        )
        figures = phase.to_dict()
        figures["target_seconds"] = TARGET_FACTOR * figures["raw"] + TARGET_SLACK
        figures["target_met"] = figures["ours"] <= figures["target_seconds"]
        return figures

    def holds(self) -> tuple[int, int]:
        """(bytes, rows) of the holding tables the deploys left."""
        names = [
            row[0]
            for row in self.sql(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                f"AND TABLE_NAME LIKE '{HOLD_PREFIX.replace('_', chr(92) + '_')}%'"
            )
        ]
        if not names:
            return 0, 0
        self.sql(*(f"ANALYZE TABLE `{name}`" for name in names))
        size = self.sql(
            "SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES "
            f"WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ({', '.join(repr(name) for name in names)})"
        )[0][0]
        rows = sum(self.sql(f"SELECT COUNT(*) FROM `{name}`")[0][0] for name in names)
        return int(size or 0), rows

    def drop_column(self) -> dict:
        settings, env, ini = self.revision("drop", *DROP)
        phase = Phase()
        upgrade_steps: list[float] = []
        kept: list[tuple[int, int]] = []

        def ours() -> None:
            run, record = self.deploy(env, self.work / "drop.json")
            phase.add("ours", run)
            upgrade_steps.append(next(step["seconds"] for step in record["steps"] if step["name"] == "upgrade"))
            kept.append(self.holds())

        def raw() -> None:
            phase.add("raw", measure([sys.executable, "-m", "alembic", "-c", str(ini), "upgrade", "head"], env))

        def reset(_: str) -> None:
            migrate.downgrade(settings, HEAD)
            with migration_lock(settings, "bench settle") as lock:
                settle_deploys(settings, lock)

        # Once untimed: from here on every run drops the same column (added back instantly).
        migrate.upgrade(settings, "head")
        reset("")
        self.alternate({"raw": raw, "ours": ours}, between=reset)
        figures = phase.to_dict()
        figures["ours_upgrade_step"] = statistics.median(upgrade_steps)
        figures["protection_seconds"] = figures["ours"] - figures["raw"]
        figures["kept_bytes"], figures["kept_rows"] = max(kept)
        return figures

    def backup(self) -> tuple[dict, Path, Path, Path]:
        phase = Phase()
        raw_file, mydumper_dir = self.work / "raw.sql.zst", self.work / "mydumper"
        env = self.environment(self.settings.versions_dir)

        def ours() -> None:
            phase.add("ours", measure([sys.executable, "-m", "invoke", "db.backup"], env))

        def raw() -> None:
            with client_options(self.settings) as [options]:
                phase.add(
                    "raw",
                    measure(
                        f"'{find_program('mariadb-dump', 'mysqldump')}' {defaults_file(options)} --single-transaction "
                        "--quick --routines --triggers --events --hex-blob --no-tablespaces "
                        f"--default-character-set=utf8mb4 {self.settings.database} | zstd -q -1 -T2 -c > '{raw_file}'",
                        pass_fds=(options,),
                    ),
                )

        def mydumper() -> None:
            shutil.rmtree(mydumper_dir, ignore_errors=True)
            phase.add(
                "mydumper",
                measure(
                    [
                        *self.mydumper_login("mydumper"),
                        "-B",
                        self.settings.database,
                        "-t",
                        "2",
                        "-c",
                        "-o",
                        str(mydumper_dir),
                    ]
                ),
            )

        self.alternate({"raw": raw, "ours": ours, "mydumper": mydumper})
        figures = phase.to_dict()
        # Then one more run of each under the application's inserts (kept out of the timings above):
        # what the writes pay for the backup's own checks.
        for name, way in (("raw", raw), ("ours", ours)):
            writer = Writer(self.settings, WRITER_INTERVAL)
            try:
                way()
            finally:
                figures[f"inserts_during_{name}"] = latency_figures(writer.stop())
        ours_file = max(self.backups.glob("*.sql.zst"), key=lambda path: path.stat().st_mtime)
        figures["ours_mb"] = ours_file.stat().st_size / 1e6
        figures["raw_mb"] = raw_file.stat().st_size / 1e6
        figures["mydumper_mb"] = sum(path.stat().st_size for path in mydumper_dir.iterdir()) / 1e6
        return figures, ours_file, raw_file, mydumper_dir

    def mydumper_login(self, program: str) -> list[str]:
        # A throwaway server's throwaway password: on the command line is acceptable here.
        return [
            program,
            "-h",
            self.settings.host,
            "-P",
            str(self.settings.port),
            "-u",
            self.settings.user,
            "-p",
            self.settings.password,
        ]

    def restore(self, ours_file: Path, raw_file: Path, mydumper_dir: Path) -> dict:
        phase = Phase()
        env = self.environment(self.settings.versions_dir)
        client = find_program("mariadb", "mysql")
        target = replace(self.settings, database=self.restored)

        def ours() -> None:
            phase.add(
                "ours",
                measure(
                    [sys.executable, "-m", "invoke", "db.restore", str(ours_file), "--into", self.restored, "--yes"],
                    env,
                ),
            )

        def raw() -> None:
            with client_options(self.settings, 2) as [create, load]:
                phase.add(
                    "raw",
                    measure(
                        f"'{client}' {defaults_file(create)} -e 'CREATE DATABASE {self.restored}' && "
                        f"zstd -q -dc '{raw_file}' | '{client}' {defaults_file(load)} {self.restored}",
                        pass_fds=(create, load),
                    ),
                )

        def myloader() -> None:
            phase.add(
                "mydumper",
                measure(
                    [*self.mydumper_login("myloader"), "-d", str(mydumper_dir), "-B", self.restored, "-t", "2", "-o"]
                ),
            )

        admin.drop_database(target)
        self.alternate({"raw": raw, "ours": ours, "mydumper": myloader}, between=lambda _: admin.drop_database(target))
        return phase.to_dict()

    def size(self, rows: int) -> dict:
        result: dict[str, Any] = {"dataset": self.dataset(rows), "load_average": os.getloadavg()}
        if "additive deploy" in self.phases:
            self.say("  additive deploy ...")
            result["additive deploy"] = self.additive()
        if "drop-column deploy" in self.phases:
            self.say("  drop-column deploy ...")
            result["drop-column deploy"] = self.drop_column()
        if "full backup" in self.phases or "restore" in self.phases:
            self.say("  full backup ...")
            result["full backup"], ours_file, raw_file, mydumper_dir = self.backup()
            if "restore" in self.phases:
                self.say("  restore ...")
                result["restore"] = self.restore(ours_file, raw_file, mydumper_dir)
            shutil.rmtree(mydumper_dir, ignore_errors=True)
        if "drop-column deploy" in result and "full backup" in result:
            drop = result["drop-column deploy"]
            database_bytes = 1e6 * (result["dataset"]["data_mb"] + result["dataset"]["index_mb"])
            drop["kept_share_of_database"] = drop["kept_bytes"] / database_bytes
            drop["kept_share_of_full_dump_file"] = drop["kept_bytes"] / (1e6 * result["full backup"]["ours_mb"])
        return result


PHASES = ("additive deploy", "drop-column deploy", "full backup", "restore")


def growth(sizes: dict[str, dict]) -> dict:
    """How each phase's median grows from each size to the next (ratio of seconds)."""
    keys = list(sizes)
    found = {}
    for small, large in zip(keys, keys[1:], strict=False):
        found[f"{small}->{large}"] = {
            phase: {
                way: sizes[large][phase][way] / sizes[small][phase][way]
                for way in ("ours", "raw", "mydumper")
                if way in sizes[small][phase] and sizes[small][phase][way] > 0
            }
            for phase in PHASES
            if phase in sizes[small] and phase in sizes[large]
        }
    return found


def _backup_lines(backup: dict) -> list[str]:
    ours, raw = backup["inserts_during_ours"], backup["inserts_during_raw"]
    return [
        f"  backup files: ours {backup['ours_mb']:,.0f} MB, raw {backup['raw_mb']:,.0f} MB, "
        f"mydumper {backup['mydumper_mb']:,.0f} MB",
        f"  an insert every {1000 * WRITER_INTERVAL:.0f} ms during a backup: p99 ours {ours['p99_ms']:.1f} ms, "
        f"raw {raw['p99_ms']:.1f} ms; max ours {ours['max_ms']:.0f} ms, raw {raw['max_ms']:.0f} ms; "
        f"failed ours {ours['failed']}, raw {raw['failed']}",
    ]


def table(results: dict) -> list[str]:
    lines = [f"load average at start: {results['load_start']}"]
    for rows, result in results["sizes"].items():
        data = result["dataset"]
        lines += [
            "",
            f"== {int(rows):,} messages: {data['data_mb']:,.0f} MB data + {data['index_mb']:,.0f} MB index; "
            f"zstd -1 ratio {data['content_zstd1_ratio']:.2f}:1 content, {data['dump_zstd1_ratio']:.2f}:1 dump; "
            f"load {', '.join(f'{value:.2f}' for value in result['load_average'])}",
            f"{'phase':30} {'ours s':>8} {'raw s':>8} {'mydumper/myloader s':>19} {'ours/raw':>8} {'ours RSS MB':>11}",
        ]
        for phase in [phase for phase in PHASES if phase in result]:
            figures = result[phase]
            mydumper = f"{figures['mydumper']:19.2f}" if "mydumper" in figures else " " * 19
            lines.append(
                f"{phase:30} {figures['ours']:8.2f} {figures['raw']:8.2f} {mydumper} "
                f"{figures['ours_vs_raw']:8.2f} {figures['ours_max_rss_mb']:11.0f}"
            )
        if not all(phase in result for phase in PHASES):
            if "full backup" in result:
                lines += _backup_lines(result["full backup"])
            continue
        additive, drop, backup = result["additive deploy"], result["drop-column deploy"], result["full backup"]
        lines += [
            f"  additive target ours <= {TARGET_FACTOR} x raw + {TARGET_SLACK:.0f} s = {additive['target_seconds']:.2f} s: "
            f"{'met' if additive['target_met'] else 'MISSED'}; steps: "
            + ", ".join(
                f"{name} {additive[f'ours_{name}_step']:.2f}" for name in ("preflight", "backup", "upgrade", "verify")
            ),
            f"  with DEPLOY_FULL_BACKUP=1: deploy {additive['full_backup_deploy']:.2f} s, "
            f"its backup step {additive['full_backup_deploy_backup_step']:.2f} s",
            f"  drop-column protection: kept {drop['kept_bytes'] / 1e6:,.1f} MB ({drop['kept_rows']:,} rows) = "
            f"{100 * drop['kept_share_of_database']:.1f} % of the database, "
            f"{100 * drop['kept_share_of_full_dump_file']:.0f} % of a full dump file "
            f"({backup['ours_mb']:,.0f} MB); +{drop['protection_seconds']:.2f} s over raw "
            f"(upgrade step {drop['ours_upgrade_step']:.2f} s) vs {backup['ours']:.2f} s for a full dump",
            *_backup_lines(backup),
        ]
    for step, phases in results["growth"].items():
        lines += [
            "",
            f"growth {step} (ratio of seconds)",
            f"{'phase':30} {'ours':>8} {'raw':>8} {'mydumper/myloader':>19}",
        ]
        for phase, ways in phases.items():
            mydumper = f"{ways['mydumper']:19.2f}" if "mydumper" in ways else ""
            lines.append(f"{phase:30} {ways.get('ours', 0):8.2f} {ways.get('raw', 0):8.2f} {mydumper}")
    lines += ["", f"load average at end: {results['load_end']}"]
    return lines


def run(sizes: list[int], repeats: int, say=print, phases: tuple[str, ...] = ()) -> dict:
    for program in ("mydumper", "myloader", "zstd", "/usr/bin/time"):
        if not shutil.which(program):
            raise SystemExit(f"❌ {program} not found (apt-get install mydumper zstd time)")
    results: dict = {"load_start": uptime(), "repeats": repeats, "sizes": {}}
    say(results["load_start"])
    work = Path(tempfile.mkdtemp(prefix="deploy-bench-"))
    instance = None
    try:
        instance = start_instance(
            work / "server", extra_args=("--innodb-buffer-pool-size=1G", "--innodb-log-file-size=512M")
        )
        settings = bench_database(instance, copy_versions(work / "versions"))
        bench = Bench(settings, work, repeats, say, phases)
        for rows in sorted(sizes):
            results["sizes"][str(rows)] = bench.size(rows)
    finally:
        if instance is not None:
            stop_instance(instance)
        shutil.rmtree(work, ignore_errors=True)
    results["growth"] = growth(results["sizes"])
    results["load_end"] = uptime()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="1000000,4000000", help="chat_messages rows, comma-separated (default 1000000,4000000)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of each way, alternating (medians; default 3)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file, to compare commits")
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"phases to measure, comma-separated (default all: {','.join(PHASES)}); restore needs the backup's files",
    )
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    phases = tuple(phase.strip() for phase in args.phases.split(",") if phase.strip())
    unknown = [phase for phase in phases if phase not in PHASES]
    if unknown:
        parser.error(f"unknown phase(s): {', '.join(unknown)}")
    results = run(sizes, args.repeats, phases=phases)
    print("\n".join(table(results)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
