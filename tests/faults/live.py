"""Helpers for deploys with the application writing: the writer process, revisions written per
test, and the row-by-row model of what the database must hold afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from backend.config import PROJECT_ROOT
from tests.helpers import APP_TABLES, HEAD, copy_versions, query, revision_text, wait_until

FIRST, SECOND = "aa00000000a1", "aa00000000a2"
PAUSE = 'op.execute("SELECT SLEEP(0.4)")  # the application writes meanwhile'
# Fails on the application's data ("Subquery returns more than 1 row"), so the preflight's
# rehearsal on empty tables lets it through.
FAIL = 'op.execute("SELECT (SELECT 1 UNION ALL SELECT 2) FROM users")'
SILENCES = (
    "# lint: ignore[drop-table, drop-column, narrow-type, data-update-mixed-with-ddl, missing-downgrade] "
    "these test revisions destroy data on purpose, for the rollback to bring it back"
)


NO_DOWNGRADE = "pass  # the tests roll back from the undo log, never through downgrade()"


def write_revisions(
    tmp_path: Path, first_body: str, second_body: str | None = None, first_downgrade: str = NO_DOWNGRADE
) -> dict[str, str]:
    """The project's revisions plus FIRST (and SECOND on top of it), as MIGRATIONS_DIR."""
    target = copy_versions(tmp_path / "versions")
    chain = [(FIRST, HEAD, first_body, first_downgrade)] + (
        [(SECOND, FIRST, second_body, NO_DOWNGRADE)] if second_body is not None else []
    )
    for revision, down, body, downgrade in chain:
        (target / f"{revision}_live.py").write_text(
            revision_text(revision, down, body, downgrade, doc="Live-writes test revision.", preamble=SILENCES)
        )
    return {"MIGRATIONS_DIR": str(target)}


class Writer:
    """tests/faults/writer.py in its own process, against the test's database."""

    def __init__(self, env: dict[str, str], tmp_path: Path, name: str = "writer") -> None:
        self.log = tmp_path / f"{name}.jsonl"
        self.stop_file = tmp_path / f"{name}.stop"
        self.log.touch()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.writer", str(self.log), str(self.stop_file)], cwd=PROJECT_ROOT, env=env
        )

    def entries(self) -> list[dict]:
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def wait_for_writes(self, count: int, what: str = "") -> None:
        start = len(self.entries())
        wait_until(lambda: len(self.entries()) >= start + count, f"{count} more committed writes {what}")

    def stop(self) -> list[dict]:
        self.stop_file.touch()
        assert self.process.wait(timeout=60) == 0
        return self.entries()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def all_rows(server, database: str) -> dict[str, dict]:
    """Every row of every application table: {table: {id: {column: value}}}."""
    rows = {}
    for table in APP_TABLES:
        columns = [
            row[0]
            for row in query(
                server,
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE "
                "TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                (database, table),
            )
        ]
        found = query(server, f"SELECT * FROM `{table}` ORDER BY id", database=database)
        rows[table] = {row[0]: dict(zip(columns, row, strict=True)) for row in found}
    return rows


def expected_after(before: dict[str, dict], writes: list[dict]) -> dict[str, dict]:
    """What the database must hold once the deploy is undone: the rows from before with every write
    the application committed. A row holds the columns known: all of a row from before (but an
    updated row's ON UPDATE timestamp), only the written one of an inserted row."""
    rows = {table: {key: dict(row) for key, row in found.items()} for table, found in before.items()}
    targets = {
        "insert-message": ("chat_messages", "content"),
        "update-message": ("chat_messages", "content"),
        "insert-log": ("system_logs", "message"),
        "delete-log": ("system_logs", None),
        "update-knowledge": ("knowledge", "content"),
    }
    for write in writes:
        table, column = targets[write["kind"]]
        if write["kind"].startswith("insert"):
            rows[table][write["id"]] = {column: write["value"]}
        elif column is None:
            rows[table].pop(write["id"], None)
        else:
            rows[table][write["id"]][column] = write["value"]
            rows[table][write["id"]].pop("updated_at", None)
    return rows


def differences(expected: dict[str, dict], actual: dict[str, dict]) -> list[str]:
    """Row by row, every known column; rows missing or not expected."""
    found = []
    for table, rows in expected.items():
        missing = sorted(set(rows) - set(actual[table]))
        extra = sorted(set(actual[table]) - set(rows))
        if missing or extra:
            found.append(f"{table}: missing ids {missing[:10]}, unexpected ids {extra[:10]}")
        for key, row in rows.items():
            if key in actual[table]:
                wrong = {
                    column: (value, actual[table][key].get(column))
                    for column, value in row.items()
                    if actual[table][key].get(column) != value
                }
                if wrong:
                    found.append(f"{table} id {key}: expected, found {wrong}")
    return found
