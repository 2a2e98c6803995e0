"""Big-table ALTERs run online through pt-online-schema-change, on the real server.

The revision of tests/revisions/guard_copy retypes chat_messages.content (a table copy on every
server); chat_messages has foreign keys to other tables and two tables' foreign keys point at it,
so the cut-over must carry all of them. Rollbacks under a live writer are in
tests/faults/test_live_writes.py (kind online-alter).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.dbops.ddl_guard import OSC_TOOL
from backend.dbops.servers import find_program
from tests.command_line import Spawned, assert_one_error_line
from tests.faults.live import all_rows
from tests.helpers import (
    HEAD,
    checksums,
    cmdline,
    copy_versions,
    descendants,
    query,
    raw_schema,
    seed,
    version_rows,
    versions_with,
)

pytestmark = pytest.mark.skipif(find_program(OSC_TOOL) is None, reason=f"{OSC_TOOL} is not installed (percona-toolkit)")

RETYPE = "f6a7b8c9d0e1"
COMMON = {"DEPLOY_STEPS": "preflight,backup,upgrade,verify", "DEPLOY_VERIFY_MODELS": "0", "DDL_GUARD_MAX_ROWS": "10"}
ONLINE, DIRECT = {**COMMON, "ONLINE_SCHEMA_CHANGE": "online"}, {**COMMON, "ONLINE_SCHEMA_CHANGE": "direct"}


@pytest.fixture
def seeded(invoke, mysql_server, database_name, tmp_path):
    env = versions_with(tmp_path, "guard_copy")
    assert invoke("db.create", env=env).returncode == 0
    assert invoke("db.upgrade", "-r", HEAD, env=env).returncode == 0
    seed(mysql_server, database_name)
    query(
        mysql_server,
        "INSERT INTO emotion_analysis (message_id, session_id, user_id, emotion) VALUES (3, 's1', 1, 'calm')",
        database=database_name,
    )
    query(mysql_server, "ANALYZE TABLE chat_messages", database=database_name)
    return env


def _revision_file(env: dict[str, str]) -> Path:
    [path] = Path(env["MIGRATIONS_DIR"]).glob(f"{RETYPE}_*.py")
    return path


def _leftovers(server, database: str) -> list[str]:
    """Holding tables and triggers: what an online run may leave until it is settled or undone."""
    found = query(
        server,
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME LIKE 'alembic\\_hold\\_%%'",
        (database,),
    )
    found += query(
        server, "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s", (database,)
    )
    return sorted(row[0] for row in found)


def test_a_big_table_copy_runs_online_and_leaves_what_a_direct_run_leaves(invoke, mysql_server, database_name, seeded):
    before = all_rows(mysql_server, database_name)
    result = invoke("db.deploy", "--yes", env={**seeded, **ONLINE})
    assert result.returncode == 0, result.output
    assert f"runs online through {OSC_TOOL}" in result.stdout and "swapped in" in result.stdout
    online_schema = raw_schema(mysql_server, database_name)
    assert version_rows(mysql_server, database_name) == [RETYPE]
    # Every row as it was (the values fit the new type), the other tables' foreign keys on the new table.
    assert all_rows(mysql_server, database_name) == before
    with pytest.raises(Exception, match="foreign key constraint fails"):
        query(
            mysql_server,
            "INSERT INTO emotion_analysis (message_id, session_id, user_id, emotion) VALUES (999999, 's1', 1, 'x')",
            database=database_name,
        )
    assert invoke("db.settle", "--yes", env=seeded).returncode == 0
    assert _leftovers(mysql_server, database_name) == []

    # The same revision run directly leaves the same schema, names of keys and constraints included.
    assert invoke("db.downgrade", "-r", HEAD, env={**seeded, **DIRECT}).returncode == 0
    assert invoke("db.upgrade", "-r", RETYPE, env={**seeded, **DIRECT}).returncode == 0
    assert raw_schema(mysql_server, database_name) == online_schema


def test_a_plain_upgrade_runs_it_online_and_drops_the_original(invoke, mysql_server, database_name, seeded):
    sums = checksums(mysql_server, database_name, ["users", "chat_sessions", "emotion_analysis"])
    result = invoke("db.upgrade", "-r", RETYPE, env={**seeded, **ONLINE})
    assert result.returncode == 0, result.output
    assert "the original dropped" in result.stdout
    assert _leftovers(mysql_server, database_name) == []
    assert checksums(mysql_server, database_name, ["users", "chat_sessions", "emotion_analysis"]) == sums


def test_a_revision_can_ask_for_the_online_path_whatever_the_size(invoke, mysql_server, database_name, seeded):
    path = _revision_file(seeded)
    path.write_text(path.read_text() + "\n# ddl-guard: online\n")
    env = {**seeded, **ONLINE, "DDL_GUARD_MAX_ROWS": "1000000", "ONLINE_SCHEMA_CHANGE": "refuse"}
    plan = invoke("db.deploy", "--dry-run", env=env)
    assert plan.returncode == 0, plan.output
    # The plan says it runs online, about how long the copy takes, and that nothing is copied to undo it.
    assert f"chat_messages (50 rows): copy, runs online through {OSC_TOOL} (copy of" in plan.stdout, plan.stdout
    assert "altered online: the original set aside at the cut-over, nothing copied" in plan.stdout
    result = invoke("db.deploy", "--yes", env=env)
    assert result.returncode == 0, result.output
    assert f"runs online through {OSC_TOOL}" in result.stdout


def test_without_the_online_path_a_big_copy_is_refused(invoke, mysql_server, database_name, seeded):
    line = assert_one_error_line(
        invoke("db.deploy", "--yes", env={**seeded, **ONLINE, "ONLINE_SCHEMA_CHANGE": "refuse"})
    )
    assert "would copy or lock chat_messages" in line and "percona-toolkit" in line
    assert version_rows(mysql_server, database_name) == [HEAD]


def test_the_preflight_refuses_a_table_with_triggers(invoke, mysql_server, database_name, seeded):
    query(
        mysql_server,
        "CREATE TRIGGER audit_messages AFTER INSERT ON chat_messages FOR EACH ROW SET @last_message = NEW.id",
        database=database_name,
    )
    schema = raw_schema(mysql_server, database_name)
    line = assert_one_error_line(invoke("db.deploy", "--yes", env={**seeded, **ONLINE}))
    assert "chat_messages has triggers (audit_messages)" in line and "drop them first" in line
    assert raw_schema(mysql_server, database_name) == schema and version_rows(mysql_server, database_name) == [HEAD]


def test_the_preflight_refuses_a_table_without_a_key(invoke, mysql_server, database_name, tmp_path):
    env = {"MIGRATIONS_DIR": str(copy_versions(tmp_path / "versions"))}
    assert invoke("db.create", env=env).returncode == 0
    assert invoke("db.upgrade", "-r", HEAD, env=env).returncode == 0
    (Path(env["MIGRATIONS_DIR"]) / "ab00000000c1_notes.py").write_text(_keyless_revision())
    query(mysql_server, "CREATE TABLE notes (body TEXT) ENGINE=InnoDB", database=database_name)
    query(mysql_server, "INSERT INTO notes VALUES ('a'), ('b')", database=database_name)
    line = assert_one_error_line(invoke("db.deploy", "--yes", env={**env, **ONLINE, "UNMANAGED_TABLES": "notes"}))
    assert "notes has no primary key" in line


def _keyless_revision() -> str:
    from tests.helpers import revision_text

    return revision_text(
        "ab00000000c1",
        HEAD,
        'op.execute("ALTER TABLE notes MODIFY body VARCHAR(100)")',
        'op.execute("ALTER TABLE notes MODIFY body TEXT")',
        preamble="# ddl-guard: online\n# lint: ignore[narrow-type] test: a table without a key",
    )


@pytest.mark.parametrize("pause", ["load", "replica"])
def test_a_deploy_killed_during_the_online_copy_is_undone_with_nothing_left(
    pause, invoke, cli_env, mysql_server, database_name, seeded
):
    """The tool pauses its copy, its triggers and half-filled copy in place, on a load threshold always
    exceeded, or on a replica that does not replicate (the lag check of OSC_REPLICAS: the server itself)."""
    instance = mysql_server.instance
    if pause == "replica" and instance is not None and instance.flavour == "mysql":
        pytest.skip(f"{OSC_TOOL} 3.2 asks replicas SHOW SLAVE STATUS, which MySQL 8.4 and later do not know")
    for _ in range(6):
        query(
            mysql_server,
            "INSERT INTO chat_messages (session_id, user_id, role, content) "
            "SELECT session_id, user_id, role, content FROM chat_messages",
            database=database_name,
        )
    sums = checksums(mysql_server, database_name)
    schema = raw_schema(mysql_server, database_name)
    waits = {
        "load": ({"OSC_MAX_LOAD": "Threads_connected=1"}, "Pausing because Threads_connected"),
        "replica": ({"OSC_REPLICAS": f"{mysql_server.host}:{mysql_server.port}"}, "is stopped.  Waiting."),
    }
    env, message = waits[pause]
    deploy = Spawned({**cli_env, **seeded, **ONLINE, **env}, "db.deploy", "--yes")
    try:
        deploy.wait_for(message, timeout=120)
        # The tool reads the password from an in-memory file: not on its command line or in its environment.
        [tool] = [pid for pid in descendants(deploy.pid) if OSC_TOOL in cmdline(pid)]
        assert "F=/dev/fd/" in cmdline(tool)
        for part in ("cmdline", "environ"):
            assert mysql_server.password.encode() not in Path(f"/proc/{tool}/{part}").read_bytes()
        triggers = "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s"
        assert query(mysql_server, triggers, (database_name,))[0][0] == 3
    finally:
        deploy.sigkill_if_running()
    # The tool dies with the deploy: it does not go on copying for a dead run.
    assert deploy.reap_orphans(timeout=15) == []
    assert invoke("db.check", env=seeded).returncode == 1
    recovered = invoke("db.recover", "--undo", env=seeded)
    assert recovered.returncode == 0, recovered.output
    assert _leftovers(mysql_server, database_name) == []
    assert raw_schema(mysql_server, database_name) == schema
    assert checksums(mysql_server, database_name) == sums
    assert version_rows(mysql_server, database_name) == [HEAD]


@pytest.mark.parametrize("direction", ["forward", "back"])
def test_a_cut_over_killed_before_its_rename_is_undone(
    invoke, settings, mysql_server, database_name, seeded, direction
):
    """The cut-over's locked part (mirror triggers instead of the tool's, other tables' foreign keys
    on the incoming table) commits before its RENAME: the state a kill there leaves, made here by
    running that part alone, is undone by the rollback, forward (before the swap in) and back (before
    the original's swap back)."""
    from backend.dbops.connection import connect
    from backend.dbops.undo import log, online_alter
    from backend.dbops.undo.session import Session

    schema, before = raw_schema(mysql_server, database_name), all_rows(mysql_server, database_name)
    with connect(settings) as connection:
        session = Session.autocommitting(connection)
        if direction == "forward":
            # What the tool leaves: an altered copy with the rows (its triggers are replaced by the lock).
            log.ensure_table(session)
            entry = online_alter.start(session, "f0f0f0f0", RETYPE, "chat_messages", ["id"], [])
            copy, track = entry.detail["copy"], entry.detail["track"]
            session.run(f"CREATE TABLE `{copy}` LIKE chat_messages")
            session.run(f"ALTER TABLE `{copy}` MODIFY content VARCHAR(2000) NOT NULL")
            session.run(f"INSERT INTO `{copy}` SELECT * FROM chat_messages")
            online_alter.install_tracking(session, "f0f0f0f0", "chat_messages", copy, track, ["id"])
            mapping = online_alter.column_mapping(session, "chat_messages", copy, {})
            online_alter.prepare_swap(session, "f0f0f0f0", "chat_messages", copy, mapping, ["id"], [track])
        else:
            assert invoke("db.deploy", "--yes", env={**seeded, **ONLINE}).returncode == 0
            [entry] = [item for item in log.entries(session) if item.kind == log.ONLINE_ALTER]
            aside, track = entry.hold or "", entry.detail["track"]
            mapping = online_alter.column_mapping(session, "chat_messages", aside, {})
            online_alter.prepare_swap(session, entry.deploy_id, "chat_messages", aside, mapping, ["id"], [track])
        # Other tables' foreign keys point at the incoming table now.
        assert "chat_messages" not in {row[3] for row in raw_schema(mysql_server, database_name)["keys"]}
        online_alter.revert(session, session, entry.deploy_id, entry)
    assert raw_schema(mysql_server, database_name) == schema
    assert all_rows(mysql_server, database_name) == before
    kept = [name for name in _leftovers(mysql_server, database_name) if "_u_" in name]
    assert _leftovers(mysql_server, database_name) == kept and len(kept) == (direction == "back")
