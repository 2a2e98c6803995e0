"""The server matrix (`nox -s migrations`): its sessions, the skip-or-fail contract of a target no
provider serves, and the round trip of tests/migrations catching what it is there to catch."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import replace

import pytest

from backend.config import PROJECT_ROOT
from backend.dbops.targets import TARGETS
from tests.helpers import APP_TABLES, HEAD, copy_versions
from tests.migrations.revision_data import ROWS, RevisionRows
from tests.migrations.walk import round_trip

NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}

# A revision whose downgrade forgets to drop the column its upgrade adds.
BROKEN_REVISION = '''"""Add users.mood, but forget it on the way down.

Revision ID: b0rken000001
Revises: {head}
"""

import sqlalchemy as sa
from alembic import op

revision = "b0rken000001"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("mood", sa.String(length=32), nullable=True))


def downgrade() -> None:
    pass
'''


def run(*command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MATRIX_", "MYSQL_", "TEST_")) and key != "DOCKER_HOST"
    }
    environment.update(NO_DOCKER, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", *command], cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True, timeout=300
    )


# ---------------------------------------------------------------- the round trip of tests/migrations


def test_a_downgrade_that_forgets_a_column_fails_the_round_trip_and_names_the_revision(created_database, tmp_path):
    versions = copy_versions(tmp_path / "versions")
    (versions / "b0rken000001_add_mood.py").write_text(BROKEN_REVISION.format(head=HEAD))
    with pytest.raises(AssertionError) as failure:
        round_trip(replace(created_database, versions_dir=versions), ROWS)
    assert str(failure.value) == (
        f"downgrade of b0rken000001 does not restore the schema of {HEAD}: users: column mood: only in after "
        "(varchar(32))"
    )


def test_rows_that_do_not_fit_fail_the_round_trip_and_name_the_revision(created_database):
    broken = {HEAD: RevisionRows(("INSERT INTO users (id) VALUES (1)",), {"users": (1,)})}  # username is NOT NULL
    with pytest.raises(AssertionError, match=f"the rows of {HEAD} could not be inserted: .*username"):
        round_trip(created_database, broken)


def test_the_rows_reach_every_table_of_the_schema():
    assert sorted(ROWS[HEAD].keys) == APP_TABLES


# ---------------------------------------------------------------- a target no provider serves


def test_a_target_nobody_serves_is_skipped_with_the_reasons_unless_required():
    skipped = run("pytest", "tests/migrations", "-p", "no:cacheprovider", env={"TEST_SERVER": "mysql-5.7"})
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert re.search(r"= \d+ skipped in ", skipped.stdout), skipped.stdout  # every test, none run
    assert (
        "mysql-5.7 not tested: no provider can serve mysql-5.7: url: MATRIX_URL_MYSQL_5_7 is not set; local: no local "
        "MySQL 5.7 binary"
    ) in skipped.stdout
    assert "docker: no Docker engine" in skipped.stdout

    for required in ("mysql-5.7", "mysql", "all"):
        failed = run(
            "pytest",
            "tests/migrations",
            "-p",
            "no:cacheprovider",
            env={"TEST_SERVER": "mysql-5.7", "MATRIX_REQUIRED": required},
        )
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert re.search(r"= \d+ errors in ", failed.stdout), failed.stdout
        assert "mysql-5.7 is required (MATRIX_REQUIRED), but no provider can serve mysql-5.7: url:" in failed.stdout


# ---------------------------------------------------------------- the nox sessions


def test_nox_has_a_migrations_session_per_target_and_selects_them_by_tag():
    listed = run("nox", "-l")
    assert listed.returncode == 0, listed.stderr
    for target in TARGETS.values():
        assert f"- migrations(server='{target.id}') [{','.join(target.tags)}]" in listed.stdout
    assert "matrix" not in listed.stdout  # no results files or summary sessions

    debian = run("nox", "-l", "-k", "migrations and debian")
    chosen = [line.split()[1] for line in debian.stdout.splitlines() if line.startswith("* ")]
    assert chosen == [f"migrations(server='{target.id}')" for target in TARGETS.values() if target.debian]
