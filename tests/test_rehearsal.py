"""The preflight's rehearsal: the pending revisions run first on an empty copy of the schema, so a
failing statement, a table the models do not own and a change made by hand refuse the deploy
before the backup, and db.check says so too."""

from __future__ import annotations

from tests.command_line import assert_one_error_line
from tests.helpers import HEAD, checksums, copy_versions, raw_schema, revision_text, seed, version_rows, versions_with

WITH_BACKUP = {"DEPLOY_STEPS": "preflight,backup,upgrade,verify"}


def _revision_with(tmp_path, body: str) -> dict[str, str]:
    versions = copy_versions(tmp_path / "versions")
    (versions / "ab12cd34ef56_rehearsed.py").write_text(revision_text("ab12cd34ef56", upgrade=body))
    return {"MIGRATIONS_DIR": str(versions)}


def test_a_statement_that_fails_on_the_copy_refuses_the_deploy_before_the_backup(
    invoke, mysql_server, database_name, tmp_path
):
    backups = tmp_path / "backups"
    env = {
        **_revision_with(tmp_path, 'op.execute("UPDATE users SET no_such_column = 1")'),
        **WITH_BACKUP,
        "BACKUP_DIR": str(backups),
        "DEPLOY_VERIFY_MODELS": "0",
    }
    assert invoke("db.create", env=env).returncode == 0
    assert invoke("db.upgrade", "-r", HEAD, env=env).returncode == 0
    seed(mysql_server, database_name)
    before, sums = raw_schema(mysql_server, database_name), checksums(mysql_server, database_name)

    check = invoke("db.check", env=env)
    assert check.returncode == 1 and "❌ rehearsal:" in check.stderr and "no_such_column" in check.stderr, check.output
    result = invoke("db.deploy", env=env)
    line = assert_one_error_line(result)
    assert "preflight failed" in line and "ab12cd34ef56" in line and "Unknown column 'no_such_column'" in line, line
    assert "the database is unchanged" in line and "▶ backup" not in result.stdout
    assert not backups.exists() or not list(backups.iterdir())
    assert raw_schema(mysql_server, database_name) == before and checksums(mysql_server, database_name) == sums
    assert version_rows(mysql_server, database_name) == [HEAD]


def test_a_table_the_models_do_not_own_refuses_the_deploy_unless_declared(invoke, mysql_server, database_name):
    assert invoke("db.init").returncode == 0
    mysql_server.execute(
        database_name,
        "CREATE TABLE legacy_audit (id INT PRIMARY KEY, note TEXT)",
        "INSERT INTO legacy_audit VALUES (1, 'kept')",
    )
    before = raw_schema(mysql_server, database_name)

    result = invoke("db.deploy", env=WITH_BACKUP)
    line = assert_one_error_line(result)
    assert "preflight failed" in line and "verify would fail" in line and "legacy_audit" in line, line
    assert "UNMANAGED_TABLES" in line and "▶ backup" not in result.stdout
    assert raw_schema(mysql_server, database_name) == before

    declared = {**WITH_BACKUP, "UNMANAGED_TABLES": "legacy_*, other"}
    deployed = invoke("db.deploy", env=declared)
    assert deployed.returncode == 0, deployed.output
    assert version_rows(mysql_server, database_name) == [HEAD]
    # Verify, drift and autogenerate against the database leave it alone; it keeps its data.
    assert invoke("db.verify", env=declared).returncode == 0
    drift = invoke("db.drift", env=declared)
    assert drift.returncode == 0 and "legacy_audit" not in drift.output, drift.output
    assert "legacy_audit" in invoke("db.drift").output  # not declared: reported
    nothing = invoke("db.revision", "-m", "nothing", env={**declared, "AUTOGENERATE_AGAINST": "database"})
    assert nothing.returncode == 0 and "no revision written" in nothing.stdout, nothing.output
    connection = mysql_server.connect(database_name)
    with connection.cursor() as cursor:
        cursor.execute("SELECT note FROM legacy_audit")
        assert cursor.fetchall() == (("kept",),)
    connection.close()


def test_a_change_made_by_hand_is_found_before_anything_runs(invoke, mysql_server, database_name, tmp_path):
    # The pending revision adds users.mood; someone added it by hand already.
    env = {
        **versions_with(tmp_path, "halfway", "a1b2*"),
        **WITH_BACKUP,
        "BACKUP_DIR": str(tmp_path / "backups"),
        "DEPLOY_VERIFY_MODELS": "0",
    }
    assert invoke("db.create", env=env).returncode == 0
    assert invoke("db.upgrade", "-r", HEAD, env=env).returncode == 0
    mysql_server.execute(database_name, "ALTER TABLE users ADD COLUMN mood VARCHAR(32) NULL")
    before = raw_schema(mysql_server, database_name)
    line = assert_one_error_line(invoke("db.deploy", env=env))
    assert "preflight failed" in line and "Duplicate column name 'mood'" in line, line
    assert raw_schema(mysql_server, database_name) == before
    assert not (tmp_path / "backups").exists() or not list((tmp_path / "backups").iterdir())


def test_the_rehearsal_leaves_no_scratch_schema_and_passes_a_good_revision(
    invoke, mysql_server, database_name, tmp_path
):
    env = {**versions_with(tmp_path, "halfway", "a1b2*"), "DEPLOY_VERIFY_MODELS": "0"}
    assert invoke("db.create", env=env).returncode == 0
    assert invoke("db.upgrade", "-r", HEAD, env=env).returncode == 0
    check = invoke("db.check", env=env)
    assert "✅ rehearsal: the pending revisions run on an empty copy" in check.stdout, check.output
    connection = mysql_server.connect()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s",
            (f"{database_name}\\_rehearsal\\_%",),
        )
        assert cursor.fetchall() == ()
    connection.close()


def test_views_are_copied_so_a_revision_may_use_them(invoke, mysql_server, database_name, tmp_path):
    env = {**_revision_with(tmp_path, 'op.execute("DROP VIEW active_users")'), "DEPLOY_VERIFY_MODELS": "0"}
    assert invoke("db.create", env=env).returncode == 0
    assert invoke("db.upgrade", "-r", HEAD, env=env).returncode == 0
    mysql_server.execute(
        database_name,
        "CREATE VIEW active_users AS SELECT id, username FROM users WHERE is_active",
        "CREATE VIEW active_names AS SELECT username FROM active_users",
    )
    check = invoke("db.check", env=env)
    assert "✅ rehearsal:" in check.stdout, check.output
    # Without the views the same statement fails in the rehearsal, before anything runs.
    mysql_server.execute(database_name, "DROP VIEW active_names", "DROP VIEW active_users")
    line = assert_one_error_line(invoke("db.deploy", env={**env, "DEPLOY_STEPS": "preflight,upgrade,verify"}))
    assert "preflight failed" in line and "active_users" in line, line


def test_a_scratch_database_a_killed_run_left_is_dropped_by_the_next(invoke, mysql_server, database_name, tmp_path):
    env = {**versions_with(tmp_path, "halfway", "a1b2*")}
    assert invoke("db.create", env=env).returncode == 0
    assert invoke("db.upgrade", "-r", HEAD, env=env).returncode == 0
    abandoned, in_use, other = (
        f"{database_name}_rehearsal_deadbeef",
        f"{database_name}_autogen_0badcafe",
        f"{database_name}_backup_deadbeef",
    )
    mysql_server.execute(None, *(f"CREATE DATABASE `{name}`" for name in (abandoned, in_use, other)))
    running = mysql_server.connect()  # a run still using its scratch database holds its lock
    try:
        with running.cursor() as cursor:
            cursor.execute("SELECT GET_LOCK(%s, 0)", (f"alembic-scratch:{in_use}",))
        assert "✅ rehearsal:" in invoke("db.check", env=env).stdout
        connection = mysql_server.connect()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s",
                (f"{database_name}\\_%",),
            )
            assert sorted(row[0] for row in cursor.fetchall()) == sorted([in_use, other])
        connection.close()
    finally:
        running.close()
        mysql_server.execute(None, *(f"DROP DATABASE IF EXISTS `{name}`" for name in (abandoned, in_use, other)))
