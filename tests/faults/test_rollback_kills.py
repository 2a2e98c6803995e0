"""SIGKILL during a rollback and during a restore, then `db.check` and `db.recover`.

The deploy fails after a revision that updated rows, dropped a column of a table of 100,000
rows and dropped a table, while a writer process writes. Its rollback is parked by a lock
the test holds, at the rename of the dropped table, at the re-adding of the column, in the
middle of joining the column's values back, and at putting the updated rows back, and the
deploy is killed there. `db.check` must then fail naming `db.recover`, and `db.recover` must
bring the database to its state before the deploy with every write of the writer kept.
A restore is killed while it renames the replaced tables aside and while the client loads
the dump: nothing of its pipeline may outlive it, `db.check` fails, `db.recover` finishes it
and `db.recover --undo` puts the replaced tables back.
"""

from __future__ import annotations

import threading
from contextlib import ExitStack, suppress
from dataclasses import replace

import pymysql
import pytest

from backend.dbops.backup import backup
from backend.dbops.servers import pid_alive
from tests.command_line import Spawned, assert_one_error_line, run_invoke
from tests.faults.helpers import held_connection, prepare, wait_lock_free
from tests.faults.live import FAIL, SECOND, Writer, all_rows, differences, expected_after, write_revisions
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

pytestmark = pytest.mark.faults("rollback and restore kills")

GATE = "rollback-kill-gate"
EXTRA_MESSAGES = 100_000
FIRST_BODY = "\n".join(
    [
        "op.execute(\"UPDATE knowledge SET tags = 'backfilled'\")",
        'op.drop_column("chat_messages", "emotion")',
        'op.drop_table("system_logs")',
    ]
)
SECOND_BODY = f"op.execute(\"SELECT GET_LOCK('{GATE}', 120)\")\n{FAIL}"


def grow_messages(server, database: str) -> None:
    """chat_messages doubled until it has over EXTRA_MESSAGES rows, so that joining a column back takes a while."""
    while query(server, "SELECT COUNT(*) FROM chat_messages", database=database)[0][0] < EXTRA_MESSAGES:
        query(
            server,
            "INSERT INTO chat_messages (session_id, user_id, role, content, emotion) "
            "SELECT session_id, user_id, role, CONCAT('bulk ', id), emotion FROM chat_messages",
            database=database,
        )


def hold_name(server, database: str, table: str) -> str:
    rows = query(
        server,
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME LIKE %s",
        (database, f"alembic\\_hold\\_%\\_{table}"),
    )
    assert len(rows) == 1, rows
    return rows[0][0]


ONLINE_BODY = (
    '# ddl-guard: online\nop.alter_column("chat_messages", "content", existing_type=sa.Text(), type_=sa.String(2000))'
)


# The undo of an ALTER run online (its original aside, the copy in its place), parked.
ONLINE_PARKS = {
    # Installing the mirror triggers (the writer's inserts wait on the same lock meanwhile).
    "online-mirror": (lambda server, db: "LOCK TABLES chat_messages READ", r"^LOCK TABLES `chat_messages` WRITE"),
    # The cut-over back, which locks the tables whose foreign keys point at chat_messages for writing: an
    # open transaction that read user_feedback holds it off (the mirror's lock takes such tables only
    # for reading, for the cascades). The mirror is in place and the rows written since brought over.
    "online-cut-back": (
        lambda server, db: "SELECT COUNT(*) FROM user_feedback",
        r"^LOCK TABLES `chat_messages` WRITE.*`user_feedback` WRITE",
    ),
}


# Where the rollback is parked: (what the test holds, once the deploy waits at the gate; the statement to see)
PARKS = {
    "rename-table-back": (
        lambda server, db: f"LOCK TABLES `{hold_name(server, db, 'system_logs')}` READ",
        r"^RENAME TABLE `alembic_hold_",
    ),
    "re-add-column": (lambda server, db: "LOCK TABLES chat_messages READ", r"^LOCK TABLES `chat_messages` WRITE"),
    "join-values-back": (None, r"^UPDATE `chat_messages` t JOIN `alembic_hold_"),
    # Which statement of the rows' undo meets the row lock first depends on the server's plan.
    "rows-back": (
        lambda server, db: "SELECT id FROM knowledge WHERE id = 1 FOR UPDATE",
        r"^(UPDATE|DELETE t FROM) `knowledge` t JOIN",
    ),
}


@pytest.mark.parametrize("park", [*PARKS, *ONLINE_PARKS])
def test_sigkill_during_a_rollback_then_recover(park, settings, cli_env, mysql_server, tmp_path):
    if park == "online-cut-back" and mysql_server.instance is not None and mysql_server.instance.flavour == "mysql":
        pytest.skip(
            "on MySQL the mirror's LOCK TABLES also waits for a transaction on the tables whose foreign keys "
            "point at chat_messages, so no lock parks the rollback between its mirror and its cut-over"
        )
    database = settings.database
    prepare(mysql_server, settings)
    grow_messages(mysql_server, database)
    env = {
        **cli_env,
        **write_revisions(tmp_path, ONLINE_BODY if park in ONLINE_PARKS else FIRST_BODY, SECOND_BODY),
        "DEPLOY_STEPS": "preflight,upgrade,verify",
        "DEPLOY_VERIFY_MODELS": "0",
        "DDL_WAIT_SECONDS": "0",
    }
    schema, before = raw_schema(mysql_server, database), all_rows(mysql_server, database)
    hold, pattern = {**PARKS, **ONLINE_PARKS}[park]
    writer = Writer(cli_env, tmp_path)
    try:
        writer.wait_for_writes(20, "before the deploy")
        with ExitStack() as stack:
            gate = stack.enter_context(held_connection(mysql_server, None, f"SELECT GET_LOCK('{GATE}', 0)"))
            deploy = Spawned(env, "db.deploy", "--to", SECOND)
            stack.callback(deploy.sigkill_if_running)
            wait_until(lambda: statements_running(mysql_server, f"GET_LOCK\\('{GATE}'"), "the deploy at the gate")
            # Writes after the deploy's statements (after an online ALTER's cut-over): the rollback must keep them.
            writer.wait_for_writes(20, "while the deploy waits at the gate")
            if hold is not None:
                holder = mysql_server.connect(database, autocommit=False)
                stack.callback(holder.close)
                stack.callback(holder.rollback)
                with holder.cursor() as cursor:
                    cursor.execute(hold(mysql_server, database))
            with gate.cursor() as cursor:
                cursor.execute(f"SELECT RELEASE_LOCK('{GATE}')")
            wait_until(lambda: statements_running(mysql_server, pattern), f"the rollback at {park}", timeout=60)
            deploy.sigkill()
        assert deploy.process.returncode == -9
        wait_lock_free(mysql_server, database)
        assert "↩ rollback" in deploy.output

        check = run_invoke(env, "db.check")
        assert check.returncode == 1, check.output
        assert "rollback of deploy" in check.stderr and "was interrupted" in check.stderr, check.output
        assert "`invoke db.recover`" in check.stderr
        refused = assert_one_error_line(run_invoke(env, "db.deploy", "--to", SECOND))
        assert "preflight failed" in refused and "rollback of deploy" in refused

        recovered = run_invoke(env, "db.recover")
        assert recovered.returncode == 0, recovered.output
        assert "interrupted rollback finished" in recovered.stdout, recovered.output
        writer.wait_for_writes(20, "after the recovery")
        writes = writer.stop()
    finally:
        writer.kill()
    assert raw_schema(mysql_server, database) == schema
    assert version_rows(mysql_server, database) == [HEAD]
    assert differences(expected_after(before, writes), all_rows(mysql_server, database)) == []
    assert run_invoke(env, "db.check").returncode == 0
    assert "nothing to recover" in assert_one_error_line(run_invoke(env, "db.recover"))


@pytest.fixture
def restored_env(settings, cli_env, mysql_server, tmp_path):
    """A database with a backup of it taken, then changed (the restore must bring the backup back)."""
    prepare(mysql_server, settings)
    grow_messages(mysql_server, settings.database)
    # DDL_WAIT_SECONDS=0: the restore's RENAME queues behind the test's lock at once, where it is seen.
    env = {**cli_env, "BACKUP_DIR": str(tmp_path / "backups"), "DDL_WAIT_SECONDS": "0"}
    path = backup(replace(settings, backup_dir=tmp_path / "backups")).path
    at_backup = checksums(mysql_server, settings.database)
    query(mysql_server, "DELETE FROM chat_messages WHERE id > 100", database=settings.database)
    query(mysql_server, "UPDATE users SET nickname = 'changed after the backup'", database=settings.database)
    return env, path, at_backup, checksums(mysql_server, settings.database)


@pytest.mark.parametrize("park", ["set-aside", "load"])
@pytest.mark.parametrize("then", ["finish", "undo"])
def test_sigkill_during_a_restore_then_recover(park, then, restored_env, settings, mysql_server):
    env, path, at_backup, before_restore = restored_env
    database = settings.database
    with ExitStack() as stack:
        if park == "set-aside":
            stack.enter_context(held_connection(mysql_server, database, "LOCK TABLES users READ"))
        restore = Spawned(env, "db.restore", str(path), "--yes")
        stack.callback(restore.sigkill_if_running)
        pattern = r"^RENAME TABLE `chat_messages`" if park == "set-aside" else r"^INSERT INTO `chat_messages`"
        wait_until(lambda: statements_running(mysql_server, pattern), f"the restore at {park}", timeout=60)
        restore.sigkill()
    # Its decompressor and client die with it: none outlives the lock.
    wait_until(lambda: not any(pid_alive(pid) for pid in restore.orphans), "the restore's children to die", 10)
    wait_lock_free(mysql_server, database)

    check = run_invoke(env, "db.check")
    assert check.returncode == 1 and "was interrupted" in check.stderr and "db.recover" in check.stderr, check.output
    recovered = run_invoke(env, "db.recover", *(["--undo"] if then == "undo" else []))
    assert recovered.returncode == 0, recovered.output
    assert tables(mysql_server, database) == ["alembic_version", *APP_TABLES]
    assert checksums(mysql_server, database) == (at_backup if then == "finish" else before_restore)
    assert run_invoke(env, "db.check").returncode == 0


@pytest.mark.parametrize("during", ["db.check", "db.recover", "db.recover --undo"])
def test_a_killed_restores_rename_runs_on(during, restored_env, settings, mysql_server):
    """The server runs a dead client's statement to its end unless it notices the client is gone
    first (a wait for a table checks every second): the killed restore's RENAME may move the tables
    while db.check reads them or db.recover works. The test sends that RENAME again, queued behind
    its lock, and lets it run once the command waits for it (or has ended): db.check names the
    interrupted restore, not a missing table; db.recover stops that RENAME, then finishes or undoes the
    restore all the same."""
    env, path, at_backup, before_restore = restored_env
    database = settings.database
    with ExitStack() as stack:
        lock = stack.enter_context(held_connection(mysql_server, database, "LOCK TABLES users READ"))
        restore = Spawned(env, "db.restore", str(path), "--yes")
        stack.callback(restore.sigkill_if_running)
        pattern = r"^RENAME TABLE `chat_messages`"
        [(_, _, renaming)] = wait_until(lambda: statements_running(mysql_server, pattern), "the RENAME", timeout=60)
        restore.sigkill()
        wait_lock_free(mysql_server, database)
        wait_until(lambda: not statements_running(mysql_server, pattern), "the server to drop the dead client's RENAME")
        renamer = mysql_server.connect(database)
        stack.callback(renamer.close)

        def send_rename() -> None:
            with suppress(pymysql.err.OperationalError):  # db.recover stops it ("Query execution was interrupted")
                renamer.cursor().execute(renaming)

        rename = threading.Thread(target=send_rename)
        rename.start()
        stack.callback(rename.join)
        wait_until(lambda: statements_running(mysql_server, pattern), "the test's RENAME to wait")
        command = Spawned(env, *during.split())
        stack.callback(command.sigkill_if_running)
        waiting = "Waiting for table metadata lock"
        wait_until(
            lambda: (
                command.process.poll() is not None
                or [row for row in statements_running(mysql_server, ".", waiting) if row[0] != renamer.thread_id()]
            ),
            f"{during} to end or to wait for a table the RENAME holds",
            timeout=60,
        )
        with lock.cursor() as cursor:
            cursor.execute("UNLOCK TABLES")
        rename.join()
        result = command.result()
    if during == "db.check":
        assert result.returncode == 1 and "unexpected" not in result.stderr, result.output
        assert "was interrupted" in result.stderr and "db.recover" in result.stderr, result.output
        assert [name for name in tables(mysql_server, database) if not name.startswith("alembic_")] == []
        result = run_invoke(env, "db.recover")
    assert result.returncode == 0, result.output
    assert tables(mysql_server, database) == ["alembic_version", *APP_TABLES]
    assert checksums(mysql_server, database) == (before_restore if "--undo" in during else at_backup)
    assert run_invoke(env, "db.check").returncode == 0

    assert run_invoke(env, "db.check").returncode == 0
