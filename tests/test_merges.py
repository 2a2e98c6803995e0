"""Two branches and their merge (tests/revisions/merge): upgrades and downgrades across the merge
go one revision at a time, each linted, counted, journaled and checksummed."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from backend.config import PROJECT_ROOT
from backend.dbops import alembic_setup, journal, migrate, revision_graph
from backend.dbops.check import run_check
from backend.dbops.connection import connect
from backend.dbops.errors import RevisionError
from backend.dbops.lint import lint
from backend.dbops.recover import recover
from tests.command_line import assert_one_error_line
from tests.helpers import HEAD, NO_BACKUP, checksums, copy_versions, raw_schema, seed, version_rows

BRANCH_A = "a7b8c9d0e1f2"  # knowledge.summary
BRANCH_B = "b8c9d0e1f2a3"  # users.mood
MERGE = "c9d0e1f2a3b4"  # lists branch b first
AFTER = "d0e1f2a3b4c5"  # users.tag, above the merge
MERGE_REVISIONS = PROJECT_ROOT / "tests" / "revisions" / "merge"
# What the two branches, then the merge and the one above, add: (table, column).
ADDED = {BRANCH_A: ("knowledge", "summary"), BRANCH_B: ("users", "mood"), AFTER: ("users", "tag")}


def branched_versions(folder: Path) -> Path:
    """The project's revisions plus two branches from its head, their merge and one above it."""
    copy_versions(folder)
    for path in MERGE_REVISIONS.glob("*.py"):
        (folder / path.name).write_text(path.read_text())
    return folder


def revision_file(folder: Path, revision: str) -> Path:
    [path] = folder.glob(f"{revision}_*.py")
    return path


def fail_halfway(path: Path) -> None:
    """Make a revision of tests/revisions/merge fail after its first statement (MySQL keeps that one).

    The failing statement fails wherever a revision is recorded, not in the preflight's rehearsal,
    which leaves statements on alembic_version out."""
    text = path.read_text()
    first = next(line for line in text.splitlines() if line.strip().startswith("op.add_column"))
    path.write_text(
        text.replace(first, f'{first}\n    op.execute("SELECT (SELECT 1 UNION ALL SELECT 2) FROM alembic_version")')
    )


@pytest.fixture
def branched(created_database, tmp_path):
    return replace(created_database, versions_dir=branched_versions(tmp_path / "versions"))


def columns(server, database: str) -> set[tuple[str, str]]:
    connection = server.connect()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s", (database,)
        )
        found = set(cursor.fetchall())
    connection.close()
    return found


def unfinished(settings) -> list:
    with connect(settings) as connection:
        return journal.unfinished(connection)


def journal_rows(server, database: str) -> list[tuple[str, str, str, str]]:
    """(revision, direction, status, checksum) of every journal entry, oldest first."""
    connection = server.connect(database)
    with connection.cursor() as cursor:
        cursor.execute("SELECT revision, direction, status, checksum FROM alembic_journal ORDER BY id")
        rows = list(cursor.fetchall())
    connection.close()
    return rows


def test_upgrade_to_the_merge_lints_counts_and_journals_the_other_branch(branched, mysql_server):
    settings, folder = branched, branched.versions_dir
    # One developer had applied his own branch before the merge came in.
    assert migrate.upgrade(settings, BRANCH_A) == [HEAD, BRANCH_A]
    script = alembic_setup.script_directory(settings)
    assert [step.revision for step in revision_graph.pending(script, (BRANCH_A,), MERGE)] == [BRANCH_B, MERGE]
    linted = lint(settings)
    assert linted.revisions == [BRANCH_B, MERGE, AFTER]
    assert any(note.startswith("3 revision(s) pending") for note in linted.notes), linted.notes
    assert len(run_check(settings).pending) == 3

    seen = []
    assert migrate.upgrade(settings, MERGE, on_step=lambda step, direction: seen.append(step.revision)) == [
        BRANCH_B,
        MERGE,
    ]
    assert seen == [BRANCH_B, MERGE]
    assert alembic_setup.current(settings) == (MERGE,)
    assert ADDED[BRANCH_B] in columns(mysql_server, settings.database)
    rows = journal_rows(mysql_server, settings.database)
    assert [row[:3] for row in rows] == [(rev, "upgrade", "applied") for rev in (HEAD, BRANCH_A, BRANCH_B, MERGE)]
    for revision, _, _, checksum in rows[1:]:
        assert checksum == journal.file_checksum(revision_file(folder, revision))

    # The branch that came with the merge is checksummed like any other applied revision.
    edited = revision_file(folder, BRANCH_B)
    edited.write_text(edited.read_text() + "\n# edited after it ran\n")
    [item] = [item for item in run_check(settings).items if item.name == "checksums"]
    assert not item.ok and edited.name in item.detail


def test_downgrade_across_the_merge_one_revision_at_a_time(branched, mysql_server):
    settings = branched
    # The merge lists branch b first: branch b, then branch a, then the merge.
    assert migrate.upgrade(settings) == [HEAD, BRANCH_B, BRANCH_A, MERGE, AFTER]
    seen = []
    reverted = migrate.downgrade(
        settings, HEAD, on_step=lambda step, direction: seen.append((step.revision, direction))
    )
    assert reverted == [AFTER, MERGE, BRANCH_A, BRANCH_B]  # the upgrade order backwards
    assert seen == [(rev, "downgrade") for rev in reverted]
    assert alembic_setup.current(settings) == (HEAD,)
    assert not set(ADDED.values()) & columns(mysql_server, settings.database)
    rows = journal_rows(mysql_server, settings.database)[-4:]
    assert [row[:3] for row in rows] == [(rev, "downgrade", "applied") for rev in reverted]
    assert unfinished(settings) == []
    with pytest.raises(RevisionError, match="cannot say which branch of a merge to take: name the revision"):
        revision_graph.downgrade_steps(alembic_setup.script_directory(settings), (AFTER,), f"{MERGE}-1")

    # Step by step below the merge: -2 leaves both branches, -1 then takes the last one applied.
    assert migrate.upgrade(settings) == [BRANCH_B, BRANCH_A, MERGE, AFTER]
    assert migrate.downgrade(settings, "-2") == [AFTER, MERGE]
    assert alembic_setup.current(settings) == (BRANCH_A, BRANCH_B)
    assert migrate.downgrade(settings) == [BRANCH_A]
    assert alembic_setup.current(settings) == (BRANCH_B,)
    assert ADDED[BRANCH_B] in columns(mysql_server, settings.database)
    assert migrate.upgrade(settings, MERGE) == [BRANCH_A, MERGE]
    assert migrate.downgrade(settings, "base") == [MERGE, BRANCH_A, BRANCH_B, HEAD]
    assert alembic_setup.current(settings) == ()
    assert unfinished(settings) == []


def test_failure_before_any_step_leaves_no_journal_entry(branched, mysql_server):
    settings = branched
    migrate.upgrade(settings)

    def another_tool_moved_it(step, direction) -> None:
        # Someone ran plain `alembic downgrade -1` meanwhile, without the tool's lock.
        if step.revision != AFTER:
            return
        connection = mysql_server.connect(settings.database)
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE users DROP COLUMN tag")
            cursor.execute(f"UPDATE alembic_version SET version_num = '{MERGE}'")
        connection.close()

    entries = len(journal_rows(mysql_server, settings.database))
    with pytest.raises(RevisionError, match=f"downgrade of {AFTER} did not start: the database is at {MERGE}"):
        migrate.downgrade(settings, HEAD, on_step=another_tool_moved_it)
    assert len(journal_rows(mysql_server, settings.database)) == entries
    assert unfinished(settings) == []
    assert migrate.upgrade(settings) == [AFTER]  # nothing blocks the next run


def test_recover_undo_of_a_branch_keeps_the_other_branch(branched, mysql_server):
    settings = branched
    migrate.upgrade(settings, BRANCH_A)
    before = columns(mysql_server, settings.database)
    fail_halfway(revision_file(settings.versions_dir, BRANCH_B))
    with pytest.raises(migrate.MigrationFailed, match=f"upgrade of {BRANCH_B} failed"):
        migrate.upgrade(settings, MERGE)
    assert ADDED[BRANCH_B] in columns(mysql_server, settings.database)  # half-applied
    recovered = recover(settings, "undo")
    assert recovered.revision_now == (BRANCH_A,)
    assert columns(mysql_server, settings.database) == before  # branch a's column kept
    assert unfinished(settings) == []


def test_quick_reference_merge_flow(invoke, mysql_server, database_name, tmp_path):
    """docs/数据库迁移快速参考.md: two heads, db.merge, db.upgrade, then db.downgrade below the merge."""
    folder = branched_versions(tmp_path / "versions")
    revision_file(folder, MERGE).unlink()
    revision_file(folder, AFTER).unlink()
    env = {"MIGRATIONS_DIR": str(folder), "DEPLOY_VERIFY_MODELS": "0"}
    assert invoke("db.create", env=env).returncode == 0
    assert invoke("db.upgrade", "-r", BRANCH_A, env=env).returncode == 0
    heads = invoke("db.heads", env=env)
    assert heads.returncode == 1 and BRANCH_A in heads.stdout and BRANCH_B in heads.stdout
    assert invoke("db.merge", "-m", "merge heads", env=env).returncode == 0
    upgraded = invoke("db.upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.output
    assert "applied 2 revision(s)" in upgraded.stdout and BRANCH_B in upgraded.stdout
    [merge] = version_rows(mysql_server, database_name)

    down = invoke("db.downgrade", "-r", HEAD, env=env)
    assert down.returncode == 0, down.output
    assert f"reverted 3 revision(s); {database_name} is at {HEAD}" in down.stdout
    assert down.stdout.index(merge) < down.stdout.index(BRANCH_A)
    assert invoke("db.upgrade", env=env).returncode == 0
    assert invoke("db.downgrade", env=env).returncode == 0  # the merge: both branches stay
    assert version_rows(mysql_server, database_name) == sorted([BRANCH_A, BRANCH_B])
    sql = invoke("db.sql", env=env)  # from both branches at once
    assert sql.returncode == 0 and f"UPDATE alembic_version SET version_num='{merge}'" in sql.stdout, sql.output
    plan = invoke("db.deploy", "--dry-run", env=env)
    assert plan.returncode == 0 and merge in plan.stdout, plan.output
    one = invoke("db.downgrade", env=env)  # then one branch
    assert one.returncode == 0 and "reverted 1 revision(s)" in one.stdout
    assert len(version_rows(mysql_server, database_name)) == 1
    assert "it is ahead" in assert_one_error_line(invoke("db.downgrade", "-r", merge, env=env))
    assert "no half-applied revision" in invoke("db.check", env=env).stdout


def test_deploy_to_the_merge_journals_both_branches(invoke, mysql_server, database_name, tmp_path):
    env = {"MIGRATIONS_DIR": str(branched_versions(tmp_path / "versions")), **NO_BACKUP}
    assert invoke("db.create", env=env).returncode == 0
    assert invoke("db.upgrade", "-r", BRANCH_A, env=env).returncode == 0  # one branch went out earlier
    report = tmp_path / "deploy.json"
    result = invoke("db.deploy", "--to", MERGE, "--report", str(report), env=env)
    assert result.returncode == 0, result.output
    assert f"2 revision(s) to apply: {BRANCH_B}, {MERGE}" in result.stdout
    assert "✅ deployed 2 revision(s)" in result.stdout
    record = json.loads(report.read_text())
    assert record["applied"] == [BRANCH_B, MERGE] and record["to_revision"] == [MERGE]
    connection = mysql_server.connect(database_name)
    with connection.cursor() as cursor:
        cursor.execute("SELECT revision, status FROM alembic_journal WHERE deploy_id = %s ORDER BY id", (record["id"],))
        assert cursor.fetchall() == tuple((rev, "applied") for rev in (BRANCH_B, MERGE))
    connection.close()


def test_deploy_rollback_across_the_merge_undoes_both_branches(invoke, mysql_server, database_name, tmp_path):
    folder = branched_versions(tmp_path / "versions")
    fail_halfway(revision_file(folder, AFTER))
    env = {"MIGRATIONS_DIR": str(folder), **NO_BACKUP, "DEPLOY_VERIFY_MODELS": "0"}
    assert invoke("db.create", env=env).returncode == 0
    assert invoke("db.upgrade", "-r", HEAD, env=env).returncode == 0
    seed(mysql_server, database_name)
    before, sums = raw_schema(mysql_server, database_name), checksums(mysql_server, database_name)
    result = invoke("db.deploy", env=env)
    assert result.returncode == 1, result.output
    assert f"upgrade of {AFTER} failed" in result.output and "rolled back" in result.stderr
    assert raw_schema(mysql_server, database_name) == before
    assert checksums(mysql_server, database_name) == sums
    assert version_rows(mysql_server, database_name) == [HEAD]
    check = invoke("db.check", env={"MIGRATIONS_DIR": str(folder)})
    assert "no half-applied revision" in check.stdout, check.output
