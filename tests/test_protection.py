"""The deploy's protection follows what the pending statements change, not the database's size.

An additive revision copies nothing; a dropped column is kept by the undo log (its key and
values, sized to that column), an UPDATE by the rows it matches; a full dump only when
DEPLOY_FULL_BACKUP asks for one. A failed deploy is still undone exactly, without a dump.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from backend.dbops.protection import plan
from tests.helpers import HEAD, checksums, copy_versions, query, revision_text

DESTRUCTIVE = "a0b1c2d3e4f5"
ROWS = 3000


@pytest.fixture
def destructive_env(invoke, mysql_server, settings, tmp_path):
    """The database at head with ROWS knowledge rows; a pending revision that drops knowledge.tags,
    rewrites some titles and adds a nullable column to users (additive)."""
    versions = copy_versions(tmp_path / "versions")
    (versions / f"{DESTRUCTIVE}_destructive.py").write_text(
        revision_text(
            DESTRUCTIVE,
            upgrade="""
                op.add_column("users", sa.Column("nickname_color", sa.String(16), nullable=True))
                # lint: ignore[drop-column] test: the values are what the undo log must keep
                op.drop_column("knowledge", "tags")
                op.execute("UPDATE knowledge SET title = CONCAT(title, ' (archived)') WHERE id <= 10")
            """,
            downgrade="""
                op.add_column("knowledge", sa.Column("tags", sa.String(255), nullable=True))
                op.drop_column("users", "nickname_color")
            """,
        )
    )
    env = {"MIGRATIONS_DIR": str(versions), "DEPLOY_VERIFY_MODELS": "0", "BACKUP_DIR": str(tmp_path / "backups")}
    assert invoke("db.create", env=env).returncode == 0
    assert invoke("db.upgrade", "-r", HEAD, env=env).returncode == 0
    query(
        mysql_server,
        "INSERT INTO knowledge (category, title, content, tags) "
        f"SELECT 'faq', CONCAT('title ', seq), REPEAT('body ', 40), REPEAT('tag,', 50) FROM seq_1_to_{ROWS}",
        database=settings.database,
    )
    query(mysql_server, "ANALYZE TABLE knowledge", database=settings.database)
    return env


def test_the_plan_lists_what_the_undo_log_keeps_sized_to_the_column(destructive_env, settings, mysql_server):
    found = plan(replace(settings, versions_dir=Path(destructive_env["MIGRATIONS_DIR"])), "head")
    assert found.irreversible == [] and found.unread == []
    assert [(item.table, item.what) for item in found.kept] == [
        ("knowledge", "column(s) tags dropped or changed"),
        ("knowledge", "rows it updates"),
    ]  # the added column of users is not listed: nothing of it can be lost
    (column_bytes,) = query(
        mysql_server, "SELECT SUM(LENGTH(tags)) + SUM(LENGTH(id)) FROM knowledge", database=settings.database
    )[0]
    (table_bytes,) = query(
        mysql_server,
        "SELECT DATA_LENGTH + INDEX_LENGTH FROM information_schema.TABLES "
        f"WHERE TABLE_SCHEMA = '{settings.database}' AND TABLE_NAME = 'knowledge'",
    )[0]
    estimate = found.kept[0].bytes
    assert estimate is not None
    # The estimate follows the column (TABLE_ROWS is itself an estimate), not the table.
    assert 0.5 * int(column_bytes) <= estimate <= 2 * int(column_bytes), (estimate, column_bytes)
    assert estimate < table_bytes


def test_a_destructive_deploy_dumps_nothing_and_is_still_undone_exactly(
    destructive_env, invoke, mysql_server, settings, tmp_path
):
    env = {**destructive_env, "DEPLOY_STEPS": "preflight,backup,upgrade,verify"}
    dry_run = invoke("db.deploy", "--dry-run", env=env)
    assert dry_run.returncode == 0, dry_run.output
    assert "  backup: no dump; 2 item(s) kept by the undo log, about " in dry_run.stdout
    assert f"    {DESTRUCTIVE} knowledge: column(s) tags dropped or changed: key and values copied" in dry_run.stdout

    before = checksums(mysql_server, settings.database)
    rows_before = query(mysql_server, "SELECT * FROM knowledge ORDER BY id", database=settings.database)
    report = tmp_path / "failed.json"
    failing = {**env, "DEPLOY_SMOKE_SQL": "SELECT no_such_column FROM knowledge"}
    result = invoke("db.deploy", "--report", str(report), env=failing)
    assert result.returncode == 1, result.output
    record = json.loads(report.read_text())
    assert record["status"] == "rolled back" and record["backup_file"] is None, result.output
    backup_step = next(step for step in record["steps"] if step["name"] == "backup")
    assert backup_step["detail"].startswith("no dump needed: 2 item(s) kept by the undo log")
    assert not (tmp_path / "backups").exists()
    # Put back from the undo log alone: every value, row by row.
    assert query(mysql_server, "SELECT * FROM knowledge ORDER BY id", database=settings.database) == rows_before
    assert checksums(mysql_server, settings.database) == before


def test_a_full_dump_when_the_environment_asks_for_one(destructive_env, invoke, tmp_path):
    env = {**destructive_env, "DEPLOY_STEPS": "preflight,backup,upgrade,verify", "APP_ENV": "staging"}
    env["DEPLOY_FULL_BACKUP_STAGING"] = "1"
    dry_run = invoke("db.deploy", "--dry-run", env=env)
    assert "  backup: a full dump (DEPLOY_FULL_BACKUP), about " in dry_run.stdout
    report = tmp_path / "deploy.json"
    result = invoke("db.deploy", "--yes", "--report", str(report), env=env)
    assert result.returncode == 0, result.output
    record = json.loads(report.read_text())
    backup_step = next(step for step in record["steps"] if step["name"] == "backup")
    assert backup_step["detail"].startswith("full dump (DEPLOY_FULL_BACKUP): ")
    assert record["backup_file"] and sorted(path.suffix for path in (tmp_path / "backups").iterdir()) == [
        ".json",
        ".zst",
    ]
