"""The server matrix: the round trip, models, data and offline SQL checks on real servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from backend.config import PROJECT_ROOT
from backend.dbops import matrix, providers
from backend.dbops.matrix import FAILED, PASSED, SKIPPED, CheckResult, TargetResult
from tests.helpers import APP_TABLES, HEAD, copy_versions

NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


def has_local(target_id: str) -> bool:
    try:
        providers.find_local_binary(providers.TARGETS[target_id])
        return True
    except providers.ProviderSkipped:
        return False


needs_local_10_11 = pytest.mark.skipif(not has_local("mariadb-10.11"), reason="no local MariaDB 10.11 binary")

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


def statuses(result: TargetResult) -> dict[str, str]:
    return {check.name: check.status for check in result.checks}


@needs_local_10_11
def test_the_matrix_passes_every_check_on_the_local_mariadb_10_11(tmp_path):
    result = matrix.run_target("mariadb-10.11", work_dir=tmp_path, environ=NO_DOCKER)
    assert statuses(result) == dict.fromkeys(matrix.CHECKS, PASSED), result.checks
    assert result.status == PASSED and result.provider == "local" and result.version.startswith("10.11.")
    assert 0 < result.startup_seconds < 60 and result.seconds >= result.startup_seconds
    assert sorted(result.head_snapshot) == APP_TABLES
    data = result.check("data").detail
    assert data.startswith("8 fixture row(s) of 1 revision(s) at head; 7 table(s)"), data
    assert "1 revision(s) up, down to base and up again" in result.check("round_trip").detail
    assert list(tmp_path.iterdir()) == []  # the server folder is gone


@needs_local_10_11
def test_a_downgrade_that_forgets_a_column_fails_the_round_trip_and_names_the_revision(tmp_path):
    versions = copy_versions(tmp_path / "versions")
    (versions / "b0rken000001_add_mood.py").write_text(BROKEN_REVISION.format(head=HEAD))
    result = matrix.run_target("mariadb-10.11", versions_dir=versions, environ=NO_DOCKER)

    assert result.status == FAILED
    round_trip = result.check("round_trip")
    assert round_trip.status == FAILED
    assert (
        "downgrade of b0rken000001 does not restore the schema of e9e7d98878ca: users.mood is extra"
        in round_trip.detail
    )
    # The models do not know the column either; judged on a new database at head.
    models = result.check("models")
    assert models.status == FAILED and "remove_column users.mood" in models.detail
    assert result.check("data").status == SKIPPED
    assert result.check("offline_sql").status == PASSED
    assert "2 revision(s)" in result.check("offline_sql").detail
    assert any("round_trip: downgrade of b0rken000001" in note for note in matrix._notes([result]))


@needs_local_10_11
def test_a_fixture_that_breaks_fails_the_round_trip(tmp_path):
    def bad_fixture(connection):
        from sqlalchemy import text

        connection.execute(text("INSERT INTO users (id) VALUES (1)"))  # username is NOT NULL
        return {}

    result = matrix.run_target("mariadb-10.11", environ=NO_DOCKER, fixtures={HEAD: bad_fixture})
    assert result.check("round_trip").status == FAILED
    assert f"the fixture of {HEAD} failed" in result.check("round_trip").detail


# ---------------------------------------------------------------- snapshot differences and summaries


def test_describe_difference_names_tables_columns_and_constraints():
    table = {
        "engine": "InnoDB",
        "collation": "utf8mb4_unicode_ci",
        "columns": [["id", "bigint", False, None, "auto_increment", None]],
        "indexes": {"PRIMARY": {"unique": True, "columns": ["id"]}},
        "foreign_keys": {},
        "checks": {},
    }
    changed = json.loads(json.dumps(table))
    changed["columns"].append(["mood", "varchar(32)", True, None, "", "utf8mb4_unicode_ci"])
    changed["indexes"]["ix_mood"] = {"unique": False, "columns": ["mood"]}
    assert (
        matrix.describe_difference({"users": table}, {"users": changed})
        == "users.mood is extra; users index ix_mood is extra"
    )
    assert matrix.describe_difference({"users": table}, {}) == "table users is missing"
    assert matrix.describe_difference({}, {"users": table}) == "table users is extra"
    assert matrix.describe_difference({"users": table}, {"users": table}) == "no difference"


def sample_results() -> list[TargetResult]:
    passed = TargetResult(
        "mariadb-10.5",
        "MariaDB 10.5",
        False,
        PASSED,
        provider="chroot",
        flavour="mariadb",
        version="10.5.23",
        startup_seconds=1.5,
        provision_seconds=183.4,
        seconds=187.6,
        checks=[CheckResult(name, PASSED, 0.5, "ok") for name in matrix.CHECKS],
        head_snapshot={"t": {"columns": [["id", "bigint"]]}},
    )
    broken = TargetResult(
        "mysql-9.7",
        "MySQL 9.7",
        True,
        FAILED,
        provider="chroot",
        flavour="mysql",
        version="9.7.4",
        startup_seconds=8.0,
        seconds=12.0,
        checks=[CheckResult("server", PASSED, 8.0), CheckResult("round_trip", FAILED, 2.0, "downgrade of abc failed")],
        head_snapshot={"t": {"columns": [["id", "int"]]}},
    )
    skipped = TargetResult(
        "mysql-5.7",
        "MySQL 5.7",
        False,
        SKIPPED,
        reason="no provider can serve mysql-5.7",
        provider_reasons=["url: MATRIX_URL_MYSQL_5_7 is not set", "docker: no Docker engine"],
        checks=[CheckResult("server", SKIPPED, 0.0, "no provider can serve it")],
    )
    return [passed, broken, skipped]


def test_the_summary_table_in_text_markdown_and_json(tmp_path):
    results = sample_results()
    text = matrix.render_text(results)
    lines = text.splitlines()
    assert lines[0].split() == [
        "target",
        "server",
        "root",
        "server",
        "round_trip",
        "models",
        "data",
        "offline_sql",
        "total",
        "result",
    ]
    assert "built 183.4s  passed 0.5s" in lines[2] and lines[2].endswith("passed")
    assert "reused" in lines[3] and "FAILED 2.0s" in lines[3] and lines[3].endswith("FAILED")
    assert lines[4].split()[:4] == ["mysql-5.7", "-", "-", "skipped"]
    assert "mysql-9.7 round_trip: downgrade of abc failed" in text
    assert "mysql-9.7 head schema differs from mariadb-10.5: t.id differs" in text
    # It ends loudly with what ran and what was not tested, and why.
    closing = text[text.index("❌ server matrix") :].splitlines()
    assert closing == [
        "❌ server matrix: 2 of 3 target(s) ran: 1 passed, 1 failed; 1 SKIPPED, not tested: mysql-5.7",
        "    mysql-5.7 skipped, no provider can serve it:",
        "        url: MATRIX_URL_MYSQL_5_7 is not set",
        "        docker: no Docker engine",
    ]

    markdown = matrix.render_markdown(results)
    assert markdown.startswith("# Server matrix\n\n| target | server | root |")
    assert "| mysql-5.7 | - | - | skipped |" in markdown
    assert (
        "**❌ server matrix: 2 of 3 target(s) ran: 1 passed, 1 failed; 1 SKIPPED, not tested: mysql-5.7**" in markdown
    )
    assert "- mysql-5.7 skipped, no provider can serve it:\n  - url: MATRIX_URL_MYSQL_5_7 is not set\n" in markdown

    for result in results:
        matrix.write_result(result, tmp_path)
    again = matrix.read_results(tmp_path)
    assert [r.target for r in again] == ["mysql-9.7", "mariadb-10.5", "mysql-5.7"]  # the table's order
    assert again[1].checks == results[0].checks and again[1].head_snapshot == results[0].head_snapshot
    json_path, markdown_path = matrix.write_summary(again, tmp_path)
    summary = json.loads(json_path.read_text())
    assert [t["target"] for t in summary["targets"]] == ["mysql-9.7", "mariadb-10.5", "mysql-5.7"]
    assert summary["counts"] == {
        "targets": 3,
        "ran": 2,
        "passed": 1,
        "failed": 1,
        "not_served": [],
        "skipped": ["mysql-5.7"],
    }
    assert "head_snapshot" not in summary["targets"][0] and summary["schema_differences"]
    assert markdown_path.read_text() == matrix.render_markdown(again)
    assert matrix.read_results(tmp_path) == again  # the summary files are not taken for targets


def run_module(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MATRIX_", "MYSQL_")) and key != "DOCKER_HOST"
    }
    environment.update(NO_DOCKER, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "backend.dbops.matrix", *args],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_command_skips_an_unserved_target_unless_it_is_required(tmp_path):
    skipped = run_module("run", "mysql-5.7", "mysql-8.0", "--output", str(tmp_path))
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    lines = skipped.stdout.splitlines()
    # Each target says how it went as the run goes, in the order of the table.
    assert lines[:4] == [
        "▶ mysql-8.0 (MySQL 8.0), 1 of 2",
        "  ⚠️  skipped: no provider can serve it (reasons at the end)",
        "▶ mysql-5.7 (MySQL 5.7), 2 of 2",
        "  ⚠️  skipped: no provider can serve it (reasons at the end)",
    ]
    assert (
        "⚠️  server matrix: 0 of 2 target(s) ran: 0 passed, 0 failed; 2 SKIPPED, not tested: mysql-8.0, mysql-5.7"
    ) in lines
    assert "        url: MATRIX_URL_MYSQL_5_7 is not set" in lines
    assert (tmp_path / "mysql-5.7.json").is_file() and (tmp_path / "summary.md").is_file()

    required = run_module("run", "mysql-5.7", "--output", str(tmp_path), env={"MATRIX_REQUIRED": "mysql-5.7"})
    assert required.returncode == 1 and "FAILED" in required.stdout
    assert "  ❌ required, but no provider can serve it (reasons at the end)" in required.stdout
    assert (
        "❌ server matrix: 0 of 1 target(s) ran: 0 passed, 0 failed; 1 REQUIRED but not served: mysql-5.7"
        in required.stdout
    )
    assert "mysql-5.7: required, but no provider can serve it:" in required.stdout

    # The combined summary applies MATRIX_REQUIRED too, also to targets with no result at all.
    summary = run_module("summary", "--output", str(tmp_path), env={"MATRIX_REQUIRED": "mariadb-10.5"})
    assert summary.returncode == 1 and "mariadb-10.5" in summary.stdout
    relaxed = run_module("summary", "--output", str(tmp_path), "--required", "")
    assert relaxed.returncode == 1  # the run above with mysql-5.7 required recorded a failure
    matrix.write_result(matrix.run_target("mysql-5.7", environ=NO_DOCKER), tmp_path)
    assert run_module("summary", "--output", str(tmp_path), "--required", "").returncode == 0


def test_the_command_refuses_unknown_targets_in_one_line(tmp_path):
    result = run_module("run", "oracle-23", "--output", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "❌ unknown server 'oracle-23': choose from mysql-9.7, mysql-8.4, mysql-8.0, mariadb-11.8, mariadb-10.11, "
        "mariadb-10.5, mysql-5.7"
    ]
    bad_required = run_module("run", "mysql-5.7", "--output", str(tmp_path), env={"MATRIX_REQUIRED": "mysql-5.8"})
    assert bad_required.returncode == 1 and "unknown server 'mysql-5.8'" in bad_required.stderr


def test_the_targets_command_says_what_each_provider_would_do():
    result = run_module("targets")
    assert result.returncode == 0
    assert "mysql-5.7  (MySQL 5.7)" in result.stdout
    assert "chroot  no Debian suite ships MySQL 5.7" in result.stdout
    assert "docker  no Docker engine" in result.stdout


# ---------------------------------------------------------------- the Debian chroot targets


@pytest.mark.slow
@pytest.mark.parametrize("target_id", ["mariadb-10.5", "mariadb-11.8", "mysql-9.7"])
def test_the_matrix_passes_on_a_chroot_server(target_id):
    if os.geteuid() != 0 or providers.provisioned(providers.TARGETS[target_id]) is None:
        pytest.skip(f"needs root and the {target_id} root built (python -m backend.dbops.matrix provision)")
    result = matrix.run_target(target_id, environ=NO_DOCKER)
    assert result.provider == "chroot"
    assert statuses(result) == dict.fromkeys(matrix.CHECKS, PASSED), result.checks
