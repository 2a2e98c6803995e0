"""The deploy's capture hook (backend/dbops/undo/capture.py) driven directly on a migration connection."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from backend.dbops.connection import connect
from backend.dbops.undo import log
from backend.dbops.undo.capture import DeployCapture
from backend.dbops.undo.refusal import IrreversibleStatement


@pytest.fixture
def keyless(created_database, mysql_server):
    """A table without a primary or unique key, holding a value a narrower column would cut."""
    mysql_server.execute(
        created_database.database,
        "CREATE TABLE nokey (note VARCHAR(255)) ENGINE=InnoDB",
        "INSERT INTO nokey VALUES ('a value longer than ten characters')",
    )
    return created_database


def column_type(settings) -> str:
    with connect(settings) as connection:
        return connection.execute(
            text(
                "SELECT COLUMN_TYPE FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'nokey' AND COLUMN_NAME = 'note'"
            )
        ).scalar_one()


def test_a_lossy_modify_of_a_table_without_a_key_is_refused_before_it_runs(keyless):
    """The preflight cannot tell a lossy MODIFY from a harmless one; the hook's probe can, and refuses it."""
    with connect(keyless) as control, connect(keyless) as migration:
        capture = DeployCapture(control, "d1")
        capture.revision = "r1"
        with capture.attached(migration), pytest.raises(IrreversibleStatement, match="nokey has no primary key"):
            migration.execute(text("ALTER TABLE nokey MODIFY note VARCHAR(10)"))
    assert column_type(keyless) == "varchar(255)"


def test_allowed_it_runs_and_is_recorded_as_not_undone(keyless):
    with connect(keyless) as control, connect(keyless) as migration:
        capture = DeployCapture(control, "d1", allow_irreversible=True)
        capture.revision = "r1"
        with capture.attached(migration):
            migration.execute(text("SET SESSION sql_mode = ''"))  # cut the value rather than fail
            migration.execute(text("ALTER TABLE nokey MODIFY note VARCHAR(10)"))
        kinds = control.execute(text(f"SELECT kind, status FROM {log.UNDO.name} WHERE deploy_id = 'd1'")).all()
    assert [tuple(row) for row in kinds] == [(log.IRREVERSIBLE, log.DONE)]
    assert column_type(keyless) == "varchar(10)"
