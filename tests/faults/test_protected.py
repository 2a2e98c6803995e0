"""Drop, reset, restore and deploy on the protected production environment, with and without a terminal.

On production, drop, reset and restore go ahead only with both --yes and --allow-production:
not with one of them, not when an operator at a terminal types the database name, not
without a terminal. A deploy to production takes --yes or the name typed at a terminal.
Elsewhere a destructive command asks at a terminal for the name and refuses without one.
Every refusal is one ❌ line and a non-zero exit, and leaves the whole server as it was.
"""

from __future__ import annotations

import os
import pty
import select
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from backend.config import PROJECT_ROOT, Settings
from backend.dbops import admin
from backend.dbops.backup import backup
from tests.command_line import assert_one_error_line, run_invoke
from tests.faults.helpers import F1, db_state, prepare, server_env
from tests.helpers import query, schema_names

pytestmark = pytest.mark.faults("protected environment")

PROMPT = "Type the database name to go on: "


def run_in_terminal(env: dict[str, str], *args: str, answer: str | None = None, timeout: float = 120):
    """`python -m invoke ARGS` with a pseudo-terminal as its input and output: (exit code, what it showed).

    answer is typed (with Enter) when the prompt shows; without it, a prompt fails the call.
    """
    pid, fd = pty.fork()
    if pid == 0:  # the child: never returns
        os.chdir(PROJECT_ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "invoke", *args], env)
    shown, answered, deadline = b"", False, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
            if PROMPT.encode() in shown and not answered:
                if answer is None:
                    os.kill(pid, 9)
                    raise AssertionError(f"{' '.join(args)} asked, no answer was planned:\n{shown.decode()}")
                os.write(fd, answer.encode() + b"\n")
                answered = True
        else:
            os.kill(pid, 9)
            raise AssertionError(f"{' '.join(args)} did not end within {timeout:.0f} s:\n{shown.decode()}")
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace").replace("\r\n", "\n")


def server_state(server, database: str) -> dict:
    return {"schemas": schema_names(server), "database": db_state(server, database)}


@pytest.fixture(scope="module")
def protected(mysql_server, reference, tmp_path_factory):
    """A seeded database at HEAD, a good backup of it, and the environment to reach it."""
    folder = tmp_path_factory.mktemp("protected")
    name = f"prod_{uuid.uuid4().hex[:10]}"
    settings = Settings(
        host=mysql_server.host,
        port=mysql_server.port,
        user=mysql_server.user,
        password=mysql_server.password,
        database=name,
        backup_dir=folder / "backups",
        versions_dir=Path(reference.versions_env["MIGRATIONS_DIR"]),
    )
    try:
        prepare(mysql_server, settings)
        path = backup(settings).path
        yield name, path, server_env(mysql_server, name, reference, folder)
    finally:
        admin.drop_database(settings)


# command line, what an operator types at the terminal (None: no terminal)
REFUSED_ON_PRODUCTION = [
    (command, flags, typed)
    for command in ("db.drop", "db.reset", "db.restore")
    for flags in ((), ("--yes",), ("--allow-production",))
    for typed in (None, "name")
]


@pytest.mark.parametrize(
    "command, flags, typed",
    REFUSED_ON_PRODUCTION,
    ids=[
        f"{c[3:]}{''.join(f) or '-no-flags'}-{'terminal' if t else 'no-terminal'}" for c, f, t in REFUSED_ON_PRODUCTION
    ],
)
def test_production_refuses_without_both_flags(command, flags, typed, protected, mysql_server):
    name, backup_path, env = protected
    env = {**env, "APP_ENV": "production"}
    args = [command, *([str(backup_path)] if command == "db.restore" else []), *flags]
    before = server_state(mysql_server, name)
    if typed is None:
        line = assert_one_error_line(run_invoke(env, *args))
    else:
        # The operator types the right name; it does not count as confirmation on production.
        code, shown = run_in_terminal(env, *args, answer=name)
        assert code != 0 and PROMPT not in shown and "Traceback" not in shown, shown
        [line] = [line for line in shown.splitlines() if line.startswith("❌")]
    assert "protected production environment" in line and "--yes and --allow-production" in line, line
    assert server_state(mysql_server, name) == before


def test_production_goes_ahead_with_both_flags(protected, mysql_server):
    name, backup_path, env = protected
    env = {**env, "APP_ENV": "production"}
    before = server_state(mysql_server, name)
    query(mysql_server, "DELETE FROM user_feedback", database=name)
    result = run_invoke(env, "db.restore", str(backup_path), "--yes", "--allow-production")
    assert result.returncode == 0, result.output
    assert server_state(mysql_server, name) == before  # the deleted rows are back


def test_deploy_to_production_asks_or_takes_yes(protected, mysql_server):
    name, _, env = protected
    env = {**env, "APP_ENV": "production", "DEPLOY_FULL_BACKUP_PRODUCTION": "1"}
    before = server_state(mysql_server, name)
    line = assert_one_error_line(run_invoke(env, "db.deploy", "--to", F1))
    assert "needs confirmation" in line, line
    code, shown = run_in_terminal(env, "db.deploy", "--to", F1, answer=f"{name}x")
    assert code != 0 and "did not match" in shown, shown
    assert server_state(mysql_server, name) == before
    code, shown = run_in_terminal(env, "db.deploy", "--to", F1, answer=name)
    assert code == 0 and "✅" in shown, shown
    assert query(mysql_server, "SELECT version_num FROM alembic_version", database=name) == [(F1,)]
    # A downgrade on production is guarded as a deploy is, and runs as one: backup, steps, verify, record.
    for flags in ((), ("--yes",), ("--allow-production",)):
        line = assert_one_error_line(run_invoke(env, "db.downgrade", "-r", "-1", *flags))
        assert "needs confirmation" in line and "--yes --allow-production" in line, line
    assert query(mysql_server, "SELECT version_num FROM alembic_version", database=name) == [(F1,)]
    downgraded = run_invoke(env, "db.downgrade", "-r", "-1", "--yes", "--allow-production")
    assert downgraded.returncode == 0, downgraded.output
    for step in ("▶ preflight", "▶ backup", "▶ downgrade", "▶ verify", f"← {F1}", "✅ reverted 1 revision(s)"):
        assert step in downgraded.stdout, downgraded.output
    assert "▶ restart" not in downgraded.stdout
    assert server_state(mysql_server, name) == before
    [record] = query(
        mysql_server,
        "SELECT target, status, backup_file FROM alembic_deploys ORDER BY started_at DESC LIMIT 1",
        database=name,
    )
    assert record[:2] == ("down:-1", "succeeded") and Path(record[2]).is_file(), record


def test_stamp_on_production_asks(protected, mysql_server):
    name, _, env = protected
    env = {**env, "APP_ENV": "production"}
    before = server_state(mysql_server, name)
    line = assert_one_error_line(run_invoke(env, "db.stamp", "-r", "base"))
    assert "needs confirmation" in line, line
    code, shown = run_in_terminal(env, "db.stamp", "-r", "base", answer=f"{name}x")
    assert code != 0 and PROMPT in shown and "did not match" in shown, shown
    assert server_state(mysql_server, name) == before
    version = before["database"]["versions"][0]
    code, shown = run_in_terminal(env, "db.stamp", "-r", version, answer=name)
    assert code == 0 and f"stamped at {version}" in shown, shown
    assert server_state(mysql_server, name) == before


def test_elsewhere_a_terminal_asks_for_the_name(protected, mysql_server):
    name, backup_path, env = protected
    env = {**env, "APP_ENV": "staging"}
    before = server_state(mysql_server, name)
    for command in (["db.drop"], ["db.reset"], ["db.restore", str(backup_path)]):
        line = assert_one_error_line(run_invoke(env, *command))
        assert "needs confirmation: run it in a terminal or pass --yes" in line, line
        code, shown = run_in_terminal(env, *command, answer=f" {name[:-1]} ")
        assert code != 0 and PROMPT in shown and "did not match" in shown, shown
        assert server_state(mysql_server, name) == before
    code, shown = run_in_terminal(env, "db.restore", str(backup_path), answer=name)
    assert code == 0 and "✅ restored" in shown, shown
    assert server_state(mysql_server, name) == before


def test_a_dropped_production_database_needed_both_flags(protected, mysql_server, reference, tmp_path):
    """Last: the drop itself, on a copy, so the module's database stays for the other tests."""
    name, backup_path, env = protected
    copy = f"{name}_copy"
    settings = Settings(
        host=mysql_server.host,
        port=mysql_server.port,
        user=mysql_server.user,
        password=mysql_server.password,
        database=name,
    )
    assert run_invoke(env, "db.restore", str(backup_path), "--into", copy, "--yes").returncode == 0
    production = {**env, "MYSQL_DATABASE": copy, "APP_ENV": "production"}
    try:
        assert_one_error_line(run_invoke(production, "db.drop", "--yes"))
        assert copy in schema_names(mysql_server)
        result = run_invoke(production, "db.drop", "--yes", "--allow-production")
        assert result.returncode == 0 and f"dropped database {copy}" in result.stdout, result.output
        assert copy not in schema_names(mysql_server)
    finally:
        admin.drop_database(replace(settings, database=copy))
