"""The step-by-step round trip on a real server, with schema snapshots compared (schema.diff) and rows kept.

`round_trip()` goes base -> head one revision at a time, reads the schema after each step and
inserts that revision's rows (revision_data.py); then head -> base one step at a time, each schema
equal to the one read on the way up (empty at base); then head again (rows inserted again), each
schema equal again. A difference fails with the step and what differs, e.g.
"downgrade of b0rken000001 does not restore the schema of e9e7d98878ca: users: column mood: only in after (varchar(32))".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import text

from backend.config import Settings
from backend.dbops import alembic_setup, migrate, revision_graph
from backend.dbops.connection import connect
from backend.dbops.errors import first_line
from backend.dbops.identifiers import quote_identifier
from backend.dbops.schema import Schema, diff, read_schema
from backend.dbops.tool_tables import TOOL_TABLES
from tests.migrations.revision_data import RevisionRows

BASE = "base"


def linear_revisions(settings: Settings) -> list:
    """The revisions, base first: one head, no merges (a round trip walks one line)."""
    script = alembic_setup.script_directory(settings)
    revision_graph.single_head(script)
    revisions = list(reversed(list(script.walk_revisions())))
    merges = [revision.revision for revision in revisions if isinstance(revision.down_revision, tuple | list)]
    assert not merges, f"the round trip walks linear histories only: {', '.join(merges)} merge(s)"
    return revisions


def parent(revision) -> str:
    return revision.down_revision or BASE


def read(settings: Settings) -> Schema:
    with connect(settings) as connection:
        return read_schema(connection, settings.database, exclude=TOOL_TABLES)


def differences(expected: Schema, actual: Schema, limit: int = 8) -> str:
    words = [difference.text() for difference in diff(expected, actual, "before", "after")]
    return "; ".join(words[:limit] + ([f"{len(words) - limit} more"] if len(words) > limit else []))


def _plain(value: object) -> str:
    if isinstance(value, bytes):
        return value.hex()
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _columns(connection, database: str, table: str) -> tuple[list[str], list[str]]:
    """(columns to checksum, primary key columns): columns the server fills with the time are left out."""
    rows = connection.execute(
        text(
            "SELECT COLUMN_NAME, COLUMN_DEFAULT, EXTRA, COLUMN_KEY FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = :db AND TABLE_NAME = :table ORDER BY ORDINAL_POSITION"
        ),
        {"db": database, "table": table},
    ).all()
    stable = [
        name
        for name, default, extra, _ in rows
        if "on update" not in (extra or "").lower() and not str(default or "").lower().startswith("current_timestamp")
    ]
    return stable, [name for name, _, _, key in rows if key == "PRI"]


def data_state(settings: Settings, tables: list[str]) -> dict[str, tuple[int, str]]:
    """{table: (rows, sha256 of the rows in key order)}."""
    state = {}
    with connect(settings) as connection:
        for table in sorted(tables):
            columns, key = _columns(connection, settings.database, table)
            quoted = ", ".join(quote_identifier(column) for column in columns)
            order = ", ".join(quote_identifier(column) for column in key or columns)
            digest, count = hashlib.sha256(), 0
            for row in connection.execute(text(f"SELECT {quoted} FROM {quote_identifier(table)} ORDER BY {order}")):
                digest.update(json.dumps([_plain(value) for value in row], ensure_ascii=False).encode())
                count += 1
            state[table] = (count, digest.hexdigest()[:16])
    return state


def insert(settings: Settings, revision: str, rows: RevisionRows) -> None:
    try:
        with connect(settings) as connection:
            for statement in rows.statements:
                connection.execute(text(statement))
            connection.commit()
    except Exception as exc:
        raise AssertionError(f"the rows of {revision} could not be inserted: {first_line(exc)}") from None


def missing_rows(settings: Settings, inserted: Mapping[str, RevisionRows]) -> list[str]:
    """Inserted rows no longer found, as 'revision: table key' words."""
    missing = []
    with connect(settings) as connection:
        for revision, rows in inserted.items():
            for table, keys in rows.keys.items():
                _, key = _columns(connection, settings.database, table)
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


@dataclass
class RoundTrip:
    revisions: list
    schemas: dict[str, Schema] = field(default_factory=dict)  # after each step up, and at base
    inserted: dict[str, RevisionRows] = field(default_factory=dict)
    missing_at_head: list[str] = field(default_factory=list)  # rows gone by head, on the first way up
    first_data: dict = field(default_factory=dict)  # at head, before the round trip
    second_data: dict = field(default_factory=dict)  # at head, after it


def _way_up(settings: Settings, trip: RoundTrip, data: Mapping[str, RevisionRows], again: bool) -> list[str]:
    problems = []
    for revision in trip.revisions:
        step = revision.revision
        migrate.upgrade(settings, step)
        schema = read(settings)
        if again and schema != trip.schemas[step]:
            problems.append(
                f"upgrade to {step} after the round trip gives another schema: "
                f"{differences(trip.schemas[step], schema)}"
            )
        trip.schemas.setdefault(step, schema)
        if step in data:
            insert(settings, step, data[step])
            if not again:
                trip.inserted[step] = data[step]
    return problems


def round_trip(settings: Settings, data: Mapping[str, RevisionRows]) -> RoundTrip:
    """The walk up, down and up again on settings' (empty) database; AssertionError at a schema that differs."""
    trip = RoundTrip(linear_revisions(settings))
    base = read(settings)
    assert not base.tables, f"the new database is not empty: {', '.join(base.names())}"
    trip.schemas[BASE] = base
    problems = _way_up(settings, trip, data, again=False)
    head = trip.schemas[trip.revisions[-1].revision] if trip.revisions else base
    trip.missing_at_head = missing_rows(settings, trip.inserted)
    trip.first_data = data_state(settings, head.names())
    for revision in reversed(trip.revisions):
        migrate.downgrade(settings, "-1")
        schema, before = read(settings), parent(revision)
        if schema != trip.schemas[before]:
            problems.append(
                f"downgrade of {revision.revision} does not restore the schema of {before}: "
                f"{differences(trip.schemas[before], schema)}"
            )
    # The second way up would stumble over what the downgrades left behind.
    assert not problems, "; ".join(problems)
    problems = _way_up(settings, trip, data, again=True)
    assert not problems, "; ".join(problems)
    trip.second_data = data_state(settings, head.names())
    return trip
