"""db.adopt: a database the old tool (alembic_version '001') or a person (no alembic_version) made."""

from __future__ import annotations

import pytest

from backend.dbops import alembic_setup, migrate
from backend.dbops.admin import create_database
from backend.dbops.adopt import Adoption, adopt
from backend.dbops.check import run_check
from backend.dbops.errors import Refused, RevisionError
from backend.dbops.guards import confirm_adopt
from tests.command_line import assert_one_error_line
from tests.helpers import APP_TABLES, HEAD, Answers, tables, version_rows, versions_with

NEXT = "a1b2c3d4e5f6"  # tests/revisions/halfway: adds users.mood on top of HEAD


def old_tool_database(settings, server, revision: str = HEAD):
    """A database at revision whose alembic_version holds what the old tool wrote."""
    create_database(settings)
    migrate.upgrade(settings, revision)
    server.execute(settings.database, "UPDATE alembic_version SET version_num = '001'")
    return settings


def scratch_databases(server, database: str) -> list[str]:
    connection = server.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s",
                (database + "\\_autogen\\_%",),
            )
            return [row[0] for row in cursor.fetchall()]
    finally:
        connection.close()


def test_adopt_a_database_of_the_old_tool(invoke, settings, mysql_server, database_name, tmp_path):
    env = versions_with(tmp_path, "halfway", f"{NEXT}_*.py")  # head is NEXT, the database is at HEAD below it
    old_tool_database(settings, mysql_server)
    check = invoke("db.check", env=env)
    assert check.returncode == 1 and "001" in check.stderr and "invoke db.adopt" in check.stderr, check.output
    assert "001" in assert_one_error_line(invoke("db.upgrade", env=env))
    assert "needs confirmation" in assert_one_error_line(invoke("db.adopt", "-r", HEAD, env=env))
    assert version_rows(mysql_server, database_name) == ["001"]

    adopted = invoke("db.adopt", "-r", HEAD, "--yes", env=env)
    assert adopted.returncode == 0, adopted.output
    assert f"the 7 table(s) of {database_name} match revision {HEAD}" in adopted.stdout
    assert f"adopted at {HEAD} (alembic_version held 001)" in adopted.stdout
    assert version_rows(mysql_server, database_name) == [HEAD]
    assert scratch_databases(mysql_server, database_name) == []
    check = invoke("db.check", env=env)
    assert check.returncode == 0, check.output
    assert f"at {HEAD}, 1 pending" in check.stdout
    assert "applied revision files unchanged" in check.stdout  # the adoption recorded their checksums
    assert f"001 -> {HEAD} succeeded" in invoke("db.deploys", env=env).stdout

    upgraded = invoke("db.upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.output
    assert version_rows(mysql_server, database_name) == [NEXT]
    assert invoke("db.check", env=env).returncode == 0
    # The adopted revision's file is watched like one the tool ran.
    head_file = next(path for path in tmp_path.joinpath("versions").glob(f"*{HEAD}*.py"))
    head_file.write_text(head_file.read_text() + "\n# edited after the adoption\n")
    assert "edited since they ran" in assert_one_error_line(invoke("db.check", env=env))


def test_adopt_a_hand_made_database(invoke, settings, mysql_server, database_name):
    create_database(settings)
    migrate.upgrade(settings)
    mysql_server.execute(database_name, "DROP TABLE alembic_version")
    line = assert_one_error_line(invoke("db.check"))
    assert "no revision recorded, but 7 table(s) exist" in line and "invoke db.adopt" in line

    adopted = invoke("db.adopt", "--yes")  # default: head
    assert adopted.returncode == 0, adopted.output
    assert f"adopted at {HEAD} (alembic_version held no revision)" in adopted.stdout
    assert version_rows(mysql_server, database_name) == [HEAD]
    check = invoke("db.check")
    assert check.returncode == 0, check.output
    assert "the schema matches backend/database.py" in check.stdout


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            "ALTER TABLE users ADD COLUMN favourite_color VARCHAR(20) NULL",
            "users: column favourite_color: only in live (varchar(20))",
        ),
        (
            "DROP INDEX ix_system_logs_created_at ON system_logs",
            "system_logs: index ix_system_logs_created_at: only in migrations (created_at)",
        ),
    ],
    ids=["extra-column", "missing-index"],
)
def test_a_differing_database_is_not_adopted(invoke, settings, mysql_server, database_name, change, expected):
    old_tool_database(settings, mysql_server)
    mysql_server.execute(database_name, change)
    result = invoke("db.adopt", "--yes")
    line = assert_one_error_line(result)
    assert f"differs from revision {HEAD} in 1 place(s): nothing recorded" in line
    assert [text.strip() for text in result.stdout.splitlines()] == [expected]
    assert version_rows(mysql_server, database_name) == ["001"]
    assert tables(mysql_server, database_name) == sorted(["alembic_version", *APP_TABLES])
    assert scratch_databases(mysql_server, database_name) == []


def test_production_needs_allow_production(invoke, settings, mysql_server, database_name):
    old_tool_database(settings, mysql_server)
    production = {"APP_ENV": "production"}
    for args in (("db.adopt",), ("db.adopt", "--yes"), ("db.adopt", "--allow-production")):
        assert "protected production environment" in assert_one_error_line(invoke(*args, env=production))
        assert version_rows(mysql_server, database_name) == ["001"]
    adopted = invoke("db.adopt", "--yes", "--allow-production", env=production)
    assert adopted.returncode == 0, adopted.output
    assert version_rows(mysql_server, database_name) == [HEAD]


def test_bad_revisions(invoke, settings, mysql_server, database_name):
    old_tool_database(settings, mysql_server)
    for bad, expected in (
        ("x;drop", "malformed revision 'x;drop'"),
        ("0123456789ab", "unknown revision"),
        ("base", "not base"),
    ):
        assert expected in assert_one_error_line(invoke("db.adopt", "-r", bad, "--yes"))
    assert version_rows(mysql_server, database_name) == ["001"]


def test_a_different_column_order_is_shown_but_does_not_block(settings, mysql_server):
    old_tool_database(settings, mysql_server)
    mysql_server.execute(settings.database, "ALTER TABLE knowledge MODIFY source VARCHAR(255) NULL AFTER content")
    seen: list[Adoption] = []
    adoption = adopt(settings, confirm=seen.append)
    assert adoption.recorded and seen == [adoption]
    assert [note.item for note in adoption.notes] == ["column order"]
    assert alembic_setup.current(settings) == (HEAD,)


def test_a_change_while_confirming_records_nothing(settings, mysql_server):
    old_tool_database(settings, mysql_server)

    def someone_alters(adoption) -> None:
        mysql_server.execute(settings.database, "ALTER TABLE users ADD COLUMN late VARCHAR(8) NULL")

    with pytest.raises(RevisionError, match="changed while it was compared"):
        adopt(settings, confirm=someone_alters)
    assert alembic_setup.current(settings) == ("001",)


def test_refuse_refused_confirmation_and_what_is_not_to_adopt(settings, mysql_server):
    old_tool_database(settings, mysql_server)

    def refuse(adoption) -> None:
        raise Refused("no")

    with pytest.raises(Refused):
        adopt(settings, confirm=refuse)
    assert alembic_setup.current(settings) == ("001",)
    migrate.stamp(settings, "head")
    with pytest.raises(RevisionError, match="already at"):
        adopt(settings)
    mysql_server.execute(
        settings.database,
        "SET FOREIGN_KEY_CHECKS = 0",
        f"DROP TABLE {', '.join(APP_TABLES)}",
        "DELETE FROM alembic_version",
    )
    with pytest.raises(RevisionError, match="no tables to adopt"):
        adopt(settings)
    assert run_check(settings).ok  # an empty database at base is not one to adopt


def test_confirm_adopt(settings):
    typed = Answers(settings.database)
    confirm_adopt(settings, HEAD, "001", ask=typed)
    assert HEAD in typed.prompts[0] and "001" in typed.prompts[0]
    with pytest.raises(Refused, match="did not match"):
        confirm_adopt(settings, HEAD, "001", ask=Answers("nope"))
    with pytest.raises(Refused, match="needs confirmation"):
        confirm_adopt(settings, HEAD, "001")
    confirm_adopt(settings, HEAD, "001", yes=True)
