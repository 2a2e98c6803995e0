"""Online schema change benchmark: a table copy of chat_messages under a steady writer, direct versus online.

    python -m tests.bench.online --rows 4000000 --repeats 3 --json online.json   (or: nox -s bench_online)
    python -m tests.bench.online --rows 200000 --repeats 1                        (a quick try)

Starts its own throwaway server, fills chat_messages with generated chat (datagen.py) and deploys,
with the real `invoke db.deploy`, a revision changing the type of one of its columns in a way
that needs a table copy (token_count INT -> BIGINT: lossless, so the deploy keeps no copy of
the column and the two paths differ only in how the table is copied), once with
ONLINE_SCHEMA_CHANGE=direct (the server's COPY algorithm: writes wait for the whole copy) and
once with ONLINE_SCHEMA_CHANGE=online (pt-online-schema-change, our cut-over), alternating
(medians of --repeats). Meanwhile a writer process inserts a chat message every 10 ms and times
each insert. Reported per path: the deploy's time and its upgrade step's, the writer's p50, p99
and max wait and failed inserts; for the online path its phases (the tool's copy, our cut-over)
from the deploy's output, where the writer's worst wait fell, and the copy rate (bytes of data
and indexes per second: ddl_guard.ONLINE_COPY_BYTES_PER_SECOND). Goals: the writer never waits
more than 1 s on the online path, and the online path takes at most 3 x the direct one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from backend.config import Settings
from backend.dbops import migrate
from backend.dbops.deploy import settle_deploys
from backend.dbops.lock import migration_lock
from tests.bench.common import (
    Writer,
    alternate,
    bench_environment,
    bench_server,
    connect_app,
    deploy_lines,
    latency_figures,
    uptime,
)
from tests.bench.datagen import content_ratio, fill, messages
from tests.helpers import HEAD, copy_versions, revision_text

REVISION = "0c5c0be4c400"
CHANGE = (
    'op.alter_column("chat_messages", "token_count", type_=sa.BigInteger(), existing_type=sa.Integer())',
    'op.alter_column("chat_messages", "token_count", type_=sa.Integer(), existing_type=sa.BigInteger())',
)
PATHS = ("direct", "online")
WRITER_INTERVAL = 0.01  # one insert every 10 ms
MAX_WAIT_GOAL, TIME_FACTOR_GOAL = 1.0, 3.0  # online: no insert waits over 1 s; at most 3 x direct's time
# What the deploy says (online_ddl.py) as the online path moves from phase to phase.
TOOL_STARTS, TOOL_COPIED, SWAPPED_IN = "runs online through", "Copied rows OK", "swapped in"


class Sampler(threading.Thread):
    """What waits during a deploy: every 50 ms, each statement running for over 100 ms (the writer's
    insert, or the statement of a trigger it fired; the tool's chunks), with its state and, when
    InnoDB has it waiting for a lock, what the blocking session runs."""

    QUERY = (
        "SELECT LEFT(p.INFO, 40), p.STATE, t.trx_state, LEFT(COALESCE(b.INFO, ''), 60) "
        "FROM information_schema.PROCESSLIST p "
        "LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID "
        "LEFT JOIN information_schema.INNODB_LOCK_WAITS w ON w.requesting_trx_id = t.trx_id "
        "LEFT JOIN information_schema.INNODB_TRX bt ON bt.trx_id = w.blocking_trx_id "
        "LEFT JOIN information_schema.PROCESSLIST b ON b.ID = bt.trx_mysql_thread_id "
        "WHERE p.COMMAND = 'Query' AND p.TIME_MS > 100 AND p.ID <> CONNECTION_ID()"
    )

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.settings, self.stopping = settings, threading.Event()
        self.seen: dict[str, int] = {}

    def run(self) -> None:
        connection = connect_app(self.settings)
        with connection.cursor() as cursor:
            while not self.stopping.wait(0.05):
                cursor.execute(self.QUERY)
                for query, state, trx_state, blocker in cursor.fetchall():
                    reason = f"{query} | {state or '-'} / {trx_state or 'no transaction'}" + (
                        f" behind: {blocker}" if blocker else ""
                    )
                    self.seen[reason] = self.seen.get(reason, 0) + 1
        connection.close()

    def stop(self) -> dict[str, int]:
        """{what the waiting insert showed: how many samples}, most seen first."""
        self.stopping.set()
        self.join()
        return dict(sorted(self.seen.items(), key=lambda item: -item[1]))


class Bench:
    def __init__(self, settings: Settings, work: Path, repeats: int, say=print, chunk_time: str = "") -> None:
        self.settings, self.work, self.repeats, self.say = settings, work, repeats, say
        self.tool_settings = {"OSC_CHUNK_TIME": chunk_time} if chunk_time else {}
        (work / "empty.env").write_text("")
        self.versions = copy_versions(work / "versions")
        (self.versions / f"{REVISION}_bench_retype.py").write_text(
            revision_text(REVISION, HEAD, *CHANGE, doc="Benchmark revision: a type change that copies chat_messages.")
        )
        # The reset between runs: the copy back runs as written, with nobody writing.
        self.direct = replace(settings, versions_dir=self.versions, online_schema_change="direct")
        self.texts = messages(2000, seed=7)

    def table_bytes(self) -> tuple[int, int]:
        """(data, index) bytes of chat_messages, freshly analyzed: what ddl_guard's estimate divides."""
        connection = connect_app(self.settings)
        try:
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE TABLE chat_messages")
                cursor.fetchall()
                cursor.execute(
                    "SELECT DATA_LENGTH, INDEX_LENGTH FROM information_schema.TABLES "
                    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'chat_messages'"
                )
                ((data, index),) = cursor.fetchall()
        finally:
            connection.close()
        return int(data), int(index)

    def dataset(self, rows: int) -> dict:
        started = time.monotonic()
        fill(self.settings, rows, self.say)
        filled = time.monotonic() - started
        data, index = self.table_bytes()
        ratio, average = content_ratio(self.settings)
        self.say(
            f"dataset: {rows:,} chat_messages rows, {data / 1e6:,.0f} MB data + {index / 1e6:,.0f} MB index, "
            f"{average:.0f} bytes a message, filled in {filled:.0f} s; zstd -1 ratio {ratio:.2f}:1 (content)"
        )
        return {
            "rows": rows,
            "fill_seconds": filled,
            "data_mb": data / 1e6,
            "index_mb": index / 1e6,
            "average_message_bytes": average,
            "content_zstd1_ratio": ratio,
        }

    def one(self, path: str) -> dict[str, Any]:
        """One deploy of the retype on `path`, the writer inserting throughout."""
        env = bench_environment(
            self.settings,
            self.versions,
            self.work,
            DEPLOY_STEPS="preflight,backup,upgrade,verify",
            ONLINE_SCHEMA_CHANGE=path,
            DDL_GUARD_MAX_ROWS="0",  # every copy of chat_messages takes the path under test
            **self.tool_settings,
        )
        table_bytes = sum(self.table_bytes())
        writer = Writer(self.settings, WRITER_INTERVAL, self.texts)
        sampler = Sampler(self.settings)
        sampler.start()
        try:
            code, record, lines, started = deploy_lines(env, self.work / f"{path}.json")
        finally:
            attempts = writer.stop()
            waits_seen = sampler.stop()
        ended = lines[-1][0] if lines else time.monotonic()
        if code != 0 or record.get("status") != "succeeded":
            raise RuntimeError(f"the {path} deploy failed: " + "\n".join(line for _, line in lines[-15:]))
        figures: dict[str, Any] = {
            "deploy_seconds": ended - started,
            "upgrade_seconds": next(step["seconds"] for step in record["steps"] if step["name"] == "upgrade"),
            "writer": writer_figures([attempt for attempt in attempts if attempt[0] <= ended]),
            "writer_waits_seen": waits_seen,
            # The deploy's output, each line with its time: where a phase's seconds went.
            "output": [[round(at - started, 3), line] for at, line in lines],
        }
        worst = max(attempts, key=lambda attempt: attempt[1])
        figures["worst_wait_at_seconds"] = worst[0] - started
        marks = {
            mark: next((at for at, line in lines if mark in line), None)
            for mark in (TOOL_STARTS, TOOL_COPIED, SWAPPED_IN)
        }
        if path == "online":
            tool, copied, swapped = marks[TOOL_STARTS], marks[TOOL_COPIED], marks[SWAPPED_IN]
            if tool is None or copied is None or swapped is None:
                raise RuntimeError("the online deploy did not run the tool: " + "\n".join(line for _, line in lines))
            figures.update(
                {
                    "table_bytes": table_bytes,
                    "copy_seconds": copied - tool,
                    "cut_over_seconds": swapped - copied,
                    "copy_bytes_per_second": table_bytes / (copied - tool),
                }
            )
            windows = {
                "before the copy": (started, tool),
                "copy": (tool, copied),
                "cut-over": (copied, swapped),
                "after the cut-over": (swapped, ended),
            }
            figures["worst_wait_in"] = next(
                (name for name, (low, high) in windows.items() if low <= worst[0] < high), "after the deploy"
            )
            figures["writer_by_phase"] = {
                name: writer_figures(inside)
                for name, (low, high) in windows.items()
                if (inside := [attempt for attempt in attempts if low <= attempt[0] < high])
            }
        elif marks[TOOL_STARTS] is not None:
            raise RuntimeError("the direct deploy ran the online tool")
        writes = figures["writer"]
        self.say(
            f"  {path}: deploy {figures['deploy_seconds']:.1f} s (upgrade {figures['upgrade_seconds']:.1f} s); "
            f"writer p50 {writes['p50_ms']:.1f} ms, p99 {writes['p99_ms']:.1f} ms, "
            f"max {writes['max_ms']:.0f} ms, {writes['failed']} failed of {writes['inserts']}"
            + (
                f"; copy {figures['copy_seconds']:.1f} s ({figures['copy_bytes_per_second'] / 1e6:.1f} MB/s), "
                f"cut-over {figures['cut_over_seconds']:.2f} s, worst wait in the {figures['worst_wait_in']}"
                if path == "online"
                else ""
            )
        )
        return figures

    def reset(self, _: str) -> None:
        """Back to HEAD: what the online deploy kept aside dropped, the column's type back."""
        with migration_lock(self.direct, "bench settle") as lock:
            settle_deploys(self.direct, lock)
        migrate.downgrade(self.direct, HEAD)

    def compare(self) -> dict[str, Any]:
        runs: dict[str, list[dict]] = {path: [] for path in PATHS}

        def way(path: str) -> Callable[[], None]:
            return lambda: runs[path].append(self.one(path))

        alternate({path: way(path) for path in PATHS}, self.repeats, self.reset)
        result: dict[str, Any] = {path: summary(path_runs) for path, path_runs in runs.items()}
        direct, online = result["direct"], result["online"]
        result["online_vs_direct"] = {
            "deploy": online["deploy_seconds"] / direct["deploy_seconds"],
            "upgrade": online["upgrade_seconds"] / direct["upgrade_seconds"],
        }
        result["goals"] = {
            "writer_max_wait_s": MAX_WAIT_GOAL,
            "writer_max_wait_met": online["writer_max_ms"] <= 1000 * MAX_WAIT_GOAL,
            "time_factor": TIME_FACTOR_GOAL,
            "time_factor_met": result["online_vs_direct"]["deploy"] <= TIME_FACTOR_GOAL,
        }
        result["runs"] = runs
        return result


def writer_figures(attempts: list[tuple[float, float, str]]) -> dict[str, Any]:
    """The writer's latency figures, and the first few distinct errors its failed inserts met."""
    figures: dict[str, Any] = dict(latency_figures(attempts))
    if errors := sorted({error for *_, error in attempts if error}):
        figures["errors"] = errors[:5]
    return figures


def summary(runs: list[dict]) -> dict[str, Any]:
    """Medians over the runs; the writer's worst wait and failures over all of them."""
    found: dict[str, Any] = {
        key: statistics.median(run[key] for run in runs)
        for key in ("deploy_seconds", "upgrade_seconds", "copy_seconds", "cut_over_seconds", "copy_bytes_per_second")
        if key in runs[0]
    }
    found.update(
        {
            "writer_p50_ms": statistics.median(run["writer"]["p50_ms"] for run in runs),
            "writer_p99_ms": statistics.median(run["writer"]["p99_ms"] for run in runs),
            "writer_max_ms": max(run["writer"]["max_ms"] for run in runs),
            "writer_failed": sum(run["writer"]["failed"] for run in runs),
            "writer_inserts": sum(run["writer"]["inserts"] for run in runs),
        }
    )
    seen: dict[str, int] = {}
    for run in runs:
        for reason, count in run["writer_waits_seen"].items():
            seen[reason] = seen.get(reason, 0) + count
    found["writer_waits_seen"] = dict(sorted(seen.items(), key=lambda item: -item[1]))
    return found


def table(results: dict) -> list[str]:
    data, direct, online = results["dataset"], results["direct"], results["online"]
    ratio, goals = results["online_vs_direct"], results["goals"]
    lines = [
        f"load average at start: {results['load_start']}",
        "",
        f"== {data['rows']:,} messages: {data['data_mb']:,.0f} MB data + {data['index_mb']:,.0f} MB index; "
        f"retype chat_messages.token_count INT -> BIGINT (a table copy) under a writer inserting every "
        f"{1000 * WRITER_INTERVAL:.0f} ms; medians of {results['repeats']}, worst wait over all runs; "
        f"OSC_CHUNK_TIME {results['osc_chunk_time']}; server options {' '.join(results['server_options']) or 'none'}",
        f"{'path':8} {'deploy s':>9} {'upgrade s':>10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'failed':>7} {'inserts':>8}",
    ]
    for name, figures in (("direct", direct), ("online", online)):
        lines.append(
            f"{name:8} {figures['deploy_seconds']:9.2f} {figures['upgrade_seconds']:10.2f} "
            f"{figures['writer_p50_ms']:8.1f} {figures['writer_p99_ms']:8.1f} {figures['writer_max_ms']:8.0f} "
            f"{figures['writer_failed']:7d} {figures['writer_inserts']:8d}"
        )
    lines += [
        f"online / direct: deploy {ratio['deploy']:.2f} x, upgrade step {ratio['upgrade']:.2f} x "
        f"(goal <= {goals['time_factor']:.0f} x: {'met' if goals['time_factor_met'] else 'MISSED'}); "
        f"writer's worst wait online {online['writer_max_ms']:.0f} ms "
        f"(goal <= {1000 * goals['writer_max_wait_s']:.0f} ms: {'met' if goals['writer_max_wait_met'] else 'MISSED'})",
        f"online phases: the tool's copy {online['copy_seconds']:.2f} s at "
        f"{online['copy_bytes_per_second'] / 1e6:.1f} MB/s of data and indexes, our cut-over "
        f"{online['cut_over_seconds']:.2f} s",
    ]
    for number, run in enumerate(results["runs"]["online"], 1):
        phases = ", ".join(
            f"{name} p99 {figures['p99_ms']:.0f} / max {figures['max_ms']:.0f} ms"
            + (f" / {figures['failed']} failed ({'; '.join(figures['errors'])})" if figures["failed"] else "")
            for name, figures in run["writer_by_phase"].items()
        )
        lines.append(f"  online run {number}: worst wait in the {run['worst_wait_in']}; {phases}")
    for name in PATHS:
        seen = results[name]["writer_waits_seen"]
        lines.append(
            f"  {name}: statements seen running over 100 ms (50 ms samples): "
            + ("; ".join(f"{reason} x{count}" for reason, count in list(seen.items())[:4]) or "none")
        )
    lines += ["", f"load average at end: {results['load_end']}"]
    return lines


def run(rows: int, repeats: int, say=print, chunk_time: str = "", server_options: tuple[str, ...] = ()) -> dict:
    if not shutil.which("pt-online-schema-change"):
        raise SystemExit("❌ pt-online-schema-change not found (apt-get install percona-toolkit)")
    results: dict[str, Any] = {
        "load_start": uptime(),
        "repeats": repeats,
        "osc_chunk_time": chunk_time or "the setting's default",
        "server_options": list(server_options),
    }
    say(results["load_start"])
    work = Path(tempfile.mkdtemp(prefix="online-bench-"))
    try:
        with bench_server(
            work / "server",
            copy_versions(work / "head"),
            ("--innodb-buffer-pool-size=1G", "--innodb-log-file-size=512M", *server_options),
        ) as settings:
            bench = Bench(settings, work, repeats, say, chunk_time)
            results["dataset"] = bench.dataset(rows)
            results["load_average"] = os.getloadavg()
            results.update(bench.compare())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["load_end"] = uptime()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4_000_000, help="chat_messages rows (default 4,000,000)")
    parser.add_argument("--repeats", type=int, default=3, help="deploys of each path, alternating (medians; default 3)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file, to compare commits")
    parser.add_argument("--chunk-time", default="", help="OSC_CHUNK_TIME for the online deploys (default: its default)")
    parser.add_argument(
        "--server-option",
        action="append",
        default=[],
        help="another option for the benchmark's server, e.g. --server-option=--innodb-autoinc-lock-mode=2 (repeatable)",
    )
    args = parser.parse_args(argv)
    results = run(args.rows, args.repeats, chunk_time=args.chunk_time, server_options=tuple(args.server_option))
    print("\n".join(table(results)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
