"""Every db task through the command line, success and error paths.

Most run it in this process (tests/command_line.py); a few run `python -m invoke` itself, so the
real entry point stays covered."""

from __future__ import annotations

import re

import pytest

from tests.command_line import assert_one_error_line
from tests.helpers import APP_TABLES, HEAD, copy_versions, revision_text, schema_names, tables, version_rows

DB_TASKS = [
    "init",
    "check",
    "current",
    "history",
    "heads",
    "upgrade",
    "downgrade",
    "revision",
    "merge",
    "stamp",
    "create",
    "drop",
    "reset",
    "sql",
    "deploy",
    "deploys",
    "verify",
    "recover",
    "backup",
    "backups",
    "restore",
    "lint",
    "drift",
]


def test_list_shows_every_task_with_a_docstring(invoke_process):
    result = invoke_process("--list")
    assert result.returncode == 0, result.output
    for name in DB_TASKS:
        assert re.search(rf"^\s+db\.{name}\s+\S", result.stdout, re.M), name
    for name in ("up", "down", "status"):
        assert re.search(rf"^\s+sandbox\.{name}\s+\S", result.stdout, re.M), name


@pytest.mark.parametrize("name", DB_TASKS)
def test_help_explains_every_parameter(invoke, name):
    result = invoke("--help", f"db.{name}")
    assert result.returncode == 0, result.output
    options = re.findall(r"^\s+(-\w, )?--[\w-]+(?:=\w+)?\s*(.*)$", result.stdout, re.M)
    assert all(text.strip() for _, text in options), result.stdout


def test_init_creates_the_seven_tables_at_head(invoke_process, mysql_server, database_name):
    result = invoke_process("db.init")
    assert result.returncode == 0, result.output
    assert f"created database {database_name}" in result.stdout
    assert tables(mysql_server, database_name) == ["alembic_version", *APP_TABLES]
    assert version_rows(mysql_server, database_name) == [HEAD]
    again = invoke_process("db.init")
    assert again.returncode == 0 and "nothing to apply" in again.stdout


def test_downgrade_to_base_then_upgrade_again(invoke, mysql_server, database_name):
    assert invoke("db.init").returncode == 0
    down = invoke("db.downgrade", "--revision", "base")
    assert down.returncode == 0, down.output
    assert tables(mysql_server, database_name) == ["alembic_version"]
    assert version_rows(mysql_server, database_name) == []
    up = invoke("db.upgrade")
    assert up.returncode == 0, up.output
    assert HEAD in up.stdout
    assert tables(mysql_server, database_name) == ["alembic_version", *APP_TABLES]


def test_downgrade_defaults_to_one_step(invoke, mysql_server, database_name):
    assert invoke("db.init").returncode == 0
    result = invoke("db.downgrade")
    assert result.returncode == 0, result.output
    assert f"← {HEAD}" in result.stdout and "is at base" in result.stdout
    assert_one_error_line(invoke("db.downgrade"))  # nothing left to revert


def test_check_passes_at_head(invoke):
    assert invoke("db.init").returncode == 0
    result = invoke("db.check")
    assert result.returncode == 0, result.output
    assert "MariaDB" in result.stdout or "MySQL" in result.stdout
    assert f"at head ({HEAD})" in result.stdout
    assert "matches backend/database.py" in result.stdout


def test_check_lists_pending_revisions(invoke, created_database):
    result = invoke("db.check")
    assert result.returncode == 0, result.output
    assert "1 pending" in result.stdout and f"pending: {HEAD}" in result.stdout


def test_check_reports_model_drift(invoke, mysql_server, database_name):
    assert invoke("db.init").returncode == 0
    connection = mysql_server.connect(database_name)
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE knowledge ADD COLUMN stray INT NULL")
    connection.close()
    result = invoke("db.check")
    assert "difference(s) between backend/database.py and the schema" in result.stdout


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"MYSQL_PASSWORD": "wrong"}, "access denied"),
        ({"MYSQL_PORT": "1"}, "cannot reach the MySQL server at 127.0.0.1:1"),
        ({"MYSQL_HOST": "no-such-host.invalid"}, "cannot reach the MySQL server"),
        ({"MYSQL_DATABASE": "no_such_database"}, "does not exist"),
        ({"MYSQL_DATABASE": "", "MYSQL_HOST": ""}, "no database configured"),
        ({"MYSQL_PORT": "port"}, "MYSQL_PORT must be a whole number"),
        ({"APP_ENV": "prod"}, "APP_ENV must be one of"),
    ],
)
def test_check_fails_with_one_line(invoke, overrides, expected):
    line = assert_one_error_line(invoke("db.check", env=overrides))
    assert expected in line


@pytest.mark.parametrize("task", ["db.current", "db.upgrade", "db.history", "db.downgrade", "db.stamp -r head"])
def test_wrong_password_never_shows_the_password(invoke, settings, task):
    result = invoke(*task.split(), env={"MYSQL_PASSWORD": "Sup3r-S3cret-Value"})
    assert_one_error_line(result)
    assert "Sup3r-S3cret-Value" not in result.output
    assert settings.password not in result.output


def test_check_fails_on_several_heads(invoke, tmp_path):
    versions = copy_versions(tmp_path / "versions")
    env = {"MIGRATIONS_DIR": str(versions)}
    assert invoke("db.create", env=env).returncode == 0
    assert invoke("db.revision", "--empty", "-m", "branch one", env=env).returncode == 0
    (versions / "second.py").write_text(revision_text("b2b2b2b2b2b2", doc="branch two"))
    assert "❌ heads: several heads" in assert_one_error_line(invoke("db.check", env=env))
    heads = invoke("db.heads", env=env)
    assert heads.returncode == 1 and "b2b2b2b2b2b2" in heads.stdout
    assert "several heads" in assert_one_error_line(invoke("db.upgrade", env=env))
    merged = invoke("db.merge", "-m", "join branches", env=env)
    assert merged.returncode == 0, merged.output
    assert invoke("db.heads", env=env).returncode == 0
    assert invoke("db.init", env=env).returncode == 0
    assert invoke("db.check", env=env).returncode == 0


def test_merge_with_one_head_fails(invoke):
    assert "only one head" in assert_one_error_line(invoke("db.merge"))


def test_current_and_history_mark_applied_and_pending(invoke, tmp_path):
    versions = copy_versions(tmp_path / "versions")
    env = {"MIGRATIONS_DIR": str(versions)}
    assert invoke("db.create", env=env).returncode == 0
    assert "base (no revision applied)" in invoke("db.current", env=env).stdout
    assert invoke("db.upgrade", env=env).returncode == 0
    assert invoke("db.revision", "--empty", "-m", "add mood tags", env=env).returncode == 0
    history = invoke("db.history", env=env)
    assert history.returncode == 0, history.output
    lines = history.stdout.splitlines()
    assert lines[0].startswith("⏳") and "(head)" in lines[0] and "add mood tags" in lines[0]
    assert lines[1].startswith("✅") and "(current)" in lines[1] and HEAD in lines[1]
    current = invoke("db.current", env=env)
    assert HEAD in current.stdout and "(head)" not in current.stdout
    offline = invoke("db.history", "--offline", env={**env, "MYSQL_PORT": "1"})
    assert offline.returncode == 0 and "add mood tags" in offline.stdout


def test_upgrade_to_a_revision_and_bad_revisions(invoke, mysql_server, database_name):
    assert invoke("db.create").returncode == 0
    assert invoke("db.upgrade", "--revision", HEAD).returncode == 0
    assert invoke("db.downgrade", "-r", "base").returncode == 0
    for bad, expected in (
        ("abcdef123456", "unknown revision"),
        ("x'; DROP TABLE users;--", "malformed revision"),
        ("", "malformed revision"),
    ):
        line = assert_one_error_line(invoke("db.upgrade", "--revision", bad))
        assert expected in line
    assert tables(mysql_server, database_name) == ["alembic_version"]


def test_upgrade_refuses_a_database_at_an_unknown_revision(invoke, mysql_server, database_name):
    assert invoke("db.init").returncode == 0
    connection = mysql_server.connect(database_name)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE alembic_version SET version_num = 'feedfacecafe'")
    connection.close()
    assert "feedfacecafe" in assert_one_error_line(invoke("db.upgrade"))
    assert "feedfacecafe" in assert_one_error_line(invoke("db.check"))


def test_revision_autogenerates_against_a_scratch_database(invoke, mysql_server, database_name, tmp_path):
    versions = copy_versions(tmp_path / "versions")
    env = {"MIGRATIONS_DIR": str(versions)}
    # The developer's own database is neither created nor at head: it does not matter.
    same = invoke("db.revision", "-m", "no change", env=env)
    assert same.returncode == 0 and "no revision written" in same.stdout, same.output
    assert len(list(versions.glob("*.py"))) == 1
    # Revisions that lack an index of the models: autogenerate proposes it.
    [initial] = versions.glob("*.py")
    initial.write_text(
        "\n".join(line for line in initial.read_text().splitlines() if "ix_emotion_analysis_emotion" not in line)
    )
    result = invoke("db.revision", "-m", "restore emotion index", env=env)
    assert result.returncode == 0, result.output
    [written] = [p for p in versions.glob("*.py") if "restore_emotion_index" in p.name]
    assert re.match(r"\d{8}_[0-9a-f]{12}_restore_emotion_index\.py", written.name)
    body = written.read_text()
    assert "op.create_index(op.f('ix_emotion_analysis_emotion')" in body
    assert "def downgrade() -> None:" in body
    assert database_name not in schema_names(mysql_server)
    assert not [name for name in schema_names(mysql_server) if "_autogen_" in name]  # the scratch database is gone


def test_revision_against_the_configured_database(invoke, mysql_server, database_name, tmp_path):
    versions = copy_versions(tmp_path / "versions")
    env = {"MIGRATIONS_DIR": str(versions), "AUTOGENERATE_AGAINST": "database"}
    assert invoke("db.init", env=env).returncode == 0
    connection = mysql_server.connect(database_name)
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX ix_emotion_analysis_emotion ON emotion_analysis")
    connection.close()
    result = invoke("db.revision", "-m", "restore emotion index", env=env)
    assert result.returncode == 0, result.output
    assert len(list(versions.glob("*restore_emotion_index.py"))) == 1


def test_revision_needs_a_message_and_an_up_to_date_database(invoke, created_database, tmp_path):
    env = {"MIGRATIONS_DIR": str(copy_versions(tmp_path / "versions")), "AUTOGENERATE_AGAINST": "database"}
    assert "needs a message" in assert_one_error_line(invoke("db.revision", env=env))
    assert "not at head" in assert_one_error_line(invoke("db.revision", "-m", "x", env=env))


REVISION_MESSAGES = [
    ('fix """x"""', 'fix """x"""'),
    (r"a \N b", r"a \N b"),
    ("ends in a backslash \\", "ends in a backslash \\"),
    ('quoted "name"', 'quoted "name"'),
    (r"\x41 \u00e9 {x} ${x} %(x)s <%text> ## '''", r"\x41 \u00e9 {x} ${x} %(x)s <%text> ## '''"),
    ("两行\n消息\t😀", "两行 消息 😀"),
]


def test_any_message_makes_a_valid_revision(invoke, tmp_path):
    """The message lands in docstrings: whatever it holds, the file loads and the message reads back."""
    versions = copy_versions(tmp_path / "versions")
    env = {"MIGRATIONS_DIR": str(versions)}
    for message, _ in REVISION_MESSAGES:
        result = invoke("db.revision", "--empty", "-m", message, env=env)
        assert result.returncode == 0, result.output
    history = invoke("db.history", "--offline", env=env)
    assert history.returncode == 0, history.output
    entries = [re.match(r"\s*\S+ -> \w+(?: \(.*?\))?  (.*)$", line) for line in history.stdout.splitlines()]
    assert all(entries), history.stdout
    listed = [entry.group(1) for entry in entries if entry]
    assert listed[: len(REVISION_MESSAGES)] == [shown for _, shown in reversed(REVISION_MESSAGES)]
    for path in versions.glob("*.py"):
        namespace: dict = {}
        exec(compile(path.read_text(), str(path), "exec"), namespace)
        assert namespace["upgrade"].__doc__.startswith("Apply: "), path.name


def test_stamp(invoke, mysql_server, database_name):
    assert invoke("db.create").returncode == 0
    result = invoke("db.stamp", "-r", "head")
    assert result.returncode == 0, result.output
    assert version_rows(mysql_server, database_name) == [HEAD]
    assert tables(mysql_server, database_name) == ["alembic_version"]  # nothing ran
    assert invoke("db.stamp", "--revision", "base").returncode == 0
    assert version_rows(mysql_server, database_name) == []
    assert "say which revision" in assert_one_error_line(invoke("db.stamp"))
    assert "unknown revision" in assert_one_error_line(invoke("db.stamp", "-r", "0123456789ab"))


def test_create_and_drop(invoke, mysql_server, database_name):
    created = invoke("db.create")
    assert created.returncode == 0 and "created database" in created.stdout
    assert "exists" in invoke("db.create").stdout
    refused = invoke("db.drop")  # no terminal, no --yes
    assert "needs confirmation" in assert_one_error_line(refused)
    assert database_name in schema_names(mysql_server)
    dropped = invoke("db.drop", "--yes")
    assert dropped.returncode == 0, dropped.output
    assert database_name not in schema_names(mysql_server)


def test_production_is_protected(invoke, mysql_server, database_name):
    assert invoke("db.init").returncode == 0
    production = {"APP_ENV": "production"}
    for args in (("db.drop", "--yes"), ("db.reset", "--yes"), ("db.drop",), ("db.drop", "--allow-production")):
        line = assert_one_error_line(invoke(*args, env=production))
        assert "protected production environment" in line
    assert tables(mysql_server, database_name) == ["alembic_version", *APP_TABLES]
    result = invoke("db.drop", "--yes", "--allow-production", env=production)
    assert result.returncode == 0, result.output
    assert database_name not in schema_names(mysql_server)


def test_reset_drops_data_and_rebuilds(invoke, mysql_server, database_name):
    assert invoke("db.init").returncode == 0
    connection = mysql_server.connect(database_name)
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO users (username, password_hash) VALUES ('amy', 'x')")
    connection.close()
    result = invoke("db.reset", "--yes")
    assert result.returncode == 0, result.output
    assert tables(mysql_server, database_name) == ["alembic_version", *APP_TABLES]
    connection = mysql_server.connect(database_name)
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM users")
        assert cursor.fetchone()[0] == 0
    connection.close()


def test_hostile_database_names(invoke, mysql_server):
    name = "e`vil; DROP DATABASE mysql;--"
    try:
        result = invoke("db.init", env={"MYSQL_DATABASE": name})
        assert result.returncode == 0, result.output
        assert tables(mysql_server, name) == ["alembic_version", *APP_TABLES]
        assert invoke("db.drop", "--yes", env={"MYSQL_DATABASE": name}).returncode == 0
        assert name not in schema_names(mysql_server)
        assert "mysql" in schema_names(mysql_server)
    finally:
        connection = mysql_server.connect()
        with connection.cursor() as cursor:
            cursor.execute("DROP DATABASE IF EXISTS `e``vil; DROP DATABASE mysql;--`")
        connection.close()
    for bad in ("x" * 65, "trailing ", "-rf"):
        line = assert_one_error_line(invoke("db.create", env={"MYSQL_DATABASE": bad}))
        assert "database name" in line


def test_sql_renders_without_touching_the_database(invoke, mysql_server, database_name):
    assert invoke("db.create").returncode == 0
    result = invoke("db.sql")
    assert result.returncode == 0, result.output
    assert "CREATE TABLE users" in result.stdout and "CREATE TABLE chat_messages" in result.stdout
    assert (
        f"UPDATE alembic_version SET version_num='{HEAD}'" in result.stdout
        or f"INSERT INTO alembic_version (version_num) VALUES ('{HEAD}')" in result.stdout
    )
    assert tables(mysql_server, database_name) == []
    down = invoke("db.sql", "--downgrade", "--start", HEAD, "--end", "base")
    assert down.returncode == 0 and "DROP TABLE users" in down.stdout
    # No server needed for an explicit range.
    offline = invoke("db.sql", "--start", "base", env={"MYSQL_PORT": "1"})
    assert offline.returncode == 0 and "CREATE TABLE knowledge" in offline.stdout
    assert invoke("db.upgrade").returncode == 0
    assert "nothing to run" in invoke("db.sql").stdout


def test_debug_shows_the_traceback(invoke_process):
    result = invoke_process("db.check", env={"MYSQL_PORT": "1", "DB_DEBUG": "1"})
    assert result.returncode != 0
    assert "Traceback" in result.stderr
