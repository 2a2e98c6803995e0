"""db.lint: every rule on a revision that triggers it and one that does not, silencing, output, CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from backend.config import Settings
from backend.dbops import migrate
from backend.dbops.lint import RULES, lint
from tests.command_line import assert_one_error_line
from tests.helpers import HEAD, copy_versions, revision_text

REV = "aaaaaaaaaaa1"
REV2 = "bbbbbbbbbbb2"

# Reverting is not what most tests are about; a statement keeps missing-downgrade quiet.
DOWNGRADE = 'op.execute("DO 0")'


def lint_revision(upgrade: str, downgrade: str = DOWNGRADE, rev: str = REV, down: str = HEAD) -> str:
    return revision_text(rev, down, upgrade, downgrade)


def versions(tmp_path: Path, *files: tuple[str, str]) -> Path:
    """A copy of the project's revisions plus (revision id, text) files."""
    folder = copy_versions(tmp_path / "versions")
    for rev, text in files:
        (folder / f"{rev}_test.py").write_text(text)
    return folder


def offline(tmp_path: Path, upgrade: str, downgrade: str = DOWNGRADE, **kwargs):
    """Lint one test revision without any database (schema replayed from the revisions)."""
    folder = versions(tmp_path, (REV, lint_revision(upgrade, downgrade)))
    return lint(Settings(versions_dir=folder), [REV], database_checks=False, **kwargs)


def rules(report, rule: str | None = None) -> list:
    return [finding for finding in report.findings if rule is None or finding.rule == rule]


def line_of(path: Path, needle: str) -> int:
    return next(number for number, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


# ---------------------------------------------------------------- the project's own revisions


def test_project_revisions_are_clean(tmp_path):
    report = lint(Settings(versions_dir=copy_versions(tmp_path / "v")), database_checks=False)
    assert report.revisions == [HEAD]
    assert report.findings == [] and report.ok


def test_the_alembic_internals_lint_records_operations_with():
    """lint runs upgrade() against a recording Operations through Alembic internals (pinned in
    requirements.txt): _install_proxy/_remove_proxy bind the module-level `op` to an instance,
    every operation calls that instance's `invoke` attribute, and from inside invoke the frames
    (sys._getframe) lead back to the revision's line. An Alembic release that changes any of this
    fails here instead of leaving lint with no operations and no findings."""
    import io
    import sys
    from types import CodeType, FrameType

    from alembic.operations import Operations, ops
    from alembic.runtime.migration import MigrationContext

    from alembic import op

    context = MigrationContext.configure(dialect_name="mysql", opts={"as_sql": True, "output_buffer": io.StringIO()})
    operations = Operations(context)
    seen: list[tuple[type, bool]] = []

    def invoke(operation):
        frame: FrameType | None = sys._getframe(1)
        callers: list[CodeType] = []
        while frame is not None:
            callers.append(frame.f_code)
            frame = frame.f_back
        seen.append((type(operation), test_the_alembic_internals_lint_records_operations_with.__code__ in callers))

    operations.invoke = invoke  # type: ignore[method-assign]  # on the instance, as lint's capture does
    operations._install_proxy()
    try:
        op.drop_table("knowledge")
        op.execute("DO 0")
    finally:
        operations._remove_proxy()
    assert seen == [(ops.DropTableOp, True), (ops.ExecuteSQLOp, True)]
    with pytest.raises(AttributeError):
        op.drop_table("knowledge")  # the proxy is gone


# ---------------------------------------------------------------- data loss and renames


def test_drop_table(tmp_path):
    report = offline(tmp_path, 'op.drop_table("knowledge")')
    [finding] = rules(report)
    assert (finding.rule, finding.severity, finding.revision) == ("drop-table", "error", REV)
    assert "knowledge" in finding.message and "expand/contract" in finding.fix
    assert finding.line == line_of(tmp_path / "versions" / f"{REV}_test.py", "op.drop_table")
    assert not report.ok and report.errors == [finding]


def test_drop_table_created_in_the_same_revision_is_fine(tmp_path):
    report = offline(
        tmp_path,
        """
        op.create_table("scratch_rows", sa.Column("id", sa.Integer, primary_key=True))
        op.drop_table("scratch_rows")
    """,
    )
    assert rules(report) == []


def test_drop_column(tmp_path):
    report = offline(tmp_path, 'op.drop_column("users", "nickname")')
    [finding] = rules(report)
    assert (finding.rule, finding.severity) == ("drop-column", "error")
    assert "users.nickname" in finding.message and "two releases" in finding.fix


def test_drop_column_in_raw_sql(tmp_path):
    report = offline(tmp_path, 'op.execute("ALTER TABLE `users` DROP COLUMN nickname, DROP INDEX uq_users_email")')
    assert [finding.rule for finding in rules(report)] == ["drop-column"]


# Raw SQL is read with the one MySQL tokenizer (backend/dbops/sql.py): quotes before comments.
@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # '#' inside a string is no comment: the DROP after it is seen
        ("UPDATE knowledge SET tags = 'see #42'; DROP TABLE knowledge", ["drop-table", "data-update-mixed-with-ddl"]),
        # nor is '--' inside a string
        (
            "UPDATE users SET nickname = '-- x'; ALTER TABLE users DROP COLUMN email",
            ["drop-column", "data-update-mixed-with-ddl"],
        ),
        # a single quote inside a double-quoted string neither opens a string nor ends a statement
        ('UPDATE users SET nickname = \\"it\'s; DROP TABLE knowledge\\"', []),
        # real comments still hide what they hold
        ("UPDATE users SET nickname = NULL; -- DROP TABLE knowledge\\n/* ALTER TABLE users DROP email */ DO 0", []),
    ],
)
def test_raw_sql_strings_and_comments(tmp_path, sql, expected):
    report = offline(tmp_path, f'op.execute("{sql}")')
    assert [finding.rule for finding in rules(report)] == expected


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("DROP TABLE IF EXISTS `knowledge`, system_logs", ["drop-table", "drop-table"]),
        ("DROP TEMPORARY TABLE IF EXISTS knowledge", []),  # never the permanent table
        ("RENAME TABLE knowledge TO articles, `system_logs` TO logs", ["rename-table", "rename-table"]),
        ("ALTER TABLE knowledge RENAME TO articles", ["rename-table"]),
        ("ALTER TABLE users RENAME COLUMN nickname TO display_name", ["rename-column"]),
        ("ALTER TABLE users CHANGE nickname display_name VARCHAR(100)", ["rename-column"]),
        ("ALTER TABLE users CHANGE COLUMN nickname nickname VARCHAR(120)", []),
        ("ALTER TABLE users DROP COLUMN IF EXISTS nickname, DROP avatar_url", ["drop-column", "drop-column"]),
        ("ALTER TABLE users DROP INDEX uq_users_email, DROP CHECK ck, RENAME INDEX a TO b", []),
        ("ALTER TABLE users ADD COLUMN mood VARCHAR(32) NOT NULL", ["not-null-without-default"]),
        ("ALTER TABLE users ADD mood VARCHAR(32) NOT NULL DEFAULT 'calm', ADD INDEX ix_mood (mood)", []),
        ("ALTER TABLE users ADD COLUMN mood VARCHAR(32) NULL", []),
        ("ALTER TABLE users ADD UNIQUE KEY uq_users_nickname (nickname)", ["add-unique-constraint"]),
        ("ALTER TABLE users ADD CONSTRAINT uq_nick UNIQUE (nickname(20), avatar_url)", ["add-unique-constraint"]),
        ("CREATE UNIQUE INDEX uq_users_nickname ON users (nickname)", ["add-unique-constraint"]),
        ("DROP INDEX ix_emotion_analysis_user_id_created_at ON emotion_analysis", ["drop-index-needed-by-fk"]),
        ("ALTER TABLE emotion_analysis DROP KEY ix_emotion_analysis_user_id_created_at", ["drop-index-needed-by-fk"]),
        (
            "ALTER TABLE emotion_analysis DROP FOREIGN KEY fk_emotion_analysis_user_id_users, "
            "DROP INDEX ix_emotion_analysis_user_id_created_at",
            [],
        ),
    ],
)
def test_raw_sql_operations(tmp_path, sql, expected):
    report = offline(tmp_path, f'op.execute("{sql}")')
    assert [finding.rule for finding in rules(report)] == expected


def test_raw_sql_table_copies_are_noted_without_a_database(tmp_path):
    sql = (
        "ALTER TABLE users MODIFY nickname VARCHAR(150), CONVERT TO CHARACTER SET utf8mb4; "
        "ALTER TABLE knowledge DEFAULT CHARSET = utf8mb4"
    )
    report = offline(tmp_path, f'op.execute("{sql}")', large_table_rows=0)
    assert rules(report) == []
    [note] = [note for note in report.notes if "large-table-copy not checked" in note]
    assert "users (MODIFY nickname), users (a character set change), knowledge (a character set change)" in note


def test_drop_column_added_in_the_same_revision_is_fine(tmp_path):
    report = offline(
        tmp_path,
        """
        op.add_column("users", sa.Column("scratch", sa.Integer, nullable=True))
        op.drop_column("users", "scratch")
    """,
    )
    assert rules(report) == []


def test_rename_column(tmp_path):
    report = offline(
        tmp_path,
        """
        op.alter_column("users", "nickname", new_column_name="display_name",
                        existing_type=sa.String(100), existing_nullable=True)
    """,
    )
    [finding] = rules(report)
    assert (finding.rule, finding.severity) == ("rename-column", "error")
    assert "users.nickname to display_name" in finding.message


def test_alter_column_without_rename_is_fine(tmp_path):
    report = offline(
        tmp_path,
        """
        op.alter_column("users", "nickname", type_=sa.String(150), existing_type=sa.String(100),
                        existing_nullable=True)
    """,
    )
    assert rules(report) == []


def test_rename_table(tmp_path):
    report = offline(tmp_path, 'op.rename_table("knowledge", "articles")')
    [finding] = rules(report)
    assert (finding.rule, finding.severity) == ("rename-table", "error")
    raw = offline(tmp_path / "raw", 'op.execute("RENAME TABLE knowledge TO articles")')
    assert [finding.rule for finding in rules(raw)] == ["rename-table"]


def test_rename_of_a_new_table_is_fine(tmp_path):
    report = offline(
        tmp_path,
        """
        op.create_table("drafts", sa.Column("id", sa.Integer, primary_key=True))
        op.rename_table("drafts", "articles")
    """,
    )
    assert rules(report) == []


# ---------------------------------------------------------------- types


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            'op.alter_column("users", "nickname", type_=sa.String(50), existing_type=sa.String(100))',
            "VARCHAR(100) to VARCHAR(50)",
        ),
        # existing_type left out: the earlier schema says what the column was
        ('op.alter_column("chat_sessions", "message_count", type_=sa.SmallInteger())', "INTEGER to SMALLINT"),
        ('op.alter_column("knowledge", "content", type_=sa.String(2000))', "TEXT to VARCHAR(2000)"),
        ('op.alter_column("emotion_analysis", "intensity", type_=sa.Numeric(3, 2))', "decimals beyond 2"),
    ],
)
def test_narrow_type(tmp_path, change, expected):
    [finding] = rules(offline(tmp_path, change))
    assert (finding.rule, finding.severity) == ("narrow-type", "error")
    assert expected in finding.message


@pytest.mark.parametrize(
    "change",
    [
        'op.alter_column("users", "nickname", type_=sa.String(200), existing_type=sa.String(100))',
        'op.alter_column("chat_sessions", "message_count", type_=sa.BigInteger())',
        'op.alter_column("emotion_analysis", "intensity", type_=sa.Numeric(6, 3))',
    ],
)
def test_widening_is_fine(tmp_path, change):
    assert rules(offline(tmp_path, change)) == []


def test_enum_value_removed(tmp_path):
    report = offline(
        tmp_path,
        """
        op.alter_column("chat_sessions", "status", type_=sa.Enum("active", "closed", name="chat_session_status"),
                        existing_nullable=False, existing_server_default=sa.text("'active'"))
    """,
    )
    [finding] = rules(report)
    assert (finding.rule, finding.severity) == ("enum-values-removed-or-reordered", "error")
    assert "'archived'" in finding.message


def test_enum_values_reordered(tmp_path):
    report = offline(
        tmp_path,
        """
        op.alter_column("chat_sessions", "status",
                        type_=sa.Enum("closed", "active", "archived", name="chat_session_status"),
                        existing_nullable=False, existing_server_default=sa.text("'active'"))
    """,
    )
    [finding] = rules(report)
    assert finding.rule == "enum-values-removed-or-reordered" and "reorders" in finding.message


def test_enum_value_appended_is_fine(tmp_path):
    report = offline(
        tmp_path,
        """
        op.alter_column("chat_sessions", "status",
                        type_=sa.Enum("active", "archived", "closed", "deleted", name="chat_session_status"),
                        existing_nullable=False, existing_server_default=sa.text("'active'"))
    """,
    )
    assert rules(report) == []


# ---------------------------------------------------------------- NOT NULL


def test_not_null_column_without_default(tmp_path):
    report = offline(tmp_path, 'op.add_column("users", sa.Column("mood", sa.String(32), nullable=False))')
    [finding] = rules(report)
    assert (finding.rule, finding.severity) == ("not-null-without-default", "error")
    assert "users.mood" in finding.message and "backfill" in finding.fix


def test_existing_column_made_not_null_without_default(tmp_path):
    report = offline(
        tmp_path,
        """
        op.alter_column("users", "nickname", nullable=False, existing_type=sa.String(100))
    """,
    )
    [finding] = rules(report)
    assert finding.rule == "not-null-without-default" and "existing NULLs" in finding.message


def test_not_null_with_default_or_on_a_new_table_is_fine(tmp_path):
    report = offline(
        tmp_path,
        """
        op.add_column("users", sa.Column("mood", sa.String(32), nullable=False, server_default="calm"))
        op.alter_column("users", "nickname", nullable=False, server_default="", existing_type=sa.String(100))
        op.create_table("moods", sa.Column("id", sa.Integer, primary_key=True))
        op.add_column("moods", sa.Column("name", sa.String(32), nullable=False))
    """,
    )
    assert rules(report) == []


# ---------------------------------------------------------------- indexes and foreign keys


DROP_FK_INDEX = 'op.drop_index("ix_emotion_analysis_user_id_created_at", table_name="emotion_analysis")'


def test_drop_index_needed_by_a_foreign_key(tmp_path):
    [finding] = rules(offline(tmp_path, DROP_FK_INDEX))
    assert (finding.rule, finding.severity) == ("drop-index-needed-by-fk", "error")
    assert "fk_emotion_analysis_user_id_users" in finding.message and "1553" in finding.message
    assert finding.fix.startswith("drop the foreign key first")
    assert "then the index, then re-create the foreign key" in finding.fix


def test_drop_index_needed_by_a_foreign_key_from_a_scratch_database(tmp_path, settings):
    """With a server, the earlier schema comes from a scratch database; the server really refuses."""
    folder = versions(tmp_path, (REV, lint_revision(DROP_FK_INDEX)))
    configured = replace(settings, versions_dir=folder)
    report = lint(configured)  # the database does not exist yet: every revision, schema from a scratch database
    assert report.schema_source == "scratch database"
    assert [finding.rule for finding in rules(report)] == ["drop-index-needed-by-fk"]
    from backend.dbops.admin import create_database

    create_database(configured)
    with pytest.raises(migrate.MigrationFailed, match="1553"):
        migrate.upgrade(configured)


def test_drop_index_nothing_needs_or_after_its_foreign_key_is_fine(tmp_path):
    report = offline(
        tmp_path,
        """
        op.drop_index("ix_emotion_analysis_emotion", table_name="emotion_analysis")
        op.drop_constraint("fk_emotion_analysis_user_id_users", "emotion_analysis", type_="foreignkey")
        op.drop_index("ix_emotion_analysis_user_id_created_at", table_name="emotion_analysis")
    """,
    )
    assert rules(report) == []


def test_drop_index_another_index_covers_is_fine(tmp_path):
    report = offline(
        tmp_path,
        """
        op.create_index("ix_emotion_analysis_user_id", "emotion_analysis", ["user_id"])
        op.drop_index("ix_emotion_analysis_user_id_created_at", table_name="emotion_analysis")
    """,
    )
    assert rules(report) == []


ADD_UNIQUE = 'op.create_unique_constraint("uq_knowledge_title", "knowledge", ["title"])'


def test_add_unique_constraint_is_a_warning_without_data(tmp_path):
    [finding] = rules(offline(tmp_path, ADD_UNIQUE))
    assert (finding.rule, finding.severity) == ("add-unique-constraint", "warning")
    assert "1062" in finding.message and "GROUP BY title HAVING COUNT(*) > 1" in finding.fix
    assert offline(tmp_path / "ok", "pass").ok


def test_add_unique_on_a_new_table_is_fine(tmp_path):
    report = offline(
        tmp_path,
        """
        op.create_table("tags", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(40)))
        op.create_unique_constraint("uq_tags_name", "tags", ["name"])
    """,
    )
    assert rules(report) == []


def at_head_with_revision(tmp_path, settings, upgrade: str) -> Settings:
    """The test database at HEAD, with a pending test revision."""
    from backend.dbops.admin import create_database

    configured = replace(settings, versions_dir=versions(tmp_path, (REV, lint_revision(upgrade))))
    create_database(configured)
    migrate.upgrade(configured, HEAD)
    return configured


def test_add_unique_constraint_with_duplicates_in_the_database(tmp_path, settings, mysql_server):
    configured = at_head_with_revision(tmp_path, settings, ADD_UNIQUE)
    connection = mysql_server.connect(settings.database)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO knowledge (category, title, content) VALUES "
            "('sleep', 'tips', 'a'), ('food', 'tips', 'b'), ('food', 'other', 'c')"
        )
    connection.close()
    report = lint(configured)
    assert report.revisions == [REV]  # only the pending one
    [finding] = rules(report)
    assert (finding.rule, finding.severity) == ("add-unique-constraint", "error")
    assert "2 rows with title = 'tips'" in finding.message and settings.database in finding.message


def test_add_unique_constraint_without_duplicates_in_the_database(tmp_path, settings, mysql_server):
    configured = at_head_with_revision(tmp_path, settings, ADD_UNIQUE)
    connection = mysql_server.connect(settings.database)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO knowledge (category, title, content) VALUES ('sleep', 'tips', 'a'), ('food', 'meals', 'b')"
        )
    connection.close()
    [finding] = rules(lint(configured))
    assert finding.severity == "warning" and "no duplicates now" in finding.message


# ---------------------------------------------------------------- downgrade and heads


def test_missing_downgrade(tmp_path):
    report = offline(tmp_path, 'op.add_column("users", sa.Column("mood", sa.String(32)))', downgrade="pass")
    [finding] = rules(report)
    assert (finding.rule, finding.severity) == ("missing-downgrade", "warning")
    assert finding.line == line_of(tmp_path / "versions" / f"{REV}_test.py", "def downgrade")

    text = lint_revision('op.add_column("users", sa.Column("mood", sa.String(32)))')
    folder = versions(tmp_path / "none", (REV, text[: text.index("def downgrade")]))
    [finding] = rules(lint(Settings(versions_dir=folder), [REV], database_checks=False))
    assert finding.rule == "missing-downgrade" and "no downgrade()" in finding.message


def test_downgrade_that_says_why_it_cannot_is_info(tmp_path):
    report = offline(
        tmp_path,
        'op.drop_column("users", "nickname")  # lint: ignore[drop-column] unused since 2.3',
        downgrade='raise NotImplementedError("the nicknames are gone: restore a backup")',
    )
    [finding] = rules(report)
    assert (finding.rule, finding.severity) == ("missing-downgrade", "info")
    assert "the nicknames are gone" in finding.message and report.ok


def test_real_downgrade_or_empty_revision_is_fine(tmp_path):
    report = offline(
        tmp_path,
        'op.add_column("users", sa.Column("mood", sa.String(32)))',
        downgrade='op.drop_column("users", "mood")',
    )
    assert rules(report) == []
    assert rules(offline(tmp_path / "empty", "pass", downgrade="pass")) == []


def test_multiple_heads(tmp_path):
    folder = versions(tmp_path, (REV, lint_revision("pass", "pass")), (REV2, lint_revision("pass", "pass", rev=REV2)))
    report = lint(Settings(versions_dir=folder), database_checks=False)
    [finding] = rules(report)
    assert (finding.rule, finding.severity) == ("multiple-heads", "error")
    assert REV in finding.message and REV2 in finding.message and "db.merge" in finding.fix
    single = versions(
        tmp_path / "one",
        (REV, lint_revision("pass", "pass")),
        (REV2, lint_revision("pass", "pass", rev=REV2, down=REV)),
    )
    assert rules(lint(Settings(versions_dir=single), database_checks=False)) == []


# ---------------------------------------------------------------- table copies and data changes


WIDEN_TEXT = 'op.alter_column("knowledge", "content", type_=sa.dialects.mysql.MEDIUMTEXT(), existing_nullable=False)'


def test_large_table_copy(tmp_path, settings, mysql_server):
    configured = at_head_with_revision(tmp_path, settings, "import sqlalchemy.dialects.mysql\n" + WIDEN_TEXT)
    connection = mysql_server.connect(settings.database)
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO knowledge (category, title, content) VALUES (%s, %s, 'text')",
            [("c", f"t{i}") for i in range(50)],
        )
        cursor.execute("ANALYZE TABLE knowledge")
    connection.close()
    [finding] = rules(lint(replace(configured, online_schema_change="refuse"), large_table_rows=10))
    assert (finding.rule, finding.severity) == ("large-table-copy", "warning")
    assert "copies table knowledge" in finding.message and "gh-ost" in finding.fix
    # Where the deploy runs it online, lint says so, and about how long the copy takes.
    [finding] = rules(lint(replace(configured, online_schema_change="online"), large_table_rows=10))
    assert (finding.rule, finding.severity) == ("large-table-copy", "info")
    assert "runs online through pt-online-schema-change, the copy taking about" in finding.message
    assert rules(lint(configured)) == []  # 50 rows are below the default


def test_large_table_copy_without_a_database_is_a_note(tmp_path):
    report = offline(tmp_path, "import sqlalchemy.dialects.mysql\n" + WIDEN_TEXT, large_table_rows=0)
    assert rules(report) == []
    assert any("large-table-copy not checked" in note and "knowledge" in note for note in report.notes)


def test_data_update_mixed_with_ddl(tmp_path):
    report = offline(
        tmp_path,
        """
        op.add_column("users", sa.Column("mood", sa.String(32), nullable=True))
        op.execute("UPDATE users SET mood = 'calm'")
    """,
    )
    [finding] = rules(report)
    assert (finding.rule, finding.severity) == ("data-update-mixed-with-ddl", "warning")
    assert finding.line == line_of(tmp_path / "versions" / f"{REV}_test.py", "UPDATE users")

    seeded = offline(
        tmp_path / "bulk",
        """
        tags = op.create_table("tags", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(40)))
        op.bulk_insert(tags, [{"id": 1, "name": "sleep"}])
    """,
    )
    assert [finding.rule for finding in rules(seeded)] == ["data-update-mixed-with-ddl"]


def test_unreadable_sql(tmp_path):
    report = offline(
        tmp_path,
        """
        op.drop_column("users", "nickname")
        op.execute("UPDATE users SET email = 'open")
    """,
    )
    assert [finding.rule for finding in rules(report)] == ["drop-column", "unreadable-revision"]
    assert "op.execute() cannot be read" in rules(report)[1].message


def test_data_update_alone_is_fine(tmp_path):
    assert rules(offline(tmp_path, 'op.execute("UPDATE users SET nickname = username WHERE nickname IS NULL")')) == []


def test_unreadable_revision(tmp_path):
    report = offline(
        tmp_path,
        """
        op.drop_column("users", "nickname")
        rows = op.get_bind().execute(sa.text("SELECT id FROM users")).fetchall()
        op.drop_column("users", "email")
    """,
    )
    assert [finding.rule for finding in rules(report)] == ["drop-column", "unreadable-revision"]


# ---------------------------------------------------------------- silencing


def test_silenced_on_the_operation_line(tmp_path):
    report = offline(
        tmp_path,
        """
        op.drop_column(  # lint: ignore[drop-column] nothing reads it since release 2.3
            "users",
            "nickname",
        )
    """,
    )
    assert rules(report) == []
    [(finding, reason)] = report.silenced
    assert finding.rule == "drop-column" and reason == "nothing reads it since release 2.3"
    assert report.to_dict()["silenced"][0]["reason"] == reason


def test_silenced_for_the_whole_file(tmp_path):
    report = offline(
        tmp_path,
        """
        # lint: ignore[drop-column] the old profile fields are unused since 2.3
        op.drop_column("users", "nickname")
        op.drop_column("users", "avatar_url")
        op.drop_table("knowledge")
    """,
    )
    assert [finding.rule for finding in rules(report)] == ["drop-table"]
    assert len(report.silenced) == 2


def test_silence_without_a_reason_is_reported_and_silences_nothing(tmp_path):
    report = offline(tmp_path, 'op.drop_column("users", "nickname")  # lint: ignore[drop-column]')
    assert sorted(finding.rule for finding in rules(report)) == ["drop-column", "ignore-without-reason"]
    assert report.silenced == []


def test_silence_of_an_unknown_rule_is_reported(tmp_path):
    report = offline(tmp_path, 'op.drop_column("users", "nickname")  # lint: ignore[drop-colum] typo')
    assert sorted(finding.rule for finding in rules(report)) == ["drop-column", "ignore-unknown-rule"]


# ---------------------------------------------------------------- output and command line


def test_json_and_text_of_findings(tmp_path):
    report = offline(tmp_path, 'op.drop_column("users", "nickname")', downgrade="pass")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is False and data["errors"] == 1 and data["warnings"] == 1
    assert data["revisions"] == [REV] and data["schema_source"] == "revision operations"
    assert {finding["rule"] for finding in data["findings"]} == {"drop-column", "missing-downgrade"}
    assert set(data["findings"][0]) == {"rule", "severity", "revision", "file", "line", "message", "fix"}
    text = rules(report, "drop-column")[0].text()
    assert text.startswith(f"❌ {REV} ") and f"_test.py:{rules(report, 'drop-column')[0].line} drop-column: " in text
    assert " — fix: " in text
    assert set(RULES) >= {finding["rule"] for finding in data["findings"]}


def test_cli_exit_codes_and_formats(invoke, tmp_path):
    bad = versions(tmp_path / "bad", (REV, lint_revision('op.drop_table("knowledge")')))
    result = invoke("db.lint", env={"MIGRATIONS_DIR": str(bad)})
    line = assert_one_error_line(result)
    assert "1 error(s)" in line
    assert f"❌ {REV} " in result.stdout and "drop-table: drops table knowledge" in result.stdout

    as_json = invoke("db.lint", "--format", "json", env={"MIGRATIONS_DIR": str(bad)})
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["findings"][0]["rule"] == "drop-table"

    warned = versions(tmp_path / "warn", (REV, lint_revision(ADD_UNIQUE)))
    result = invoke("db.lint", env={"MIGRATIONS_DIR": str(warned)})
    assert result.returncode == 0, result.output
    assert (
        "add-unique-constraint" in result.stdout and "✅ 2 revision(s) linted: no errors, 1 warning(s)" in result.stdout
    )

    assert "--format must be" in assert_one_error_line(invoke("db.lint", "--format", "xml"))
    assert "unknown revision" in assert_one_error_line(invoke("db.lint", "--revision", "feedfacecafe"))


def test_cli_lints_pending_revisions_by_default(invoke, tmp_path):
    folder = versions(tmp_path, (REV, lint_revision('op.drop_column("users", "nickname")')))
    env = {"MIGRATIONS_DIR": str(folder)}
    assert invoke("db.create", env=env).returncode == 0
    assert invoke("db.upgrade", "-r", HEAD, env=env).returncode == 0
    pending = invoke("db.lint", "--format", "json", env=env)
    assert json.loads(pending.stdout)["revisions"] == [REV]
    everything = invoke("db.lint", "--all", "--format", "json", env=env)
    assert json.loads(everything.stdout)["revisions"] == [HEAD, REV]
    only_head = invoke("db.lint", "--revision", HEAD, env=env)
    assert only_head.returncode == 0 and "✅ 1 revision(s) linted" in only_head.stdout
