"""The sandbox server through the command line: the main job with nothing configured."""

from __future__ import annotations

import json
import os
import stat

import pytest

from backend.dbops.servers import pid_alive
from tests.command_line import assert_one_error_line, run_invoke
from tests.helpers import APP_TABLES, HEAD


@pytest.fixture
def bare_env(cli_env, tmp_path):
    """No database configured anywhere; the sandbox lives in a temporary folder."""
    env = {key: value for key, value in cli_env.items() if not key.startswith("MYSQL_")}
    env["SANDBOX_DIR"] = str(tmp_path / "sandbox")
    yield env
    run_invoke(env, "sandbox.down")


def test_sandbox_runs_the_main_job_with_nothing_configured(bare_env, tmp_path):
    assert "no database configured" in assert_one_error_line(run_invoke(bare_env, "db.check"))
    status = run_invoke(bare_env, "sandbox.status")
    assert status.returncode == 1 and "no sandbox" in status.stdout

    result = run_invoke(bare_env, "sandbox.up", "db.init", "db.check")
    assert result.returncode == 0, result.output
    assert "sandbox running" in result.stdout and f"is at {HEAD}" in result.stdout
    assert "(from sandbox)" in result.stdout

    state_file = tmp_path / "sandbox" / "sandbox.json"
    state = json.loads(state_file.read_text())
    assert stat.S_IMODE(os.stat(state_file).st_mode) == 0o600
    assert state["password"] not in result.output
    pid = state["instance"]["pid"]
    assert pid_alive(pid)

    again = run_invoke(bare_env, "sandbox.up")
    assert again.returncode == 0 and "already" in again.stdout

    kept = run_invoke(bare_env, "sandbox.down", "--keep-data")
    assert kept.returncode == 0 and "data kept" in kept.stdout
    assert not pid_alive(pid)
    assert "cannot reach" in assert_one_error_line(run_invoke(bare_env, "db.current"))
    restarted = run_invoke(bare_env, "sandbox.up", "db.current")
    assert restarted.returncode == 0, restarted.output
    assert HEAD in restarted.stdout  # the data survived

    down = run_invoke(bare_env, "sandbox.down")
    assert down.returncode == 0 and "removed" in down.stdout
    assert not (tmp_path / "sandbox").exists()
    assert "no database configured" in assert_one_error_line(run_invoke(bare_env, "db.check"))


def test_sandbox_reports_a_server_that_cannot_start(bare_env):
    result = run_invoke(bare_env, "sandbox.up", "--binary", "/bin/false")
    assert_one_error_line(result)


def test_seven_tables_in_sandbox(bare_env, tmp_path):
    assert run_invoke(bare_env, "sandbox.up", "db.init").returncode == 0
    state = json.loads((tmp_path / "sandbox" / "sandbox.json").read_text())
    import pymysql

    connection = pymysql.connect(
        host="127.0.0.1", port=state["port"], user=state["user"], password=state["password"], database=state["database"]
    )
    with connection.cursor() as cursor:
        cursor.execute("SHOW TABLES")
        assert sorted(row[0] for row in cursor.fetchall()) == sorted(
            ["alembic_journal", "alembic_lock", "alembic_version", *APP_TABLES]
        )
    connection.close()
