"""db.deploy through the real command line: the lock, the pipeline, rollback, records."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from dotenv import dotenv_values

from backend.config import PROJECT_ROOT
from tests.command_line import Spawned, assert_one_error_line, run_invoke
from tests.helpers import (
    APP_TABLES,
    HEAD,
    NO_BACKUP,
    checksums,
    query,
    raw_schema,
    seed,
    tables,
    version_rows,
    versions_with,
    wait_until,
)


def test_deploy_applies_records_and_reports(invoke, mysql_server, database_name, tmp_path):
    assert invoke("db.create").returncode == 0
    report = tmp_path / "deploy.json"
    result = invoke("db.deploy", "--report", str(report), env=NO_BACKUP)
    assert result.returncode == 0, result.output
    assert "✅ deployed 1 revision(s)" in result.stdout
    assert tables(mysql_server, database_name) == ["alembic_version", *APP_TABLES]
    record = json.loads(report.read_text())
    assert record["status"] == "succeeded" and record["to_revision"] == [HEAD] and record["from_revision"] == []
    assert [step["name"] for step in record["steps"]] == ["preflight", "upgrade", "verify"]
    listed = invoke("db.deploys")
    assert listed.returncode == 0 and "base -> " + HEAD in listed.stdout and "succeeded" in listed.stdout
    again = invoke("db.deploy", env=NO_BACKUP)
    assert again.returncode == 0 and "deployed 0 revision(s)" in again.stdout


def test_dry_run_changes_nothing(invoke, mysql_server, database_name):
    assert invoke("db.create").returncode == 0
    result = invoke("db.deploy", "--dry-run")
    assert result.returncode == 0, result.output
    assert "preflight → backup → upgrade → verify → restart" in result.stdout
    assert "CREATE TABLE chat_messages" in result.stdout and "nothing changed" in result.stdout
    connection = mysql_server.connect()
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (database_name,))
        assert cursor.fetchone()[0] == 0  # not even the lock table
    connection.close()


def test_verify_failure_rolls_back_applied_revisions(invoke, mysql_server, database_name, tmp_path):
    # The rehearsal cannot see a smoke query that fails on the real database.
    env = {
        **versions_with(tmp_path, "halfway", "a1b2*"),
        **NO_BACKUP,
        "DEPLOY_VERIFY_MODELS": "0",
        "DEPLOY_SMOKE_SQL": "SELECT (SELECT 1 UNION ALL SELECT 2) FROM users",
    }
    assert invoke("db.create", env=env).returncode == 0
    assert invoke("db.upgrade", "-r", HEAD, env=env).returncode == 0
    seed(mysql_server, database_name)
    before, sums = raw_schema(mysql_server, database_name), checksums(mysql_server, database_name)
    result = invoke("db.deploy", env=env)
    assert result.returncode == 1
    assert "verify failed" in result.output and "rolled back" in result.output
    assert raw_schema(mysql_server, database_name) == before
    assert checksums(mysql_server, database_name) == sums
    assert version_rows(mysql_server, database_name) == [HEAD]
    assert "rolled back" in invoke("db.deploys", env=env).stdout


def test_preflight_failure_changes_nothing(invoke, mysql_server, database_name):
    assert invoke("db.init").returncode == 0
    connection = mysql_server.connect(database_name)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE alembic_version SET version_num = 'feedfacecafe'")
    connection.close()
    result = invoke("db.deploy", env=NO_BACKUP)
    assert result.returncode == 1 and "preflight failed" in result.stderr and "unchanged" in result.stderr
    assert version_rows(mysql_server, database_name) == ["feedfacecafe"]


def test_two_concurrent_deploys_one_waits_and_names_the_holder(cli_env, mysql_server, database_name, tmp_path):
    env = {**cli_env, **versions_with(tmp_path, "slow"), **NO_BACKUP, "DEPLOY_LOCK_TIMEOUT": "1"}
    assert run_invoke(env, "db.create").returncode == 0
    assert run_invoke(env, "db.upgrade", "-r", HEAD).returncode == 0
    command = [sys.executable, "-m", "invoke", "db.deploy"]
    # The first deploy takes the lock, then waits on alembic_version (the test's table lock)
    # until the second has given up: the second meets a held lock however slowly it starts.
    holder = mysql_server.connect(database_name)
    with holder.cursor() as cursor:
        cursor.execute("LOCK TABLES alembic_version WRITE")
    first = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_until(
            lambda: _lock_held(mysql_server, database_name) and _waiting_on(mysql_server, "alembic_version"),
            "the first deploy to hold the lock and wait on alembic_version",
        )
        second = run_invoke(env, "db.deploy")
        line = assert_one_error_line(second)
        assert "migration lock" in line and "gave up after 1 s" in line
        assert f"pid {first.pid}" in line and "deploy to head" in line and "since" in line
    finally:
        holder.close()
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, out + err
    assert version_rows(mysql_server, database_name) == ["c3d4e5f6a7b8"]


def test_a_dead_holder_leaves_no_stale_lock(cli_env, mysql_server, database_name, settings):
    assert run_invoke(cli_env, "db.create").returncode == 0
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from backend.config import load_settings\n"
            "from backend.dbops.lock import migration_lock\n"
            "with migration_lock(load_settings(), 'holding'):\n"
            "    print('held', flush=True); time.sleep(60)\n",
        ],
        cwd=PROJECT_ROOT,
        env=cli_env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None  # stdout=PIPE
    assert holder.stdout.readline().strip() == "held"
    blocked = run_invoke({**cli_env, "DEPLOY_LOCK_TIMEOUT": "0"}, "db.upgrade")
    assert f"pid {holder.pid}" in assert_one_error_line(blocked)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    wait_until(lambda: not _lock_held(mysql_server, database_name), "the server to free a dead holder's lock")
    result = run_invoke({**cli_env, "DEPLOY_LOCK_TIMEOUT": "5"}, "db.upgrade")
    assert result.returncode == 0, result.output


def test_production_deploy_needs_confirmation(invoke, mysql_server, database_name):
    assert invoke("db.create").returncode == 0
    production = {"APP_ENV": "production"}
    assert "needs confirmation" in assert_one_error_line(invoke("db.deploy", env=production))
    assert tables(mysql_server, database_name) == []
    skipping = invoke("db.deploy", "--yes", env={**production, **NO_BACKUP})
    assert "may not skip backup" in assert_one_error_line(skipping)


def _waiting_on(server, table: str) -> bool:
    """Another connection's statement on table waits for a metadata lock."""
    connection = server.connect()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() "
            "AND STATE LIKE '%%metadata lock%%' AND INFO LIKE %s",
            (f"%{table}%",),
        )
        waiting = cursor.fetchone()[0] > 0
    connection.close()
    return waiting


def _running(server, statement: str) -> bool:
    """Another connection runs statement (exactly) right now."""
    connection = server.connect()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND INFO = %s",
            (statement,),
        )
        running = cursor.fetchone()[0] > 0
    connection.close()
    return running


def _lock_held(server, database: str) -> bool:
    connection = server.connect()
    with connection.cursor() as cursor:
        cursor.execute("SELECT IS_USED_LOCK(%s)", (f"alembic:{database}",))
        held = cursor.fetchone()[0] is not None
    connection.close()
    return held


def test_revision_failing_halfway_is_undone_and_lost_data_restored(invoke, mysql_server, database_name, tmp_path):
    env = {
        **versions_with(tmp_path, "halfway"),
        "DEPLOY_STEPS": "preflight,backup,upgrade,verify",
        "BACKUP_DIR": str(tmp_path / "backups"),
        "DEPLOY_VERIFY_MODELS": "0",
    }
    assert invoke("db.create", env=env).returncode == 0
    assert invoke("db.upgrade", "-r", HEAD, env=env).returncode == 0
    seed(mysql_server, database_name)
    before, sums = raw_schema(mysql_server, database_name), checksums(mysql_server, database_name)

    result = invoke("db.deploy", env=env)
    assert result.returncode == 1, result.output
    assert "upgrade of b2c3d4e5f6a7 failed" in result.output and "rolled back" in result.stderr
    # The dropped column's values came back from its holding table, not from the backup.
    assert re.search(
        r"undid alter chat_messages \(b2c3d4e5f6a7\): 50 row\(s\) of emotion back from alembic_hold_", result.stdout
    ), result.stdout
    assert raw_schema(mysql_server, database_name) == before
    assert checksums(mysql_server, database_name) == sums
    assert tables(mysql_server, database_name) == ["alembic_version", *APP_TABLES]
    assert version_rows(mysql_server, database_name) == [HEAD]
    # Nothing is left half-applied: the next check and deploy see a clean journal.
    check = invoke("db.check", env=env)
    assert check.returncode == 0, check.output
    assert "no half-applied revision" in check.stdout


def test_a_killed_upgrade_is_detected_and_refused(invoke, cli_env, mysql_server, tmp_path):
    env = {**versions_with(tmp_path, "slow"), **NO_BACKUP}
    assert invoke("db.create", env=env).returncode == 0
    assert invoke("db.upgrade", "-r", HEAD, env=env).returncode == 0
    process = subprocess.Popen(
        [sys.executable, "-m", "invoke", "db.upgrade"],
        cwd=PROJECT_ROOT,
        env={**cli_env, **env},
        stdout=subprocess.DEVNULL,
    )
    # Killed while the revision's statement runs on the server: its journal entry says running.
    wait_until(lambda: _running(mysql_server, "SELECT SLEEP(4)"), "the slow revision's statement to run")
    process.send_signal(signal.SIGKILL)
    process.wait()
    line = assert_one_error_line(invoke("db.upgrade", env=env))
    assert "upgrade c3d4e5f6a7b8" in line and "running" in line and "half-changed" in line
    check = invoke("db.check", env=env)
    assert check.returncode == 1 and "half-applied revision" in check.stderr
    assert invoke("db.stamp", "-r", HEAD, env=env).returncode == 0  # the user settles the state
    assert invoke("db.upgrade", env=env).returncode == 0


def test_recover_undo_a_revision_left_half_applied(invoke, mysql_server, database_name, tmp_path):
    env = {**versions_with(tmp_path, "halfway"), **NO_BACKUP}
    assert invoke("db.create", env=env).returncode == 0
    assert invoke("db.upgrade", "-r", "a1b2c3d4e5f6", env=env).returncode == 0
    seed(mysql_server, database_name)
    before = raw_schema(mysql_server, database_name)
    failed = invoke("db.upgrade", env=env)
    assert "upgrade of b2c3d4e5f6a7 failed" in assert_one_error_line(failed)
    assert raw_schema(mysql_server, database_name) != before  # half-changed
    assert "half-changed" in assert_one_error_line(invoke("db.upgrade", env=env))
    # This revision fails wherever it runs: it cannot be finished.
    assert "cannot finish" in assert_one_error_line(invoke("db.recover", "--finish", env=env))

    result = invoke("db.recover", "--undo", env=env)
    assert result.returncode == 0, result.output
    assert raw_schema(mysql_server, database_name) == before
    assert version_rows(mysql_server, database_name) == ["a1b2c3d4e5f6"]
    assert "data in chat_messages" in result.stdout  # its dropped column came back empty: said so
    assert "no half-applied revision" in invoke("db.check", env=env).stdout
    assert "nothing to recover" in assert_one_error_line(invoke("db.recover", "--undo", env=env))


def test_recover_finish_after_fixing_the_data(invoke, mysql_server, database_name, tmp_path):
    env = {**versions_with(tmp_path, "unique"), **NO_BACKUP}
    assert invoke("db.create", env=env).returncode == 0
    assert invoke("db.upgrade", "-r", HEAD, env=env).returncode == 0
    seed(mysql_server, database_name)
    connection = mysql_server.connect(database_name)
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO knowledge (category, title, content) VALUES ('stress', 'tips', 'breathe')")
    failed = invoke("db.upgrade", env=env)
    assert "Duplicate" in assert_one_error_line(failed)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM knowledge WHERE category = 'stress'")
    connection.close()
    result = invoke("db.recover", "--finish", env=env)
    assert result.returncode == 0, result.output
    assert version_rows(mysql_server, database_name) == ["d4e5f6a7b8c9"]
    schema = raw_schema(mysql_server, database_name)
    assert any(row[:2] == ("knowledge", "uq_knowledge_title") for row in schema["indexes"])
    assert invoke("db.check", env=env).returncode == 0


def test_full_pipeline_restarts_the_app_and_probes_its_health(app_env, mysql_server, database_name, tmp_path):
    env = {**app_env, "BACKUP_DIR": str(tmp_path / "backups"), "HEALTH_RETRIES": "20"}
    assert run_invoke(env, "db.create").returncode == 0
    result = run_invoke(env, "db.deploy", "--report", str(tmp_path / "report.json"))
    assert result.returncode == 0, result.output
    record = json.loads((tmp_path / "report.json").read_text())
    assert [step["name"] for step in record["steps"]] == ["preflight", "backup", "upgrade", "verify", "restart"]
    # Every statement creates a table: the undo log has nothing to keep, and nothing is dumped.
    backup_step = record["steps"][1]
    assert backup_step["detail"] == "no dump needed: nothing to keep: every pending statement is additive"
    assert record["backup_file"] is None and not (tmp_path / "backups").exists()
    assert f"revision {HEAD}" in result.stdout
    with urllib.request.urlopen(f"http://127.0.0.1:{env['APP_PORT']}/health", timeout=5) as response:
        assert json.loads(response.read())["revision"] == HEAD


def test_the_restarted_service_uses_the_password_the_deploy_used(app_env, cli_env, mysql_server, tmp_path):
    """MYSQL_PASSWORD exported and no config file: the service the deploy restarts connects with that
    password, which shows neither on its command line nor in its environment."""
    env = {
        **app_env,
        "DB_CONFIG_FILE": cli_env["DB_CONFIG_FILE"],
        "BACKUP_DIR": str(tmp_path / "backups"),
        "HEALTH_RETRIES": "20",
    }
    assert Path(env["DB_CONFIG_FILE"]).read_text() == "" and env["MYSQL_PASSWORD"] == mysql_server.password
    assert run_invoke(env, "db.create").returncode == 0
    result = run_invoke(env, "db.deploy")
    assert result.returncode == 0, result.output
    assert f"revision {HEAD}" in result.stdout
    with urllib.request.urlopen(f"http://127.0.0.1:{env['APP_PORT']}/health", timeout=5) as response:
        body = json.loads(response.read())
    assert body["revision"] == HEAD
    seen = Path(f"/proc/{body['pid']}/environ").read_bytes() + Path(f"/proc/{body['pid']}/cmdline").read_bytes()
    assert b"MYSQL_PASSWORD=" not in seen and mysql_server.password.encode() not in seen


def test_failed_upgrade_does_not_restart(app_env, mysql_server, database_name, tmp_path):
    env = {**app_env, **versions_with(tmp_path, "halfway"), "BACKUP_DIR": str(tmp_path / "backups")}
    assert run_invoke(env, "db.create").returncode == 0
    result = run_invoke(env, "db.deploy")
    assert result.returncode == 1 and "rolled back" in result.stderr
    assert "▶ restart" not in result.stdout
    assert not Path(env["APP_PID_FILE"]).exists()


def test_the_example_configs_smoke_sql_passes(invoke, mysql_server, database_name):
    """config.env.example sets DEPLOY_SMOKE_SQL: a deploy with it must pass, and a failing statement fail verify."""
    example = dotenv_values(PROJECT_ROOT / "config.env.example")["DEPLOY_SMOKE_SQL"]
    assert invoke("db.create").returncode == 0
    result = invoke("db.deploy", env={**NO_BACKUP, "DEPLOY_SMOKE_SQL": example})
    assert result.returncode == 0, result.output
    assert "smoke ok; smoke ok" in result.stdout
    failing = invoke("db.verify", env={"DEPLOY_SMOKE_SQL": "SELECT no_such_column FROM users"})
    assert failing.returncode == 1 and "Unknown column 'no_such_column'" in failing.stderr


def test_a_long_transaction_never_queues_the_application_behind_the_deploy(
    invoke, cli_env, mysql_server, database_name, tmp_path
):
    """An open transaction on users: the deploy's ALTER waits for it without queuing, so the
    application's queries on users keep running; once it ends the ALTER runs."""
    env = {**versions_with(tmp_path, "halfway", "a1b2*"), **NO_BACKUP, "DEPLOY_VERIFY_MODELS": "0"}
    assert invoke("db.create", "db.upgrade", "-r", HEAD, env=env).returncode == 0
    holder = mysql_server.connect(database_name, autocommit=False)
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM users")  # holds a metadata lock on users until it ends
        wait_until(
            lambda: query(
                mysql_server,
                "SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_started < NOW() - INTERVAL 1 SECOND",
            )[0][0],
            "a long transaction",
            # The server refreshes INNODB_TRX only when it was not read for 0.1 s: polled faster, it stays as it was.
            interval=0.2,
        )
        deploy = Spawned({**cli_env, **env}, "db.deploy", "--to", "a1b2c3d4e5f6")
        deploy.wait_for("⏳ waiting for session")
        latencies = []
        for number in range(20):  # the application meanwhile: not queued behind a pending ALTER
            started = time.monotonic()
            query(
                mysql_server,
                "INSERT INTO users (username, password_hash) VALUES (%s, 'h')",
                (f"app{number}",),
                database_name,
            )
            latencies.append(time.monotonic() - started)
        assert max(latencies) < 1, latencies
    finally:
        holder.rollback()
        holder.close()
    assert deploy.finish() == 0, deploy.output
    assert version_rows(mysql_server, database_name) == ["a1b2c3d4e5f6"]
