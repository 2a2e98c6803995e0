"""The online-DDL guard and the metadata-lock report, on the real server."""

from __future__ import annotations

from dataclasses import replace

import pytest

from backend.dbops import ddl_guard, mdl, migrate
from backend.dbops.connection import connect
from backend.dbops.errors import DbOpsError
from tests.command_line import assert_one_error_line
from tests.helpers import HEAD, REVISIONS, copy_versions, schema_names, seed, version_rows, versions_with

# The refusal is what these tests look at; the online path is in tests/test_online_ddl.py.
NO_BACKUP = {"DEPLOY_STEPS": "preflight,upgrade,verify", "DEPLOY_VERIFY_MODELS": "0", "ONLINE_SCHEMA_CHANGE": "refuse"}


def _analyze(server, database: str) -> None:
    connection = server.connect(database)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE TABLE chat_messages, users")  # TABLE_ROWS is an estimate until then
        cursor.fetchall()
    connection.close()


@pytest.fixture
def seeded(invoke, mysql_server, database_name, tmp_path):
    env = {**versions_with(tmp_path, "guard_copy"), **NO_BACKUP}
    assert invoke("db.create", env=env).returncode == 0
    assert invoke("db.upgrade", "-r", HEAD, env=env).returncode == 0
    seed(mysql_server, database_name)
    _analyze(mysql_server, database_name)
    return env


def test_a_table_copy_above_the_limit_is_refused_before_anything_runs(invoke, mysql_server, database_name, seeded):
    result = invoke("db.deploy", env={**seeded, "DDL_GUARD_MAX_ROWS": "10"})
    line = assert_one_error_line(result)
    assert "would copy or lock chat_messages" in line and "ddl-guard: allow-copy" in line
    assert version_rows(mysql_server, database_name) == [HEAD]
    # Below the limit the same revision goes through, and the plan says how it runs.
    allowed = invoke("db.deploy", env={**seeded, "DDL_GUARD_MAX_ROWS": "1000000"})
    assert allowed.returncode == 0, allowed.output
    assert "ddl: f6a7b8c9d0e1 chat_messages" in allowed.stdout and ": copy" in allowed.stdout


def test_a_revision_can_opt_in_to_a_copy(invoke, mysql_server, database_name, seeded):
    [path] = [p for p in __import__("pathlib").Path(seeded["MIGRATIONS_DIR"]).glob("f6a7*.py")]
    path.write_text(path.read_text() + "\n# ddl-guard: allow-copy the table is small in production too\n")
    result = invoke("db.deploy", env={**seeded, "DDL_GUARD_MAX_ROWS": "10"})
    assert result.returncode == 0, result.output
    assert version_rows(mysql_server, database_name) == ["f6a7b8c9d0e1"]


def test_online_changes_are_classified(created_database, mysql_server, tmp_path):
    versions = copy_versions(tmp_path / "versions")
    for path in (REVISIONS / "halfway").glob("a1b2*.py"):  # adds a nullable column: INSTANT where supported
        (versions / path.name).write_text(path.read_text())
    settings = replace(created_database, versions_dir=versions)
    migrate.upgrade(settings, HEAD)
    seed(mysql_server, settings.database)
    [statement] = ddl_guard.inspect_pending(settings)
    assert statement.table == "users" and statement.algorithm in (ddl_guard.INSTANT, ddl_guard.INPLACE)
    assert statement.route == "" and ddl_guard.refused([statement]) == []
    assert not [name for name in schema_names(mysql_server) if "_rehearsal_" in name]  # the scratch schema is gone


def test_split_statements():
    sql = "-- comment\nCREATE TABLE a (\n  id INT\n);\n\nALTER TABLE a ADD COLUMN b INT;\n"
    assert ddl_guard.split_statements(sql) == ["CREATE TABLE a (\n  id INT\n)", "ALTER TABLE a ADD COLUMN b INT"]


@pytest.mark.parametrize(
    ("sql", "ddl"),
    [
        ("/* widen */ ALTER TABLE users ADD COLUMN x INT", True),
        ("-- widen\n# twice\ndrop table users", True),
        ("  LOCK TABLES users WRITE", True),
        ("SELECT 'ALTER TABLE users'", False),
        ("-- ALTER TABLE users\nUPDATE users SET nickname = NULL", False),
    ],
)
def test_ddl_is_read_after_comments(sql, ddl):
    assert mdl.is_ddl(sql) is ddl


def test_the_guard_sees_a_ddl_behind_a_comment(created_database, mysql_server):
    settings = replace(created_database, ddl_wait_seconds=0, ddl_retries=0)
    owner = mysql_server.connect(settings.database)
    with owner.cursor() as cursor:
        cursor.execute("CREATE TABLE notes (id INT PRIMARY KEY)")
    owner.close()
    holder = mysql_server.connect(settings.database, autocommit=False)
    with holder.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM notes")  # an open transaction holds a metadata lock on notes
    try:
        with pytest.raises(DbOpsError) as raised, connect(settings, guard_ddl=True) as connection:
            connection.exec_driver_sql("-- widen the notes\nALTER TABLE notes ADD COLUMN body TEXT")
        # The guard's report, not the server's bare lock wait timeout of an unguarded statement.
        assert "DDL waited for a metadata lock 1 times" in str(raised.value)
    finally:
        holder.rollback()
        holder.close()


def test_a_ddl_waiting_on_a_metadata_lock_names_the_holder(invoke, mysql_server, database_name, tmp_path):
    env = {**versions_with(tmp_path, "halfway"), "DDL_WAIT_SECONDS": "1", "DDL_RETRIES": "1"}
    assert invoke("db.create", env=env).returncode == 0
    assert invoke("db.upgrade", "-r", HEAD, env=env).returncode == 0
    holder = mysql_server.connect(database_name, autocommit=False)
    with holder.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM users")  # an open transaction holds a metadata lock on users
        cursor.execute("SELECT CONNECTION_ID()")
        holder_id = cursor.fetchone()[0]
    try:
        result = invoke("db.upgrade", "-r", "a1b2c3d4e5f6", env=env)
        line = assert_one_error_line(result)
        assert "metadata lock" in line and f"session {holder_id} of" in line and "open transaction" in line
    finally:
        holder.rollback()
        holder.close()
    assert version_rows(mysql_server, database_name) == [HEAD]
