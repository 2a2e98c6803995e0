"""Failed deploys while the application writes: the rollback undoes the deploy and nothing else.

For each destructive DDL kind and each data-change kind, a revision runs it while a writer
process (tests/faults/writer.py) inserts, updates and deletes rows, then the deploy fails:
in the same revision, in a later one, or in verify. Afterwards the schema is as before, every
write the writer committed is there, and every other row holds its pre-deploy values,
compared row by row (CHECKSUM TABLE where the writer touched nothing).
"""

from __future__ import annotations

import time

import pytest

from tests.command_line import Spawned, run_invoke
from tests.faults.helpers import held_connection, prepare
from tests.faults.live import FAIL, FIRST, PAUSE, SECOND, Writer, all_rows, differences, expected_after, write_revisions
from tests.helpers import (
    APP_TABLES,
    HEAD,
    checksums,
    query,
    raw_schema,
    statements_running,
    tables,
    version_rows,
    wait_until,
)

pytestmark = pytest.mark.faults("live writes")

NON_STRICT = "op.execute(\"SET SESSION sql_mode = ''\")  # values that do not fit are cut, not refused"
KINDS = {
    "drop-table": 'op.drop_table("system_logs")',
    "drop-column": 'op.drop_column("chat_messages", "emotion")',
    "narrow-column": f'{NON_STRICT}\nop.alter_column("chat_messages", "content", existing_type=sa.Text(), '
    "type_=sa.String(12))",
    "convert-charset": f'{NON_STRICT}\nop.execute("ALTER TABLE knowledge CONVERT TO CHARACTER SET latin1")',
    # Through pt-online-schema-change: the original set aside, the copy swapped in, other tables'
    # foreign keys moved to it; undone by a rename back.
    "online-alter": "# ddl-guard: online\n"
    'op.alter_column("chat_messages", "content", existing_type=sa.Text(), type_=sa.String(2000))',
    "update": "op.execute(\"UPDATE chat_messages SET content = CONCAT(content, ' [m]') WHERE id <= 20\")\n"
    "op.execute(\"UPDATE knowledge SET tags = 'backfilled'\")",
    "delete": 'op.execute("DELETE FROM system_logs WHERE id <= 2")',
    "insert": "op.execute(\"INSERT INTO knowledge (category, title, content) VALUES ('new', 'n1', 'x'), "
    "('new', 'n2', 'y')\")",
    "bulk-insert": 'op.bulk_insert(sa.table("system_logs", sa.column("module", sa.String), '
    'sa.column("message", sa.Text)), [{"module": "seed", "message": f"m{i}"} for i in range(30)])',
}
# Where the deploy fails after the statement.
FAILURES = ("same-revision", "later-revision", "verify")
# A value latin1 cannot hold, for the charset conversion to destroy.
WIDE_TAGS = "标签 😀"


def deploy_env(cli_env, tmp_path, kind: str, failure: str) -> tuple[dict[str, str], str]:
    body = f"{KINDS[kind]}\n{PAUSE}"
    if failure == "same-revision":
        versions, target = write_revisions(tmp_path, f"{body}\n{FAIL}"), FIRST
    elif failure == "later-revision":
        versions, target = write_revisions(tmp_path, body, f"{PAUSE}\n{FAIL}"), SECOND
    else:
        versions, target = write_revisions(tmp_path, body), FIRST
    env = {
        **cli_env,
        **versions,
        "BACKUP_DIR": str(tmp_path / "backups"),
        "RESTART_COMMAND": "true",
        "HEALTH_COMMAND": "true",
        "DEPLOY_STEPS": "preflight,backup,upgrade,verify",
        "DEPLOY_VERIFY_MODELS": "0",
    }
    if failure == "verify":
        env["DEPLOY_SMOKE_SQL"] = "SELECT no_such_column FROM users"
    return env, target


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_failed_deploy_keeps_every_write_of_the_application(kind, failure, settings, cli_env, mysql_server, tmp_path):
    database = settings.database
    prepare(mysql_server, settings)
    query(mysql_server, "UPDATE knowledge SET tags = %s WHERE id = 1", (WIDE_TAGS,), database)
    env, target = deploy_env(cli_env, tmp_path, kind, failure)
    schema, sums, before = (
        raw_schema(mysql_server, database),
        checksums(mysql_server, database),
        all_rows(mysql_server, database),
    )

    writer = Writer(cli_env, tmp_path)
    try:
        writer.wait_for_writes(20, "before the deploy")
        started = time.time()
        deploy = run_invoke(env, "db.deploy", "--to", target)
        ended = time.time()
        writer.wait_for_writes(20, "after the deploy")
        writes = writer.stop()
    finally:
        writer.kill()

    assert deploy.returncode == 1, deploy.output
    assert "rolled back" in deploy.stderr and "every write of the application kept" in deploy.stderr, deploy.output
    assert raw_schema(mysql_server, database) == schema
    assert version_rows(mysql_server, database) == [HEAD]
    assert tables(mysql_server, database) == ["alembic_version", *APP_TABLES]
    assert differences(expected_after(before, writes), all_rows(mysql_server, database)) == []
    untouched = ("users", "chat_sessions", "emotion_analysis", "user_feedback")
    now = checksums(mysql_server, database)
    assert {name: now[name] for name in untouched} == {name: sums[name] for name in untouched}
    # The writer kept going while the deploy ran.
    assert [write for write in writes if started < write["at"] < ended]


def test_an_application_deleting_rows_does_not_make_a_deploy_fail(settings, cli_env, mysql_server, tmp_path):
    """Rows the application deletes during a harmless deploy are not 'lost rows'."""
    database = settings.database
    prepare(mysql_server, settings)
    env = {
        **cli_env,
        **write_revisions(tmp_path, f'op.add_column("users", sa.Column("mood", sa.String(20)))\n{PAUSE}'),
        "BACKUP_DIR": str(tmp_path / "backups"),
        "DEPLOY_STEPS": "preflight,backup,upgrade,verify",
        "DEPLOY_VERIFY_MODELS": "0",
    }
    writer = Writer(cli_env, tmp_path)
    try:
        writer.wait_for_writes(30, "before the deploy")
        query(mysql_server, "DELETE FROM system_logs WHERE id <= 2", database=database)  # the application's purge
        deploy = run_invoke(env, "db.deploy", "--to", FIRST)
        writer.stop()
    finally:
        writer.kill()
    assert deploy.returncode == 0, deploy.output
    assert version_rows(mysql_server, database) == [FIRST]
    assert query(mysql_server, "SELECT COUNT(*) FROM system_logs WHERE id <= 2", database=database) == [(0,)]


GATE = "live-writes-gate"


def test_values_the_application_changed_after_the_deploy_are_kept(settings, cli_env, mysql_server, tmp_path):
    """The application changes rows the deploy changed, while the deploy waits at a gate the test
    holds; the rollback puts back every value but those, and says how many it kept."""
    database = settings.database
    prepare(mysql_server, settings)
    first = "\n".join(
        [
            "op.execute(\"UPDATE chat_messages SET content = CONCAT(content, ' [m]') WHERE id <= 20\")",
            NON_STRICT,
            'op.alter_column("chat_messages", "emotion", existing_type=sa.String(32), type_=sa.String(3))',
            "op.execute(\"INSERT INTO knowledge (category, title, content) VALUES ('new', 'n1', 'x')\")",
            'op.execute("DELETE FROM system_logs WHERE id = 1")',
        ]
    )
    second = f"op.execute(\"SELECT GET_LOCK('{GATE}', 120)\")\n{FAIL}"
    env = {
        **cli_env,
        **write_revisions(tmp_path, first, second),
        "DEPLOY_STEPS": "preflight,upgrade,verify",
        "DEPLOY_VERIFY_MODELS": "0",
    }
    before = all_rows(mysql_server, database)
    with held_connection(mysql_server, None, f"SELECT GET_LOCK('{GATE}', 0)") as gate:
        deploy = Spawned(env, "db.deploy", "--to", SECOND)
        wait_until(lambda: statements_running(mysql_server, f"GET_LOCK\\('{GATE}'"), "the deploy at the gate")
        for statement in (
            "UPDATE chat_messages SET content = 'app5' WHERE id = 5",
            "UPDATE chat_messages SET emotion = 'zz' WHERE id = 2",
            "UPDATE knowledge SET content = 'appk' WHERE title = 'n1'",
            "INSERT INTO system_logs (id, module, message) VALUES (1, 'app', 'reused id')",
        ):
            query(mysql_server, statement, database=database)
        with gate.cursor() as cursor:
            cursor.execute(f"SELECT RELEASE_LOCK('{GATE}')")
        result = deploy.result()
    assert result.returncode == 1 and "rolled back" in result.stderr, result.output
    # Row 2 counts twice: for the narrowed column and for the updated row.
    assert "kept 5 row(s) the application changed meanwhile" in result.stderr, result.output
    after = all_rows(mysql_server, database)
    messages = after["chat_messages"]
    assert messages[5]["content"] == "app5" and messages[2]["emotion"] == "zz"
    for key, row in before["chat_messages"].items():
        if key not in (2, 5):
            assert messages[key] == row, key  # content and emotion back in full
    assert [row["content"] for row in after["knowledge"].values() if row["title"] == "n1"] == ["appk"]
    assert after["system_logs"][1]["message"] == "reused id"
    assert {key: row for key, row in after["system_logs"].items() if key != 1} == {
        key: row for key, row in before["system_logs"].items() if key != 1
    }


def test_a_failed_production_downgrade_keeps_every_write_of_the_application(settings, cli_env, mysql_server, tmp_path):
    """On production a downgrade runs as a deploy: its destructive downgrade() is undone, the writes kept."""
    database = settings.database
    prepare(mysql_server, settings)
    versions = write_revisions(
        tmp_path, 'op.execute("SELECT 1")', first_downgrade=f"{KINDS['drop-column']}\n{PAUSE}\n{FAIL}"
    )
    env = {**cli_env, **versions, "BACKUP_DIR": str(tmp_path / "backups"), "DEPLOY_VERIFY_MODELS": "0"}
    assert run_invoke(env, "db.upgrade", "-r", FIRST).returncode == 0
    schema, sums, before = (
        raw_schema(mysql_server, database),
        checksums(mysql_server, database),
        all_rows(mysql_server, database),
    )

    writer = Writer(cli_env, tmp_path)
    try:
        writer.wait_for_writes(20, "before the downgrade")
        downgrade = run_invoke({**env, "APP_ENV": "production"}, "db.downgrade", "--yes", "--allow-production")
        writer.wait_for_writes(20, "after the downgrade")
        writes = writer.stop()
    finally:
        writer.kill()

    assert downgrade.returncode == 1, downgrade.output
    assert "▶ backup" in downgrade.stdout and "▶ downgrade" in downgrade.stdout, downgrade.output
    assert "downgrade rolled back" in downgrade.stderr and "every write of the application kept" in downgrade.stderr
    assert raw_schema(mysql_server, database) == schema
    assert version_rows(mysql_server, database) == [FIRST]
    assert differences(expected_after(before, writes), all_rows(mysql_server, database)) == []
    untouched = ("users", "chat_sessions", "emotion_analysis", "user_feedback")
    now = checksums(mysql_server, database)
    assert {name: now[name] for name in untouched} == {name: sums[name] for name in untouched}


def test_an_online_rollback_batch_chosen_as_a_deadlock_victim_runs_again(settings, mysql_server, monkeypatch):
    """The online-alter rollback's catch-up locks the table's rows, then aside's: an application
    write locking them the other way round makes a deadlock, whose victim is rolled back whole.
    Here the other transaction has written more rows, so the server picks the batch; it runs
    again once the write commits, and brings over the value that write left."""
    import threading

    from backend.dbops.connection import connect_session
    from backend.dbops.undo import online_alter

    database = settings.database
    mysql_server.execute(None, f"CREATE DATABASE `{database}`")
    mysql_server.execute(
        database,
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB",
        "CREATE TABLE aside LIKE t",
        "CREATE TABLE track (id INT PRIMARY KEY) ENGINE=InnoDB",
        "CREATE TABLE weight (id INT PRIMARY KEY) ENGINE=InnoDB",
        "INSERT INTO t VALUES (1, 'new 1'), (2, 'new 2'), (3, 'new 3')",
        "INSERT INTO aside VALUES (1, 'old 1'), (2, 'old 2'), (3, 'old 3')",
        "INSERT INTO track VALUES (1), (2), (3)",
    )
    blocker = mysql_server.connect(database, autocommit=False)
    outcome: dict[str, object] = {}
    batch, failures = online_alter._catch_up_batch, []

    def watched_batch(*arguments):
        try:
            return batch(*arguments)
        except Exception as exc:
            failures.append(exc.args[:1])
            raise

    monkeypatch.setattr(online_alter, "_catch_up_batch", watched_batch)

    def catch_up() -> None:
        try:
            with connect_session(settings) as session:
                outcome["thread"] = session.value("SELECT CONNECTION_ID()")
                mapping = [("id", "id"), ("v", "v")]
                outcome["moved"] = online_alter._catch_up(session, "t", "aside", "track", mapping, ["id"])
        except Exception as exc:  # the test's assertion names it
            outcome["error"] = exc

    try:
        with blocker.cursor() as cursor:
            cursor.executemany("INSERT INTO weight VALUES (%s)", [(n,) for n in range(1000)])
            cursor.execute("UPDATE aside SET v = 'blocker' WHERE id = 2")
            worker = threading.Thread(target=catch_up)
            worker.start()
            wait_until(
                lambda: (
                    outcome.get("thread")
                    and query(
                        mysql_server,
                        "SELECT 1 FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = %s "
                        "AND trx_state = 'LOCK WAIT'",
                        (outcome["thread"],),
                    )
                ),
                "the catch-up batch to wait for the blocker's row of aside",
            )
            # The batch holds t's row 2 (read to copy it): this write closes the cycle.
            cursor.execute("UPDATE t SET v = 'late 2' WHERE id = 2")
        blocker.commit()
        worker.join(timeout=60)
    finally:
        blocker.close()

    assert not worker.is_alive() and "error" not in outcome, outcome
    assert failures == [(online_alter.DEADLOCK,)]
    assert outcome["moved"] == 3
    assert query(mysql_server, "SELECT id, v FROM aside ORDER BY id", database=database) == [
        (1, "new 1"),
        (2, "late 2"),
        (3, "new 3"),
    ]
    assert query(mysql_server, "SELECT COUNT(*) FROM track", database=database) == [(0,)]
