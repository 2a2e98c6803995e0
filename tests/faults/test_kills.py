"""SIGKILL of `invoke db.deploy` in each phase, then the next run and the recovery.

The deploy is parked in a phase by something the test holds (the migration lock, a table
lock the next statement needs, a window of the fault revision), or caught inside a
slow restart command; the server's process list and the deploy's own
"▶ step" and "→ revision" lines say when it is there. Afterwards the database must end
either exactly as before the deploy or fully upgraded, never in between, with every
application table's CHECKSUM TABLE as in a clean run and the lock free.
"""

from __future__ import annotations

import re
from contextlib import ExitStack
from dataclasses import replace

import pytest

from backend.dbops.backup_files import list_backups
from backend.dbops.backup_verify import verify_backup
from tests.command_line import Spawned, assert_one_error_line, run_invoke
from tests.faults.helpers import (
    F1,
    PARK_SEQUENCE,
    applied_statements,
    clean_env,
    db_state,
    dump_parked,
    fault_settings,
    held_connection,
    hold_window,
    in_window,
    park_dump,
    prepare,
    unfinished_journal,
    wait_lock_free,
)
from tests.helpers import cmdline, descendants, lock_holder, query, statements_running, wait_until

pytestmark = pytest.mark.faults("kills")

# phase -> how a half-applied revision is settled (None: nothing is left half-applied)
PHASES = {
    "lock-wait": None,  # waiting in GET_LOCK for another holder
    "lock-held": None,  # holding the lock, reading alembic_version
    "preflight": None,
    "backup": None,  # the dump client running
    "statement-0": "undo",  # journal says running, no statement applied yet
    "statement-1": "finish",
    "statement-2": "undo",
    "statement-3": "finish",  # every statement applied, alembic_version not updated
    "verify": None,
    "restart": None,
}


def verify_lock(database: str) -> str:
    """The named lock the test holds and the verify step's smoke SQL waits for."""
    return f"park-verify:{database}"


def park(stack: ExitStack, phase: str, server, database: str) -> None:
    """Hold what keeps the deploy in phase once it gets there."""
    if phase == "lock-wait":
        stack.enter_context(held_connection(server, None, f"SELECT GET_LOCK('alembic:{database}', 0)"))
    elif phase == "lock-held":
        stack.enter_context(held_connection(server, database, "LOCK TABLES alembic_version WRITE"))
    elif phase == "preflight":
        stack.enter_context(held_connection(server, database, "LOCK TABLES alembic_journal WRITE"))
    elif phase == "backup":
        park_dump(stack, server, database)
    elif phase == "verify":
        stack.enter_context(held_connection(server, None, f"SELECT GET_LOCK('{verify_lock(database)}', 0)"))
    elif phase.startswith("statement-"):
        hold_window(stack, server, database, int(phase.rsplit("-", 1)[1]))


def wait_in_phase(phase: str, deploy: Spawned, server, database: str, stack: ExitStack) -> None:
    waiting = "metadata lock"
    if phase == "lock-wait":
        wait_until(lambda: statements_running(server, rf"GET_LOCK\('alembic:{database}'"), "the deploy in GET_LOCK")
    elif phase == "lock-held":
        wait_until(lambda: statements_running(server, "alembic_version", waiting), "the deploy to read its revision")
        assert lock_holder(server, database) is not None
    elif phase == "preflight":
        deploy.wait_for("▶ preflight")
        wait_until(lambda: statements_running(server, "alembic_journal", waiting), "the preflight to read the journal")
    elif phase == "backup":
        deploy.wait_for("▶ backup")
        wait_until(lambda: dump_parked(server), "the dump to reach park_seq")
    elif phase.startswith("statement-"):
        deploy.wait_for(f"→ {F1}")
        count = int(phase.rsplit("-", 1)[1])
        wait_until(lambda: in_window(server, database, count), f"the window after {count} statement(s)")
    elif phase == "verify":
        # The smoke SQL waits for a lock the test holds from the start: no race with a fast upgrade.
        deploy.wait_for("▶ verify")
        wait_until(lambda: statements_running(server, re.escape(verify_lock(database))), "verify's smoke SQL")
    elif phase == "restart":
        deploy.wait_for("▶ restart")
        wait_until(
            lambda: any(cmdline(pid).startswith("sleep 30") for pid in descendants(deploy.pid)), "the restart command"
        )


def applied_entries(server, database: str) -> int:
    return query(
        server,
        "SELECT COUNT(*) FROM alembic_journal WHERE revision = %s AND direction = 'upgrade' AND status = 'applied'",
        (F1,),
        database,
    )[0][0]


@pytest.mark.parametrize("phase", list(PHASES))
def test_sigkill_in_each_phase_then_recover(phase, reference, settings, cli_env, mysql_server, tmp_path):
    database = settings.database
    prepare(mysql_server, fault_settings(settings, reference.versions_env))
    assert db_state(mysql_server, database) == reference.before
    # A full dump, so that the backup phase runs the dump client to be killed in.
    env = {**clean_env(cli_env, reference, tmp_path), "DEPLOY_FULL_BACKUP": "1"}
    killed_env = (
        {**env, "RESTART_COMMAND": "sleep 30"}
        if phase == "restart"
        else {**env, "DEPLOY_SMOKE_SQL": f"SELECT GET_LOCK('{verify_lock(database)}', 60)"}
        if phase == "verify"
        else env
    )

    with ExitStack() as stack:
        park(stack, phase, mysql_server, database)
        deploy = Spawned(killed_env, "db.deploy", "--to", F1)
        stack.callback(deploy.sigkill_if_running)
        wait_in_phase(phase, deploy, mysql_server, database, stack)
        deploy.sigkill()
    # What the test held is released: a statement the dead deploy left queued may now run.
    assert deploy.process.returncode == -9
    # Children the kill orphaned end by themselves once their pipe breaks; the restart command would not.
    deploy.reap_orphans(timeout=0 if phase == "restart" else 15)
    wait_lock_free(mysql_server, database)

    if phase == "backup":
        query(mysql_server, f"DROP SEQUENCE {PARK_SEQUENCE}", database=database)
    killed_state = db_state(mysql_server, database)
    mode = PHASES[phase]
    if mode is None:
        assert unfinished_journal(mysql_server, database) == []
        upgraded = phase in ("verify", "restart")
        assert killed_state == (reference.after if upgraded else reference.before)
    else:
        count = int(phase.rsplit("-", 1)[1])
        assert applied_statements(mysql_server, database) == tuple(index < count for index in range(3))
        assert unfinished_journal(mysql_server, database) == [(F1, "upgrade", "running")]
        # The next run detects it and refuses, changing nothing.
        refused = run_invoke(env, "db.deploy", "--to", F1)
        line = assert_one_error_line(refused)
        assert "preflight failed" in line and "half-applied revision" in line and F1 in line, line
        assert db_state(mysql_server, database) == killed_state
        recovered = run_invoke(env, "db.recover", f"--{mode}")
        assert recovered.returncode == 0, recovered.output
        assert db_state(mysql_server, database) == (reference.before if mode == "undo" else reference.after)
        assert unfinished_journal(mysql_server, database) == []
        wait_lock_free(mysql_server, database)

    # A backup the kill interrupted has no manifest and is never listed as good.
    for entry in list_backups(replace(settings, backup_dir=tmp_path / "backups")):
        assert not entry.good or verify_backup(entry.path, database)
    if phase == "backup":
        leftovers = sorted(path.name for path in (tmp_path / "backups").iterdir())
        assert leftovers and all(name.endswith(".partial") for name in leftovers), leftovers

    if mode == "finish":
        assert applied_entries(mysql_server, database) == 1
        return  # fully upgraded by the recovery
    final = run_invoke(env, "db.deploy", "--to", F1)
    assert final.returncode == 0, final.output
    assert db_state(mysql_server, database) == reference.after
    assert applied_entries(mysql_server, database) == 1
    assert unfinished_journal(mysql_server, database) == []
    wait_lock_free(mysql_server, database)
