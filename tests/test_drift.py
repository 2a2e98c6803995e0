"""db.drift: models, migrations (scratch database at head) and the live database, compared in pairs."""

from __future__ import annotations

import json
from dataclasses import replace

from backend.dbops import migrate
from backend.dbops.admin import create_database
from backend.dbops.drift import LIVE, MIGRATIONS, MODELS, drift
from backend.dbops.schema import Difference, normalize_default, normalize_type
from tests.command_line import assert_one_error_line
from tests.helpers import HEAD, copy_versions, revision_text

MISSING_INDEX_REV = "ccccccccccc3"
# A revision that leaves out an index the models have: the migrations then disagree with the models.
MISSING_INDEX = revision_text(
    MISSING_INDEX_REV,
    upgrade='op.drop_index("ix_system_logs_created_at", table_name="system_logs")',
    downgrade='op.create_index("ix_system_logs_created_at", "system_logs", ["created_at"])',
    doc="Drop an index the models still declare.",
)


def at_head(settings):
    create_database(settings)
    migrate.upgrade(settings)
    return settings


def test_no_drift_at_head(settings, mysql_server):
    report = drift(at_head(settings))
    assert not report.drifted, report.text_lines()
    assert [c.name for c in report.comparisons] == ["models-vs-migrations", "models-vs-live", "migrations-vs-live"]
    assert report.head == HEAD and report.live_revision == (HEAD,) and report.notes == []
    assert "No drift" in report.to_markdown()
    connection = mysql_server.connect()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s",
            (settings.database + "_autogen_%",),
        )
        assert cursor.fetchall() == ()  # the scratch database is gone
    connection.close()


def test_column_added_by_hand_shows_against_live(settings, mysql_server):
    at_head(settings)
    mysql_server.execute(settings.database, "ALTER TABLE users ADD COLUMN favourite_color VARCHAR(20) NULL")
    report = drift(settings)
    assert report.comparison(MODELS, MIGRATIONS).differences == []
    assert report.comparison(MIGRATIONS, LIVE).differences == [
        Difference("users", "column favourite_color", "only in live (varchar(20))")
    ]
    assert report.comparison(MODELS, LIVE).differences == [
        Difference("users", "column favourite_color", "only in live (varchar(20))")
    ]


def test_hand_changes_of_types_indexes_and_defaults(settings, mysql_server):
    at_head(settings)
    mysql_server.execute(
        settings.database,
        "ALTER TABLE knowledge MODIFY title VARCHAR(250) NOT NULL",
        "CREATE INDEX ix_by_hand ON chat_messages (emotion)",
        "ALTER TABLE chat_sessions ALTER COLUMN status SET DEFAULT 'closed'",
    )
    live = {(d.table, d.item): d.detail for d in drift(settings).comparison(MIGRATIONS, LIVE).differences}
    assert live[("knowledge", "column title")] == "type varchar(200) in migrations, varchar(250) in live"
    assert live[("chat_messages", "index ix_by_hand")] == "only in live (emotion)"
    assert live[("chat_sessions", "column status")] == "default active in migrations, closed in live"


def test_models_only_change_shows_against_the_migrations(settings, tmp_path):
    folder = copy_versions(tmp_path / "versions")
    (folder / f"{MISSING_INDEX_REV}_drop_index.py").write_text(MISSING_INDEX)
    configured = at_head(replace(settings, versions_dir=folder))
    report = drift(configured)
    expected = Difference("system_logs", "index ix_system_logs_created_at", "only in models (created_at)")
    assert report.comparison(MODELS, MIGRATIONS).differences == [expected]
    assert report.comparison(MODELS, LIVE).differences == [
        Difference("system_logs", "index ix_system_logs_created_at", "only in models (created_at)")
    ]
    assert report.comparison(MIGRATIONS, LIVE).differences == []


def test_live_behind_head_is_noted(settings, tmp_path):
    folder = copy_versions(tmp_path / "versions")
    (folder / f"{MISSING_INDEX_REV}_drop_index.py").write_text(MISSING_INDEX)
    configured = replace(settings, versions_dir=folder)
    create_database(configured)
    migrate.upgrade(configured, HEAD)
    report = drift(configured)
    assert report.comparison(MIGRATIONS, LIVE).differences == [
        Difference("system_logs", "index ix_system_logs_created_at", "only in live (created_at)")
    ]
    assert "not at head" in report.notes[0]


def test_quirks_are_normalized():
    assert normalize_type("TINYINT(1)") == normalize_type("BOOL") == "tinyint"
    assert normalize_type("INTEGER(11)") == normalize_type("int") == "int"
    assert normalize_type("NUMERIC(4, 3)") == "decimal(4,3)"
    assert normalize_type("VARCHAR(10) COLLATE utf8mb4_bin") == "varchar(10)"
    assert normalize_default("current_timestamp()") == normalize_default("CURRENT_TIMESTAMP") == "CURRENT_TIMESTAMP"
    assert normalize_default("'active'") == normalize_default("active") == "active"
    assert normalize_default("NULL") is None


def test_formats_and_exit_codes(invoke, mysql_server, database_name):
    assert invoke("db.init").returncode == 0
    clean = invoke("db.drift")
    assert clean.returncode == 0, clean.output
    assert "✅ models vs migrations: no differences" in clean.stdout and "✅ no drift" in clean.stdout

    mysql_server.execute(database_name, "ALTER TABLE users ADD COLUMN favourite_color VARCHAR(20) NULL")
    text = invoke("db.drift")
    line = assert_one_error_line(text)
    assert "schema drift: models vs live, migrations vs live" in line
    assert "⚠️  migrations vs live: 1 difference(s)" in text.stdout
    assert "users: column favourite_color: only in live (varchar(20))" in text.stdout

    as_json = invoke("db.drift", "--format", "json")
    assert as_json.returncode == 1
    data = json.loads(as_json.stdout)
    assert data["drifted"] is True and data["live_revision"] == [HEAD]
    by_name = {comparison["name"]: comparison["differences"] for comparison in data["comparisons"]}
    assert by_name["models-vs-migrations"] == []
    assert by_name["migrations-vs-live"] == [
        {"table": "users", "item": "column favourite_color", "detail": "only in live (varchar(20))"}
    ]

    markdown = invoke("db.drift", "--format", "markdown")
    assert markdown.returncode == 1
    assert "| comparison | table | what | difference |" in markdown.stdout
    assert "| migrations vs live | `users` | column favourite_color | only in live (varchar(20)) |" in markdown.stdout

    assert "--format must be" in assert_one_error_line(invoke("db.drift", "--format", "html"))


def test_missing_database_is_one_error_line(invoke):
    line = assert_one_error_line(invoke("db.drift"))
    assert "does not exist" in line
