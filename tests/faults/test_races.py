"""Several `invoke db.deploy` processes started together against one database.

Exactly one takes the migration lock and deploys; each other waits DEPLOY_LOCK_TIMEOUT
seconds, then exits non-zero with one line naming the holder. The slow revision runs once.
"""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack

import pytest

from tests.command_line import Spawned, assert_one_error_line, run_invoke
from tests.faults.helpers import held_connection, prepare
from tests.helpers import NO_BACKUP, lock_holder, query, statements_running, version_rows, versions_with, wait_until

pytestmark = pytest.mark.faults("races")

SLOW = "c3d4e5f6a7b8"  # tests/revisions/slow: SELECT SLEEP(4)
LOCK_TIMEOUT = 1


@pytest.mark.parametrize("count", [2, 5])
def test_concurrent_deploys_one_proceeds(count, cli_env, mysql_server, database_name, tmp_path):
    env = {
        **cli_env,
        **versions_with(tmp_path, "slow"),
        **NO_BACKUP,
        "DEPLOY_LOCK_TIMEOUT": str(LOCK_TIMEOUT),
        "DEPLOY_STEPS": "preflight,upgrade,verify",
    }
    assert run_invoke(env, "db.create", "db.upgrade", "-r", "e9e7d98878ca").returncode == 0
    assert version_rows(mysql_server, database_name) == ["e9e7d98878ca"]

    # Whoever takes the lock first is kept reading alembic_version until every other one has
    # given up, so that all of them meet a held lock however slowly the machine starts them.
    with held_connection(mysql_server, database_name, "LOCK TABLES alembic_version WRITE"):
        deploys = [Spawned(env, "db.deploy") for _ in range(count)]
        wait_until(
            lambda: statements_running(mysql_server, "alembic_version", "metadata lock"), "one deploy to hold the lock"
        )
        holder = lock_holder(mysql_server, database_name)

        def gave_up():
            ended = [deploy for deploy in deploys if deploy.process.poll() is not None]
            return ended if len(ended) == count - 1 else None

        losers = wait_until(gave_up, f"{count - 1} deploy(s) to give up", timeout=60)
        assert all(deploy.process.poll() is None for deploy in deploys if deploy not in losers)
    [winner] = [deploy for deploy in deploys if deploy not in losers]
    assert winner.finish() == 0, winner.output
    assert lock_holder(mysql_server, database_name) is None
    assert holder is not None

    for loser in losers:
        result = loser.result()
        line = assert_one_error_line(result)
        assert "migration lock" in line and f"gave up after {LOCK_TIMEOUT} s" in line, line
        assert f"pid {winner.pid}" in line and "deploy to head" in line and "since" in line, line
        # It gave up within the lock timeout of reaching the lock: the rest is starting Python.
        assert loser.ended - loser.started < LOCK_TIMEOUT + 30
        assert "▶" not in result.stdout  # not one step ran

    assert version_rows(mysql_server, database_name) == [SLOW]
    journal = query(
        mysql_server,
        "SELECT revision, status FROM alembic_journal WHERE direction = 'upgrade' AND revision = %s",
        (SLOW,),
        database_name,
    )
    assert journal == [(SLOW, "applied")]  # applied once
    deploys_recorded = query(mysql_server, "SELECT status FROM alembic_deploys", database=database_name)
    assert deploys_recorded == [("succeeded",)]
    assert "deployed 1 revision(s)" in "\n".join(winner.stdout)
    assert time.monotonic() - winner.started >= 4  # the slow revision ran in full


def test_check_while_a_rename_moves_the_tables(settings, cli_env, mysql_server):
    """Another session renames tables after db.check listed them and before it read them: a failed
    models check, not a crash. The RENAME waits behind the test's lock holding the other tables, so
    db.check waits for one of them, and reads it once the lock is let go and the RENAME is done."""
    database = settings.database
    prepare(mysql_server, settings)
    renaming = "RENAME TABLE chat_messages TO moved_messages, users TO moved_users"
    with ExitStack() as stack:
        lock = stack.enter_context(held_connection(mysql_server, database, "LOCK TABLES users READ"))
        renamer = mysql_server.connect(database)
        stack.callback(renamer.close)
        rename = threading.Thread(target=lambda: renamer.cursor().execute(renaming))
        rename.start()
        stack.callback(rename.join)
        wait_until(lambda: statements_running(mysql_server, "^RENAME TABLE chat_messages"), "the RENAME to wait")
        check = Spawned(cli_env, "db.check")
        stack.callback(check.sigkill_if_running)
        wait_until(
            lambda: statements_running(mysql_server, "^(?!RENAME)", "Waiting for table metadata lock"),
            "db.check to wait for a table the RENAME holds",
            timeout=60,
        )
        with lock.cursor() as cursor:
            cursor.execute("UNLOCK TABLES")
        rename.join()
        checked = check.result()
    assert checked.returncode == 1 and "unexpected" not in checked.stderr, checked.output
    assert "❌ models: table" in checked.stderr and "renamed or dropped while the schema was read" in checked.stderr
