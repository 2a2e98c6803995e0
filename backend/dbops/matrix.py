"""The server matrix: every revision's round trip on real servers of each supported version.

For one target (providers.TARGETS) `run_target()` starts a throwaway server and checks:

  server       it started (the time it took is the check's duration);
  round_trip   base -> head one revision at a time, a normalized schema snapshot after each
               step; head -> base one step at a time, each snapshot equal to the one taken on
               the way up (empty at base); head again, equal again;
  models       at head, autogenerate finds no difference between the models and the schema;
  data         rows that per-revision fixtures (FIXTURES) inserted on the way up are all still
               there at head, and the tables have the same counts and checksums after the
               round trip (fixtures inserted again on the second way up) as before it;
  offline_sql  the offline SQL of every revision renders, up and down.

Results are plain data, written per target as JSON (`write_result`) and combined into a
summary table (text, Markdown, JSON) that ends with how many targets ran and which were
skipped, and why. A target that no provider can serve is skipped at once (nothing is
installed or started for it), or failed when it is required (MATRIX_REQUIRED: ids, flavours
or all, separated by commas).

Command line (what noxfile.py runs inside its one virtualenv; see `main`):
    python -m backend.dbops.matrix run                       every target
    python -m backend.dbops.matrix run mariadb mysql-9.7     the MariaDB targets and MySQL 9.7
    python -m backend.dbops.matrix summary --output .nox-matrix
    python -m backend.dbops.matrix targets
    python -m backend.dbops.matrix provision mariadb-10.5 mysql-9.7
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DbOpsError
from .providers import TARGETS, Say, ServerHandle, ServerUnavailable, acquire, get_target

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from ..config import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUTPUT = PROJECT_ROOT / ".nox-matrix"
CHECKS = ("server", "round_trip", "models", "data", "offline_sql")
PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
SUMMARY_NAME = "summary"
DETAIL_LIMIT = 400


# ---------------------------------------------------------------- per-revision fixtures
#
# Each function inserts a few rows valid for the schema of its revision (released revisions
# never change, so neither do these) and returns {table: [primary key values]}. Text carries
# Chinese and an emoji: utf8mb4 must survive every step.

FixtureRows = dict[str, list[Any]]
Fixture = Callable[["Connection"], FixtureRows]

SESSION_ID = "5f0c6a8e-1c1b-4d55-9d2e-6a7f3b2c9a01"


def _rows_for_initial_schema(connection: Connection) -> FixtureRows:
    from sqlalchemy import text

    statements = [
        (
            "INSERT INTO users (id, username, email, password_hash, nickname, is_active) "
            "VALUES (901, 'matrix_user', 'matrix@example.test', 'pbkdf2$1$abc', '小明 😊', 1)"
        ),
        (
            "INSERT INTO chat_sessions (id, user_id, title, status, message_count) "
            f"VALUES ('{SESSION_ID}', 901, '今天的心情', 'active', 2)"
        ),
        (
            "INSERT INTO chat_messages (id, session_id, user_id, role, content, emotion, token_count) VALUES "
            f"(9001, '{SESSION_ID}', 901, 'user', '我今天有点焦虑 😟', 'anxious', 12), "
            f"(9002, '{SESSION_ID}', 901, 'assistant', '深呼吸，慢慢来。', NULL, 9)"
        ),
        (
            "INSERT INTO emotion_analysis (id, message_id, session_id, user_id, emotion, intensity, sentiment_score, "
            f"keywords, suggestion) VALUES (9101, 9001, '{SESSION_ID}', 901, 'anxious', 0.750, -0.400, "
            "'[\"焦虑\", \"work\"]', '试试 4-7-8 呼吸法')"
        ),
        (
            "INSERT INTO knowledge (id, category, title, content, tags, source, is_active) "
            "VALUES (9201, 'coping', '4-7-8 呼吸法', '吸气 4 秒，屏息 7 秒，呼气 8 秒。', 'breathing,anxiety', 'matrix', 1)"
        ),
        (
            "INSERT INTO system_logs (id, level, module, message, user_id, details) "
            "VALUES (9301, 'WARNING', 'matrix', 'fixture row', 901, '{\"attempt\": 1, \"ok\": true}')"
        ),
        (
            "INSERT INTO user_feedback (id, user_id, session_id, message_id, rating, feedback_type, comment) "
            f"VALUES (9401, 901, '{SESSION_ID}', 9002, 5, 'helpful', '很有帮助 👍')"
        ),
    ]
    for statement in statements:
        connection.execute(text(statement))
    return {
        "users": [901],
        "chat_sessions": [SESSION_ID],
        "chat_messages": [9001, 9002],
        "emotion_analysis": [9101],
        "knowledge": [9201],
        "system_logs": [9301],
        "user_feedback": [9401],
    }


FIXTURES: dict[str, Fixture] = {
    "e9e7d98878ca": _rows_for_initial_schema,
}


# ---------------------------------------------------------------- results


@dataclass
class CheckResult:
    name: str
    status: str
    seconds: float = 0.0
    detail: str = ""


@dataclass
class TargetResult:
    target: str
    label: str
    required: bool
    status: str = SKIPPED
    reason: str = ""
    provider_reasons: list[str] = field(default_factory=list)
    provider: str = ""
    flavour: str = ""
    version: str = ""
    startup_seconds: float = 0.0
    provision_seconds: float = 0.0
    seconds: float = 0.0
    finished_at: str = ""
    checks: list[CheckResult] = field(default_factory=list)
    head_snapshot: dict | None = None

    def check(self, name: str) -> CheckResult | None:
        return next((check for check in self.checks if check.name == name), None)

    @property
    def failures(self) -> list[CheckResult]:
        return [check for check in self.checks if check.status == FAILED]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> TargetResult:
        known = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        known["checks"] = [CheckResult(**check) for check in data.get("checks", [])]
        return cls(**known)


def _one_line(value: object, limit: int = DETAIL_LIMIT) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_text(exc: BaseException) -> str:
    return _one_line(exc if isinstance(exc, DbOpsError) else f"{type(exc).__name__}: {exc}")


# ---------------------------------------------------------------- snapshots and their differences


def _snapshot(settings: Settings) -> dict:
    from .connection import connect
    from .snapshot import schema_snapshot
    from .tool_tables import TOOL_TABLES

    with connect(settings) as connection:
        return schema_snapshot(connection, settings.database, exclude=TOOL_TABLES)


def describe_difference(expected: dict, actual: dict, limit: int = 6) -> str:
    """One line naming what differs between two snapshots (tables, then their parts)."""
    parts = []
    for table in sorted(expected.keys() | actual.keys()):
        before, after = expected.get(table), actual.get(table)
        if before == after:
            continue
        if before is None:
            parts.append(f"table {table} is extra")
            continue
        if after is None:
            parts.append(f"table {table} is missing")
            continue
        for key in sorted(before.keys() | after.keys()):
            if before.get(key) == after.get(key):
                continue
            if key == "columns":
                old = {column[0]: column for column in before.get(key, [])}
                new = {column[0]: column for column in after.get(key, [])}
                parts += [f"{table}.{name} is extra" for name in new.keys() - old.keys()]
                parts += [f"{table}.{name} is missing" for name in old.keys() - new.keys()]
                parts += [
                    f"{table}.{name} differs ({old[name][1:]} vs {new[name][1:]})"
                    for name in old.keys() & new.keys()
                    if old[name] != new[name]
                ]
                if old.keys() == new.keys() and list(old) != list(new):
                    parts.append(f"{table} column order differs")
            elif isinstance(before.get(key), dict) and isinstance(after.get(key), dict):
                old, new = before[key], after[key]
                noun = {"indexes": "index", "foreign_keys": "foreign key", "checks": "check"}.get(key, key)
                parts += [f"{table} {noun} {name} is extra" for name in sorted(new.keys() - old.keys())]
                parts += [f"{table} {noun} {name} is missing" for name in sorted(old.keys() - new.keys())]
                parts += [
                    f"{table} {noun} {name} differs ({_how(old[name], new[name])})"
                    for name in sorted(old.keys() & new.keys())
                    if old[name] != new[name]
                ]
            else:
                parts.append(f"{table} {key} differs ({before.get(key)} vs {after.get(key)})")
    if len(parts) > limit:
        parts = parts[:limit] + [f"{len(parts) - limit} more"]
    return "; ".join(parts) or "no difference"


def _how(old: object, new: object) -> str:
    """'key: a vs b' for the keys of two dicts that differ, else 'a vs b'."""
    if isinstance(old, dict) and isinstance(new, dict):
        return ", ".join(
            f"{key}: {old.get(key)} vs {new.get(key)}"
            for key in sorted(old.keys() | new.keys())
            if old.get(key) != new.get(key)
        )
    return f"{old} vs {new}"


def _describe_autogenerate(diffs: list) -> str:
    """Alembic's diff entries in words: ('add_column', None, 'users', Column('x', ...)) -> add_column users.x."""
    words = []
    for entry in diffs:
        item = entry[0] if isinstance(entry, list) and entry else entry
        if not isinstance(item, tuple) or not item:
            words.append(_one_line(item, 80))
            continue
        operation, rest = item[0], item[1:]
        names = []
        for part in rest:
            name = getattr(part, "name", None)
            if name is not None:
                names.append(str(name))
            elif isinstance(part, str):
                names.append(part)
        words.append(f"{operation} {'.'.join(names)}".strip())
    return "; ".join(words)


# ---------------------------------------------------------------- data


def _table_columns(connection: Connection, database: str, table: str) -> tuple[list[str], list[str]]:
    """(columns to checksum, primary key columns): columns the server fills with the time are left out."""
    from sqlalchemy import text

    rows = connection.execute(
        text(
            "SELECT COLUMN_NAME, COLUMN_DEFAULT, EXTRA, COLUMN_KEY FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = :db AND TABLE_NAME = :table ORDER BY ORDINAL_POSITION"
        ),
        {"db": database, "table": table},
    ).all()
    stable, key = [], []
    for name, default, extra, column_key in rows:
        moving = "on update" in (extra or "").lower() or str(default or "").lower().startswith("current_timestamp")
        if not moving:
            stable.append(name)
        if column_key == "PRI":
            key.append(name)
    return stable, key


def _plain(value: object) -> str:
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def data_state(settings: Settings, tables: list[str]) -> dict[str, dict]:
    """{table: {"rows": n, "checksum": sha256 of the rows in key order}}."""
    from sqlalchemy import text

    from .connection import connect
    from .identifiers import quote_identifier

    state = {}
    with connect(settings) as connection:
        for table in sorted(tables):
            columns, key = _table_columns(connection, settings.database, table)
            quoted = ", ".join(quote_identifier(column) for column in columns)
            order = ", ".join(quote_identifier(column) for column in key or columns)
            digest = hashlib.sha256()
            count = 0
            for row in connection.execute(text(f"SELECT {quoted} FROM {quote_identifier(table)} ORDER BY {order}")):
                digest.update(json.dumps([_plain(value) for value in row], ensure_ascii=False).encode())
                count += 1
            state[table] = {"rows": count, "checksum": digest.hexdigest()[:16]}
    return state


def _insert_fixture(settings: Settings, fixture: Fixture) -> FixtureRows:
    from .connection import connect

    with connect(settings) as connection:
        inserted = fixture(connection)
        connection.commit()
    return inserted


def _missing_rows(settings: Settings, inserted: dict[str, FixtureRows]) -> list[str]:
    """Fixture rows (by revision) no longer found at head, as 'rev: table id' words."""
    from sqlalchemy import text

    from .connection import connect
    from .identifiers import quote_identifier

    missing = []
    with connect(settings) as connection:
        for revision, tables in inserted.items():
            for table, keys in tables.items():
                _, key = _table_columns(connection, settings.database, table)
                if len(key) != 1:
                    missing.append(f"{revision}: table {table} is gone or has no single-column key")
                    continue
                for value in keys:
                    found = connection.execute(
                        text(f"SELECT COUNT(*) FROM {quote_identifier(table)} WHERE {quote_identifier(key[0])} = :v"),
                        {"v": value},
                    ).scalar_one()
                    if not found:
                        missing.append(f"{revision}: {table} {value}")
    return missing


# ---------------------------------------------------------------- the checks


class CheckFailed(DbOpsError):
    pass


@dataclass
class _Run:
    """State shared by the checks of one target."""

    settings: Settings
    revisions: list[Any] = field(default_factory=list)  # alembic Script objects, base first
    up_snapshots: dict[str, dict] = field(default_factory=dict)
    inserted: dict[str, FixtureRows] = field(default_factory=dict)
    first_state: dict | None = None
    round_trip_done: bool = False
    head_snapshot: dict | None = None


def _label(revision: str | None) -> str:
    return revision or "base"


def _parent(script) -> str | None:
    down = script.down_revision
    if isinstance(down, (tuple, list)):
        if len(down) != 1:
            raise CheckFailed(f"revision {script.revision} is a merge: the matrix walks linear histories only")
        return down[0]
    return down


def _ordered_revisions(settings: Settings) -> list:
    from .alembic_setup import script_directory
    from .revision_graph import single_head

    script = script_directory(settings)
    single_head(script)
    revisions = list(reversed(list(script.walk_revisions())))
    for revision in revisions:
        _parent(revision)  # refuses merges
    return revisions


def _way_up(run: _Run, fixtures: Mapping[str, Fixture], compare: bool) -> list[str]:
    from .migrate import upgrade

    problems = []
    for revision in run.revisions:
        try:
            upgrade(run.settings, revision.revision)
        except DbOpsError as exc:
            raise CheckFailed(f"upgrade to {revision.revision} failed: {_error_text(exc)}") from None
        snapshot = _snapshot(run.settings)
        if compare:
            if snapshot != run.up_snapshots[revision.revision]:
                problems.append(
                    f"upgrade to {revision.revision} after the round trip gives another schema: "
                    f"{describe_difference(run.up_snapshots[revision.revision], snapshot)}"
                )
        else:
            run.up_snapshots[revision.revision] = snapshot
        fixture = fixtures.get(revision.revision)
        if fixture is not None:
            try:
                rows = _insert_fixture(run.settings, fixture)
            except Exception as exc:
                raise CheckFailed(f"the fixture of {revision.revision} failed: {_error_text(exc)}") from None
            if not compare:
                run.inserted[revision.revision] = rows
    return problems


def _round_trip(run: _Run, fixtures: Mapping[str, Fixture]) -> str:
    from .migrate import downgrade

    run.revisions = _ordered_revisions(run.settings)
    base = _snapshot(run.settings)
    if base:
        raise CheckFailed(f"the new database is not empty: {', '.join(sorted(base))}")
    run.up_snapshots["base"] = base
    problems = _way_up(run, fixtures, compare=False)
    run.head_snapshot = run.up_snapshots[run.revisions[-1].revision] if run.revisions else {}
    run.first_state = data_state(run.settings, list(run.head_snapshot))
    for revision in reversed(run.revisions):
        parent = _label(_parent(revision))
        try:
            downgrade(run.settings, "-1")
        except DbOpsError as exc:
            problems.append(f"downgrade of {revision.revision} failed: {_error_text(exc)}")
            raise CheckFailed("; ".join(problems)) from None
        snapshot = _snapshot(run.settings)
        if snapshot != run.up_snapshots[parent]:
            problems.append(
                f"downgrade of {revision.revision} does not restore the schema of {parent}: "
                f"{describe_difference(run.up_snapshots[parent], snapshot)}"
            )
    if problems:
        # The second way up would stumble over what the downgrades left behind.
        raise CheckFailed("; ".join(problems))
    problems += _way_up(run, fixtures, compare=True)
    if problems:
        raise CheckFailed("; ".join(problems))
    run.round_trip_done = True
    count = len(run.revisions)
    return f"{count} revision(s) up, down to base and up again; every snapshot matched"


def _models(run: _Run) -> str:
    from .admin import create_database, drop_database
    from .authoring import autogenerate_diff
    from .migrate import upgrade

    settings = run.settings
    fresh = None
    if not run.round_trip_done:
        # The round trip left its database somewhere unknown: judge the models on a new one.
        from dataclasses import replace

        fresh = settings = replace(settings, database=f"{settings.database}_m")
        create_database(settings)
    try:
        if fresh is not None:
            upgrade(settings)
        diffs = autogenerate_diff(settings)
    finally:
        if fresh is not None:
            drop_database(fresh)
    if diffs:
        raise CheckFailed(f"models and schema differ at head: {_describe_autogenerate(diffs)}")
    where = "" if fresh is None else " (on a new database: the round trip failed)"
    return f"models and schema agree at head{where}"


def _data(run: _Run) -> str:
    if not run.round_trip_done:
        raise _Skip("needs a finished round trip")
    missing = _missing_rows(run.settings, run.inserted)
    if missing:
        raise CheckFailed(f"fixture rows gone at head: {', '.join(missing[:8])}")
    second = data_state(run.settings, list(run.head_snapshot or {}))
    changed = [table for table in sorted(second) if second[table] != (run.first_state or {}).get(table)]
    if changed:
        words = [f"{table} {run.first_state.get(table)} -> {second[table]}" for table in changed[:4]]
        raise CheckFailed(f"data differs after the round trip: {'; '.join(words)}")
    rows = sum(len(keys) for tables in run.inserted.values() for keys in tables.values())
    without = [revision.revision for revision in run.revisions if revision.revision not in run.inserted]
    note = f"; no fixture for {', '.join(without)}" if without else ""
    return (
        f"{rows} fixture row(s) of {len(run.inserted)} revision(s) at head; "
        f"{len(second)} table(s) with equal counts and checksums after the round trip{note}"
    )


def _offline_sql(run: _Run) -> str:
    from .offline_sql import offline_sql

    revisions = run.revisions or _ordered_revisions(run.settings)
    for revision in revisions:
        parent = _label(_parent(revision))
        for downgrade in (False, True):
            direction = "down" if downgrade else "up"
            start, end = (revision.revision, parent) if downgrade else (parent, revision.revision)
            try:
                sql = offline_sql(run.settings, start, end, downgrade=downgrade)
            except Exception as exc:
                raise CheckFailed(
                    f"offline SQL of {revision.revision} ({direction}) failed: {_error_text(exc)}"
                ) from None
            if revision.revision not in sql:
                raise CheckFailed(f"offline SQL of {revision.revision} ({direction}) does not record the revision")
    return f"{len(revisions)} revision(s) rendered up and down"


class _Skip(Exception):
    pass


def _timed(name: str, body: Callable[[], str]) -> CheckResult:
    started = time.monotonic()
    try:
        detail = body()
        status = PASSED
    except _Skip as exc:
        detail, status = str(exc), SKIPPED
    except Exception as exc:
        # Recorded as a failure of this check; the others still run.
        detail, status = _error_text(exc), FAILED
    return CheckResult(name, status, round(time.monotonic() - started, 2), _one_line(detail))


def run_checks(
    handle: ServerHandle, versions_dir: Path | None = None, fixtures: Mapping[str, Fixture] | None = None
) -> tuple[list[CheckResult], dict | None]:
    """The checks after `server` on a running server; returns (checks, head snapshot)."""
    from .admin import create_database, drop_database

    changes = {"versions_dir": Path(versions_dir)} if versions_dir else {}
    settings = handle.settings(database=f"matrix_{secrets.token_hex(4)}", **changes)
    fixtures = FIXTURES if fixtures is None else fixtures
    run = _Run(settings)
    create_database(settings)
    try:
        checks = [
            _timed("round_trip", lambda: _round_trip(run, fixtures)),
            _timed("models", lambda: _models(run)),
            _timed("data", lambda: _data(run)),
            _timed("offline_sql", lambda: _offline_sql(run)),
        ]
    finally:
        drop_database(settings)
    return checks, run.head_snapshot


def run_target(
    target_id: str,
    versions_dir: Path | None = None,
    required: bool = False,
    work_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    fixtures: Mapping[str, Fixture] | None = None,
    say: Say = lambda line: None,
) -> TargetResult:
    """Start target_id's server, run every check, stop it; never raises for a check's failure.

    say is told, line by line, how a long preparation of the server goes (a root being built).
    """
    target = get_target(target_id)
    result = TargetResult(target.id, target.label, required)
    started = time.monotonic()
    try:
        with acquire(target.id, work_dir=work_dir, environ=environ, say=say) as handle:
            result.provider, result.flavour, result.version = handle.provider, handle.flavour, handle.version
            result.startup_seconds = round(handle.startup_seconds, 2)
            result.provision_seconds = round(handle.provision_seconds, 1)
            result.checks.append(CheckResult("server", PASSED, result.startup_seconds, handle.describe()))
            checks, result.head_snapshot = run_checks(handle, versions_dir, fixtures)
            result.checks += checks
    except ServerUnavailable as exc:
        result.provider_reasons = exc.lines()
        result.reason = _one_line(exc)
        status = FAILED if required else SKIPPED
        detail = ("required, but " if required else "") + "no provider can serve it"
        result.checks = [CheckResult("server", status, 0.0, detail)] + [
            CheckResult(name, SKIPPED, 0.0, "no server") for name in CHECKS[1:]
        ]
    except Exception as exc:
        # The server or the database around the checks failed (not a check itself).
        result.reason = _error_text(exc)
        done = {check.name for check in result.checks}
        if "server" not in done:
            result.checks.append(CheckResult("server", FAILED, 0.0, result.reason))
        result.checks += [
            CheckResult(name, FAILED, 0.0, result.reason) for name in CHECKS if name not in done and name != "server"
        ]
    result.seconds = round(time.monotonic() - started, 2)
    result.finished_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result.status = _overall(result)
    return result


def _overall(result: TargetResult) -> str:
    statuses = {check.status for check in result.checks}
    if FAILED in statuses:
        return FAILED
    server = result.check("server")
    if server is None or server.status == SKIPPED:
        return SKIPPED
    return PASSED


# ---------------------------------------------------------------- files and summaries


def write_result(result: TargetResult, output: Path) -> Path:
    output.mkdir(parents=True, exist_ok=True)
    path = output / f"{result.target}.json"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    temporary.replace(path)
    return path


def read_results(output: Path) -> list[TargetResult]:
    """The per-target results in output, in the order of TARGETS."""
    found = {}
    for path in sorted(Path(output).glob("*.json")):
        if path.stem not in TARGETS:
            continue  # the combined summary, bench figures
        try:
            found[path.stem] = TargetResult.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise DbOpsError(f"cannot read {path}: {_one_line(exc, 120)}") from None
    return [found[target] for target in TARGETS if target in found]


def apply_required(results: list[TargetResult], required: frozenset[str]) -> list[TargetResult]:
    """Required targets that were skipped, or that have no result at all, count as failed."""
    out = []
    for result in results:
        if result.target in required and result.status == SKIPPED:
            result.required = True
            result.status = FAILED
            result.reason = result.reason or "required but skipped"
        out.append(result)
    have = {result.target for result in results}
    for target in sorted(required - have, key=list(TARGETS).index):
        out.append(
            TargetResult(
                target,
                TARGETS[target].label,
                True,
                FAILED,
                "required, but no result was found",
                checks=[CheckResult(name, SKIPPED, 0.0, "not run") for name in CHECKS],
            )
        )
    return out


def _cell(check: CheckResult | None) -> str:
    if check is None:
        return "-"
    word = {PASSED: "passed", FAILED: "FAILED", SKIPPED: "skipped"}.get(check.status, check.status)
    return word if check.status == SKIPPED else f"{word} {check.seconds:.1f}s"


def _build_cell(result: TargetResult) -> str:
    """The Debian root's build: its time when built by this run, 'reused' when built before."""
    if result.provision_seconds:
        return f"built {result.provision_seconds:.1f}s"
    return "reused" if result.provider == "chroot" else "-"


def _rows(results: list[TargetResult]) -> tuple[list[str], list[list[str]]]:
    header = ["target", "server", "root", *CHECKS, "total", "result"]
    rows = []
    for result in results:
        server = f"{result.flavour} {result.version} ({result.provider})" if result.provider else "-"
        rows.append(
            [
                result.target,
                server,
                _build_cell(result),
                *(_cell(result.check(name)) for name in CHECKS),
                f"{result.seconds:.1f}s",
                result.status.upper() if result.status == FAILED else result.status,
            ]
        )
    return header, rows


def _notes(results: list[TargetResult]) -> list[str]:
    notes = []
    for result in results:
        for check in result.checks:
            if check.status == FAILED:
                notes.append(f"{result.target} {check.name}: {check.detail}")
        if result.provider_reasons and result.status == FAILED:
            notes.append(f"{result.target}: required, but no provider can serve it:")
            notes += [f"    {line}" for line in result.provider_reasons]
        elif result.reason and result.status == FAILED and not result.failures:
            notes.append(f"{result.target}: {result.reason}")
    notes += schema_differences(results)
    return notes


def schema_differences(results: list[TargetResult]) -> list[str]:
    """Where normalized head schemas differ: against the first target of the same flavour, then
    once between the flavours (server reporting quirks that snapshot normalization does not cover)."""
    with_schema = [result for result in results if result.head_snapshot is not None]
    notes, firsts = [], {}
    for result in with_schema:
        reference = firsts.setdefault(result.flavour, result)
        if result is not reference and result.head_snapshot != reference.head_snapshot:
            notes.append(
                f"{result.target} head schema differs from {reference.target}: "
                f"{describe_difference(reference.head_snapshot, result.head_snapshot, limit=8)}"
            )
    if len(firsts) == 2:
        mariadb, mysql = firsts.get("mariadb"), firsts.get("mysql")
        if mariadb and mysql and mariadb.head_snapshot != mysql.head_snapshot:
            notes.append(
                f"{mysql.target} head schema differs from {mariadb.target}: "
                f"{describe_difference(mariadb.head_snapshot, mysql.head_snapshot, limit=20)}"
            )
    return notes


def counts(results: list[TargetResult]) -> dict:
    """How many targets ran (their server started), passed and failed; which were skipped or not served."""
    ran = [result for result in results if result.provider]
    return {
        "targets": len(results),
        "ran": len(ran),
        "passed": sum(result.status == PASSED for result in ran),
        "failed": sum(result.status == FAILED for result in ran),
        "not_served": [result.target for result in results if not result.provider and result.status == FAILED],
        "skipped": [result.target for result in results if result.status == SKIPPED],
    }


def verdict(results: list[TargetResult]) -> list[str]:
    """The closing lines: how many targets ran, and loudly which were not tested, and why."""
    count = counts(results)
    failed_any = count["failed"] or count["not_served"]
    mark = "❌" if failed_any else "⚠️ " if count["skipped"] else "✅"
    line = (
        f"{mark} server matrix: {count['ran']} of {count['targets']} target(s) ran: {count['passed']} passed, "
        f"{count['failed']} failed"
    )
    if count["not_served"]:
        line += f"; {len(count['not_served'])} REQUIRED but not served: {', '.join(count['not_served'])}"
    if count["skipped"]:
        line += f"; {len(count['skipped'])} SKIPPED, not tested: {', '.join(count['skipped'])}"
    lines = [line]
    for result in results:
        if result.status == SKIPPED:
            lines.append(f"    {result.target} skipped, no provider can serve it:")
            lines += [f"        {reason}" for reason in result.provider_reasons or [result.reason]]
    return lines


def render_text(results: list[TargetResult]) -> str:
    header, rows = _rows(results)
    widths = [max(len(row[index]) for row in [header, *rows]) for index in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    notes = _notes(results)
    return "\n".join(lines + ([""] + notes if notes else []) + [""] + verdict(results))


def render_markdown(results: list[TargetResult]) -> str:
    header, rows = _rows(results)
    lines = ["# Server matrix", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    notes = _notes(results)
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note.strip()}" for note in notes]
    first, *skipped = verdict(results)
    lines += ["", f"**{first.strip()}**"]
    if skipped:
        lines += [""] + [
            f"- {line.strip()}" if not line.startswith(" " * 8) else f"  - {line.strip()}" for line in skipped
        ]
    return "\n".join(lines) + "\n"


def write_summary(results: list[TargetResult], output: Path) -> tuple[Path, Path]:
    output.mkdir(parents=True, exist_ok=True)
    data = [{key: value for key, value in result.to_dict().items() if key != "head_snapshot"} for result in results]
    json_path, markdown_path = output / f"{SUMMARY_NAME}.json", output / f"{SUMMARY_NAME}.md"
    json_path.write_text(
        json.dumps(
            {"targets": data, "counts": counts(results), "schema_differences": schema_differences(results)},
            indent=2,
            ensure_ascii=False,
        )
    )
    markdown_path.write_text(render_markdown(results))
    return json_path, markdown_path


def failed(results: list[TargetResult]) -> bool:
    return any(result.status == FAILED for result in results)


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    """`python -m backend.dbops.matrix run|summary|targets|provision`: the thin layer noxfile.py calls."""
    import argparse
    import os
    import signal
    import sys

    from .providers import describe_providers, provision, required_targets, select_targets

    def say(line: str) -> None:
        print(f"  {line}", flush=True)

    parser = argparse.ArgumentParser(prog="python -m backend.dbops.matrix", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the matrix on servers of several versions")
    run.add_argument(
        "targets", nargs="*", default=["all"], help="target ids, flavours (mariadb, mysql) or all (the default)"
    )
    run.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="folder for the JSON and Markdown results")
    run.add_argument("--versions-dir", type=Path, help="revision folder (default alembic/versions)")
    run.add_argument(
        "--required",
        default=os.environ.get("MATRIX_REQUIRED", ""),
        help="targets that must run: ids, flavours or all, separated by commas (default $MATRIX_REQUIRED)",
    )
    run.add_argument("--bench", action="store_true", help="also print and write wall time and start times")
    summary = commands.add_parser("summary", help="combine the per-target results in --output")
    summary.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    summary.add_argument("--required", default=os.environ.get("MATRIX_REQUIRED", ""))
    commands.add_parser("targets", help="the targets and what each provider would do")
    build = commands.add_parser("provision", help="build the Debian roots of targets now (root only)")
    build.add_argument("server", nargs="+", help="target ids or flavours")
    args = parser.parse_args(argv)

    # SIGTERM (a CI timeout, nox interrupted) unwinds like Ctrl-C, so every server is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if args.command == "targets":
            for target in TARGETS.values():
                print(f"{target.id}  ({target.label})")
                for provider, what in describe_providers(target.id):
                    print(f"    {provider:7} {what}")
            return 0
        if args.command == "provision":
            from concurrent.futures import ThreadPoolExecutor

            names = select_targets(args.server)
            # The builds wait on the network and dpkg more than on the CPU: side by side.
            with ThreadPoolExecutor(max_workers=len(names)) as pool:
                futures = {name: pool.submit(provision, name, None, say) for name in names}
            problems = 0
            for name, future in futures.items():
                try:
                    marker = future.result()
                except DbOpsError as exc:
                    print(f"❌ {name}: {exc}", file=sys.stderr)
                    problems += 1
                    continue
                how = "already built" if marker["reused"] else f"built in {marker['seconds']:.0f} s"
                print(f"✅ {name}: {marker['flavour']} {marker['version']}, {how}, {marker.get('size_mb', '?')} MB")
            return 1 if problems else 0
        required = required_targets(args.required)
        if args.command == "summary":
            results = apply_required(read_results(args.output), required)
            if not results:
                print(f"❌ no matrix results in {args.output}", file=sys.stderr)
                return 1
            write_summary(results, args.output)
            print(render_text(results))
            return 1 if failed(results) else 0
        servers = select_targets(args.targets)
        started = time.monotonic()
        results = []
        for number, name in enumerate(servers, 1):
            print(f"▶ {name} ({TARGETS[name].label}), {number} of {len(servers)}", flush=True)
            result = run_target(name, versions_dir=args.versions_dir, required=name in required, say=say)
            write_result(result, args.output)
            results.append(result)
            say(_progress_line(result))
        wall = time.monotonic() - started
        print()
        print(render_text(results))
        write_summary(apply_required(read_results(args.output), required), args.output)
        if args.bench:
            print()
            print(render_bench(results, wall))
            (args.output / "bench.json").write_text(json.dumps(bench_figures(results, wall), indent=2))
        return 1 if failed(results) else 0
    except DbOpsError as exc:
        print(f"❌ {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("❌ interrupted: the servers started were stopped and removed", file=sys.stderr)
        return 130


def _progress_line(result: TargetResult) -> str:
    """One target's outcome as the run goes."""
    if not result.provider:
        why = "no provider can serve it (reasons at the end)"
        return f"❌ required, but {why}" if result.status == FAILED else f"⚠️  skipped: {why}"
    built = f"; root built in {result.provision_seconds:.0f} s" if result.provision_seconds else ""
    mark = {PASSED: "✅", FAILED: "❌"}.get(result.status, "⚠️ ")
    return (
        f"{mark} {result.status} in {result.seconds:.1f} s ({result.flavour} {result.version}, "
        f"{result.provider}{built})"
    )


def bench_figures(results: list[TargetResult], wall: float) -> dict:
    return {
        "wall_seconds": round(wall, 1),
        "targets": {
            result.target: {
                "status": result.status,
                "provider": result.provider,
                "version": result.version,
                "startup_seconds": result.startup_seconds,
                "provision_seconds": result.provision_seconds,
                "seconds": result.seconds,
                "checks": {check.name: check.seconds for check in result.checks},
            }
            for result in results
        },
    }


def render_bench(results: list[TargetResult], wall: float) -> str:
    lines = [f"matrix wall time: {wall:.1f} s for {len(results)} target(s)"]
    for result in results:
        built = f", root built in {result.provision_seconds:.0f} s" if result.provision_seconds else ""
        lines.append(
            f"  {result.target:14} start {result.startup_seconds:5.2f} s  total {result.seconds:6.1f} s  "
            f"({result.provider or result.status}{built})"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
