"""The dbops functions called directly (the CLI tests cover the same paths end to end)."""

from __future__ import annotations

import ssl
from dataclasses import replace

import pytest
from sqlalchemy import Connection

from backend.dbops import admin, alembic_setup, authoring, migrate, offline_sql, revision_graph
from backend.dbops.check import run_check
from backend.dbops.connection import connect, make_engine, parse_server_version, server_info
from backend.dbops.errors import (
    AccessDenied,
    NotConfigured,
    Refused,
    RevisionError,
    ServerUnreachable,
    UnknownDatabase,
)
from backend.dbops.guards import confirm_destructive
from backend.dbops.tool_schema import CreateIfMissing, metadata
from backend.dbops.tool_tables import HISTORY_TABLES
from tests.helpers import APP_TABLES, HEAD, Answers, copy_versions, revision_text


def test_create_list_drop(settings):
    assert not admin.database_exists(settings)
    assert admin.create_database(settings) is True
    assert admin.create_database(settings) is False
    assert admin.list_tables(settings) == []
    assert admin.drop_database(settings) is True
    assert admin.drop_database(settings) is False


def test_connection_errors_are_one_line_and_secret_free(settings):
    from dataclasses import replace

    with pytest.raises(AccessDenied) as denied:
        with connect(replace(settings, password="Wr0ng-Secret"), database=None):
            pass
    assert "Wr0ng-Secret" not in str(denied.value) and "\n" not in str(denied.value)
    with pytest.raises(ServerUnreachable):
        with connect(replace(settings, port=1), database=None):
            pass
    with pytest.raises(UnknownDatabase):
        with connect(settings):
            pass
    with pytest.raises(NotConfigured):
        with connect(replace(settings, database="")):
            pass


def test_server_info(settings):
    with connect(settings, database=None) as connection:
        info = server_info(connection)
    assert info.flavour in ("mariadb", "mysql") and info.version_tuple >= (5, 7)


@pytest.mark.parametrize(
    "reported, flavour, version",
    [
        ("10.11.19-MariaDB-0+deb12u1", "mariadb", "10.11.19"),
        ("9.7.0", "mysql", "9.7.0"),
        ("8.0.36-0ubuntu0.22.04.1", "mysql", "8.0.36"),
        ("5.5.5-10.5.23-MariaDB", "mariadb", "5.5.5"),
    ],
)
def test_parse_server_version(reported, flavour, version):
    info = parse_server_version(reported)
    assert (info.flavour, info.version) == (flavour, version)


def test_upgrade_history_downgrade(created_database):
    settings = created_database
    assert alembic_setup.current(settings) == ()
    seen = []
    assert migrate.upgrade(settings, on_step=lambda step, direction: seen.append((step.revision, direction))) == [HEAD]
    assert seen == [(HEAD, "upgrade")]
    assert alembic_setup.current(settings) == (HEAD,)
    assert sorted(admin.list_tables(settings)) == sorted(
        ["alembic_journal", "alembic_lock", "alembic_version", *APP_TABLES]
    )
    assert authoring.autogenerate_diff(settings) == []
    [info] = revision_graph.history(settings, alembic_setup.current(settings))
    assert info.is_applied and info.is_current and info.is_head and not info.is_merge
    assert migrate.upgrade(settings) == []
    assert migrate.downgrade(settings, "base") == [HEAD]
    assert admin.list_tables(settings) == ["alembic_journal", "alembic_lock", "alembic_version"]
    with pytest.raises(RevisionError, match="nothing to downgrade"):
        migrate.downgrade(settings)


def test_pending_and_unknown_revisions(created_database):
    script = alembic_setup.script_directory(created_database)
    assert [step.revision for step in revision_graph.pending(script, ())] == [HEAD]
    assert revision_graph.pending(script, (HEAD,)) == []
    with pytest.raises(RevisionError, match="not in"):
        revision_graph.pending(script, ("0badc0ffee00",))
    with pytest.raises(RevisionError, match="malformed"):
        revision_graph.pending(script, (), "head; DROP")


def test_offline_sql_needs_no_server(created_database):
    from dataclasses import replace

    offline = replace(created_database, port=1)
    up = offline_sql.offline_sql(offline, "base", "head")
    assert "CREATE TABLE emotion_analysis" in up and "ENGINE=InnoDB" in up
    down = offline_sql.offline_sql(offline, HEAD, "base", downgrade=True)
    assert "DROP TABLE user_feedback" in down


def test_revision_and_merge_write_files(created_database, tmp_path):
    from dataclasses import replace

    settings = replace(created_database, versions_dir=copy_versions(tmp_path / "versions"))
    migrate.upgrade(settings)
    assert authoring.revision(settings, "nothing changed") is None
    first = authoring.revision(settings, "hand written", autogenerate=False)
    assert first is not None and first.exists() and "def downgrade() -> None:" in first.read_text()
    with pytest.raises(RevisionError, match="only one head"):
        authoring.merge(settings)
    # A second branch from the same parent makes two heads.
    second = tmp_path / "versions" / "branch.py"
    second.write_text(first.read_text().replace(first.stem.split("_")[1], "abcabcabcabc"))
    assert len(revision_graph.heads(settings)) == 2
    with pytest.raises(RevisionError, match="several heads"):
        authoring.revision(settings, "third head")
    merged = authoring.merge(settings, "join")
    assert merged.exists() and len(revision_graph.heads(settings)) == 1


def test_stamp(created_database):
    assert migrate.stamp(created_database, "head") == (HEAD,)
    assert migrate.stamp(created_database, "base") == ()


def test_check_report(created_database):
    report = run_check(created_database)
    assert report.ok and report.pending and any(item.warning for item in report.items)
    migrate.upgrade(created_database)
    report = run_check(created_database)
    assert report.ok and not report.pending and not any(item.warning for item in report.items)


def test_guard_outside_production(settings):
    confirm_destructive(settings, "drop", "db", yes=True)
    typed = Answers("db")
    confirm_destructive(settings, "drop", "db", ask=typed)
    assert "Type the database name" in typed.prompts[0]
    with pytest.raises(Refused, match="did not match"):
        confirm_destructive(settings, "drop", "db", ask=Answers("other"))
    with pytest.raises(Refused, match="needs confirmation"):
        confirm_destructive(settings, "drop", "db")


def test_guard_on_production(settings):
    from dataclasses import replace

    production = replace(settings, environment="production")
    for kwargs in ({"yes": True}, {"allow_production": True}, {"ask": Answers("db")}, {}):
        with pytest.raises(Refused, match="protected production"):
            confirm_destructive(production, "reset", "db", **kwargs)
    confirm_destructive(production, "reset", "db", yes=True, allow_production=True)


def _tls_context(connection: Connection) -> ssl.SSLContext:
    driver_connection = connection.connection.driver_connection  # PyMySQL's Connection
    assert driver_connection is not None  # not yet closed
    return driver_connection.ctx


def test_connections_share_one_tls_context(created_database):
    """PyMySQL's per-connection context costs about 25 ms; ours is built once, and never verifies (as PyMySQL's)."""
    with connect(created_database) as first, connect(created_database) as second:
        contexts = [_tls_context(connection) for connection in (first, second)]
    assert contexts[0] is contexts[1]
    assert contexts[0].verify_mode == ssl.CERT_NONE and not contexts[0].check_hostname


def test_one_engine_per_target_and_a_session_per_connection(created_database):
    """Connections to one target share an engine (its dialect set up once), never a session."""
    from dataclasses import replace

    from sqlalchemy import text

    settings = created_database
    with (
        connect(settings) as first,
        connect(replace(settings, environment="staging")) as second,
        connect(settings, guard_ddl=True) as guarded,
        connect(settings, database=None) as server,
    ):
        assert second.engine is first.engine
        assert guarded.engine is not first.engine and server.engine is not first.engine
        sessions = {
            connection.execute(text("SELECT CONNECTION_ID()")).scalar_one()
            for connection in (first, second, guarded, server)
        }
        assert len(sessions) == 4
    with connect(settings) as again:
        assert again.engine is first.engine


def test_a_deploy_leaves_no_hook_on_the_shared_engine(created_database, tmp_path):
    """The deploy's undo capture listens for errors engine-wide; it leaves when the upgrade ends."""
    from dataclasses import replace

    from backend.dbops.connection import make_engine
    from backend.dbops.deploy import deploy

    settings = replace(created_database, deploy_steps=("preflight", "upgrade", "verify"), backup_dir=tmp_path)
    assert deploy(settings, say=lambda line: None).status == "succeeded"
    assert len(make_engine(settings, guard_ddl=True).dialect.dispatch.handle_error) == 0


# The tool's tables as released versions created them (CREATE TABLE IF NOT EXISTS strings):
# databases made by them must keep working, and new ones must get the same tables.
RELEASED_TOOL_TABLES = (
    """CREATE TABLE alembic_lock (
    lock_name VARCHAR(64) NOT NULL PRIMARY KEY, connection_id BIGINT UNSIGNED NOT NULL, host VARCHAR(255) NOT NULL,
    pid INT NOT NULL, os_user VARCHAR(128) NOT NULL, purpose VARCHAR(255) NOT NULL, acquired_at DATETIME(6) NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE alembic_journal (
    id BIGINT AUTO_INCREMENT PRIMARY KEY, deploy_id VARCHAR(36) NULL, revision VARCHAR(64) NOT NULL,
    direction VARCHAR(16) NOT NULL, checksum CHAR(64) NOT NULL, status VARCHAR(16) NOT NULL, host VARCHAR(255) NOT NULL,
    pid INT NOT NULL, os_user VARCHAR(128) NOT NULL, started_at DATETIME(6) NOT NULL, finished_at DATETIME(6) NULL,
    error TEXT NULL, KEY ix_alembic_journal_revision (revision), KEY ix_alembic_journal_status (status)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE alembic_deploys (
    id VARCHAR(36) NOT NULL PRIMARY KEY, started_at DATETIME(6) NOT NULL, finished_at DATETIME(6) NULL,
    os_user VARCHAR(128) NOT NULL, host VARCHAR(255) NOT NULL, environment VARCHAR(32) NOT NULL,
    target VARCHAR(64) NOT NULL, from_revision VARCHAR(255) NOT NULL, to_revision VARCHAR(255) NULL,
    status VARCHAR(32) NOT NULL, backup_file VARCHAR(1024) NULL, steps TEXT NOT NULL, message TEXT NULL,
    KEY ix_alembic_deploys_started_at (started_at)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE alembic_undo (
    id BIGINT AUTO_INCREMENT PRIMARY KEY, deploy_id VARCHAR(36) NOT NULL, revision VARCHAR(64) NULL,
    kind VARCHAR(16) NOT NULL, table_name VARCHAR(64) NULL, hold_table VARCHAR(64) NULL, status VARCHAR(16) NOT NULL,
    detail LONGTEXT NOT NULL, created_at DATETIME(6) NOT NULL, finished_at DATETIME(6) NULL,
    KEY ix_alembic_undo_deploy (deploy_id, id), KEY ix_alembic_undo_status (status)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
)


def _show_create(server, database: str) -> dict[str, str]:
    connection = server.connect(database)
    try:
        with connection.cursor() as cursor:
            found = {}
            for table in HISTORY_TABLES:
                cursor.execute(f"SHOW CREATE TABLE {table}")
                found[table] = cursor.fetchone()[1]
            return found
    finally:
        connection.close()


def test_tool_tables_as_released(created_database, mysql_server):
    """The Table objects create what the released DDL did, key for key, and leave its tables alone."""
    settings = created_database
    released = replace(settings, database=f"{settings.database}_r")
    admin.create_database(released)
    try:
        mysql_server.execute(released.database, *RELEASED_TOOL_TABLES)
        for target in (settings, released):
            with connect(target) as connection:
                for table in metadata.tables.values():
                    connection.execute(CreateIfMissing(table))
                connection.commit()
        assert _show_create(mysql_server, settings.database) == _show_create(mysql_server, released.database)
        assert (
            [name for name in metadata.tables]
            == list(HISTORY_TABLES)
            == ["alembic_lock", "alembic_journal", "alembic_deploys", "alembic_undo"]
        )
        # A released database upgrades and rolls back through the tables it already has.
        assert migrate.upgrade(released) == [HEAD]
        assert migrate.downgrade(released, "base") == [HEAD]
    finally:
        admin.drop_database(released)


NEXT_REVISIONS = {
    "b1b1b1b1b1b1": (HEAD, 'op.execute("SELECT 1")'),
    "c2c2c2c2c2c2": ("b1b1b1b1b1b1", 'raise RuntimeError("stop at c2")'),
}


def test_env_py_takes_an_engine_or_a_connection(created_database, tmp_path):
    """Alembic's cookbook and pytest-alembic hand env.py an Engine, db.* a Connection; with an Engine
    each revision is still committed on its own, so a failure keeps the revisions before it."""
    from alembic import command

    versions = copy_versions(tmp_path / "versions")
    for revision, (parent, body) in NEXT_REVISIONS.items():
        (versions / f"{revision}_next.py").write_text(revision_text(revision, parent, upgrade=body))
    settings = replace(created_database, versions_dir=versions)
    config = alembic_setup.alembic_config(settings)
    config.attributes["connection"] = make_engine(settings)
    with pytest.raises(RuntimeError, match="stop at c2"):
        command.upgrade(config, "heads")
    # b1 changes no schema, so no DDL's implicit commit would save its version row: only its own commit did.
    assert alembic_setup.current(settings) == ("b1b1b1b1b1b1",)
    with connect(settings) as connection:
        command.downgrade(alembic_setup.alembic_config(settings, connection), "base")
        connection.commit()
    assert alembic_setup.current(settings) == ()
    assert admin.list_tables(settings) == ["alembic_version"]
