"""The server dies (SIGKILL of mariadbd) under a deploy: during the backup, and between two
statements of the upgrade. A server of these tests' own is killed, then started again on
the same data folder and port.

No upgrade may follow a failed backup, no backup without a manifest may remain, and once the
server is back the next run detects the state and recovery ends before or after the deploy.
"""

from __future__ import annotations

import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest

from backend.config import Settings
from tests.command_line import Spawned, assert_one_error_line, run_invoke
from tests.faults.helpers import (
    F1,
    PARK_SEQUENCE,
    applied_statements,
    db_state,
    dump_parked,
    hold_window,
    in_window,
    park_dump,
    prepare,
    server_env,
    unfinished_journal,
    wait_lock_free,
)
from tests.helpers import query, wait_until

pytestmark = pytest.mark.faults("lost server")


@pytest.fixture
def lost_database(lost_server, reference, tmp_path):
    """A seeded database at HEAD on the killable server, and the environment to deploy it."""
    target = lost_server.target
    name = f"lost_{uuid.uuid4().hex[:10]}"
    settings = Settings(
        host=target.host,
        port=target.port,
        user=target.user,
        password=target.password,
        database=name,
        versions_dir=Path(reference.versions_env["MIGRATIONS_DIR"]),
    )
    prepare(target, settings)
    assert db_state(target, name) == reference.before
    yield name, server_env(target, name, reference, tmp_path)
    lost_server.ensure_running()
    query(lost_server.target, f"DROP DATABASE IF EXISTS `{name}`")


def test_server_killed_during_the_backup(lost_server, lost_database, reference, tmp_path):
    name, env = lost_database
    env = {**env, "DEPLOY_FULL_BACKUP": "1"}  # the backup step runs the dump client
    target = lost_server.target
    with ExitStack() as stack:
        park_dump(stack, target, name)
        deploy = Spawned(env, "db.deploy", "--to", F1)
        deploy.wait_for("▶ backup")
        wait_until(lambda: dump_parked(target), "the dump to reach park_seq")
        lost_server.kill()
        result = deploy.result()
    line = assert_one_error_line(result)
    assert "backup failed" in line and "unchanged" in line, line
    assert "▶ upgrade" not in result.stdout
    # The half-written file went with the failure: nothing that could pass for a backup.
    assert sorted(path.name for path in (tmp_path / "backups").iterdir()) == []

    lost_server.restart()
    query(target, f"DROP SEQUENCE {PARK_SEQUENCE}", database=name)
    wait_lock_free(target, name)
    assert db_state(target, name) == reference.before
    assert unfinished_journal(target, name) == []
    again = run_invoke(env, "db.deploy", "--to", F1)
    assert again.returncode == 0, again.output
    assert db_state(target, name) == reference.after
    [backup] = [path for path in (tmp_path / "backups").iterdir() if path.name.endswith(".sql.zst")]
    assert backup.with_name(backup.name + ".json").exists()


def test_server_killed_during_the_upgrade(lost_server, lost_database, reference, tmp_path):
    name, env = lost_database
    target = lost_server.target
    with ExitStack() as stack:
        hold_window(stack, target, name, 1)
        deploy = Spawned(env, "db.deploy", "--to", F1)
        deploy.wait_for(f"→ {F1}")
        wait_until(lambda: in_window(target, name, 1), "the window after the first statement")
        lost_server.kill()
        result = deploy.result()
    line = assert_one_error_line(result)
    # Nothing can be rolled back without a server: it says so, and how to settle it later.
    assert "upgrade failed" in line and "lost the connection" in line and "rollback impossible" in line, line
    assert "db.recover" in line, line

    lost_server.restart()
    wait_lock_free(target, name)
    assert applied_statements(target, name) == (True, False, False)
    assert unfinished_journal(target, name) == [(F1, "upgrade", "running")]
    half = db_state(target, name)
    refused = run_invoke(env, "db.deploy", "--to", F1)
    assert "half-applied revision" in assert_one_error_line(refused)
    assert db_state(target, name) == half
    recovered = run_invoke(env, "db.recover", "--undo")
    assert recovered.returncode == 0, recovered.output
    assert db_state(target, name) == reference.before
    again = run_invoke(env, "db.deploy", "--to", F1)
    assert again.returncode == 0, again.output
    assert db_state(target, name) == reference.after
    wait_lock_free(target, name)
