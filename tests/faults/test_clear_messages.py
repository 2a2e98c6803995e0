"""Bad input whose message used to say the wrong thing, through the real command line.

Each case: one ❌ line that says what happened (not a raw server error, an Alembic phrase, a
wrong diagnosis or "unexpected ..."), a non-zero exit, and nothing changed.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pymysql
import pytest

from tests.command_line import assert_one_error_line, run_invoke
from tests.faults.helpers import F1, db_state, fault_settings, prepare, server_state, unfinished_journal
from tests.helpers import HEAD, revision_text, versions_with

pytestmark = pytest.mark.faults("bad input")

F2 = "f2b3c4d5e6f7"  # tests/revisions/faults: after F1
SIBLING = "a0b0c0d0e0f0"


def refused(env: dict, server, database: str, *args: str) -> str:
    """Run invoke ARGS: one ❌ line, the server as before; return the line."""
    before = server_state(server, database)
    line = assert_one_error_line(run_invoke(env, *args))
    assert "unexpected" not in line, line
    assert server_state(server, database) == before
    return line


@pytest.mark.parametrize("report", ["missing/deploy.json", "."])
def test_a_report_that_cannot_be_written_is_refused_before_the_deploy(report, target, mysql_server, tmp_path):  # noqa: F811
    path = tmp_path / report
    line = refused(target.env, mysql_server, target.database, "db.deploy", "--to", F1, "--report", str(path))
    assert "cannot write the report" in line, line
    assert ("folder" in line and "does not exist" in line) if report != "." else "it is a folder" in line, line


def test_a_missing_backup_file_is_named_as_missing(target, mysql_server):  # noqa: F811
    line = refused(target.env, mysql_server, target.database, "db.restore", "backups/nope.sql.zst", "--yes")
    assert "nope.sql.zst does not exist" in line and "manifest" not in line, line


def test_an_unknown_start_revision_is_named_as_unknown(target, mysql_server):  # noqa: F811
    line = refused(target.env, mysql_server, target.database, "db.sql", "--start", "zzz")
    assert "unknown revision 'zzz'" in line and "database is at" not in line, line


@pytest.fixture(scope="module")
def socket_user(mysql_server) -> Iterator[str]:
    """A user that logs in by unix socket only: over TCP the server answers 1698, not 1045 (as MariaDB
    also does for an unknown user where a socket plugin is loaded, e.g. Debian's own server)."""
    name = f"sock_{uuid.uuid4().hex[:8]}"
    connection = mysql_server.connect()
    try:
        with connection.cursor() as cursor:
            for clause in ("IDENTIFIED VIA unix_socket", "IDENTIFIED WITH auth_socket"):
                try:
                    cursor.execute(f"CREATE USER '{name}'@'%' {clause}")
                    break
                except pymysql.err.MySQLError:
                    continue
            else:
                pytest.skip("the server has no socket authentication plugin")
        yield name
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP USER IF EXISTS '{name}'@'%'")
        connection.close()


@pytest.mark.parametrize("task", ["db.check", "db.upgrade", "db.backup"])
@pytest.mark.parametrize("kind", ["unknown", "socket-only"])
def test_a_user_refused_is_told_like_a_wrong_password(kind, task, target, mysql_server, request):  # noqa: F811
    user = "nobody" if kind == "unknown" else request.getfixturevalue("socket_user")
    line = refused({**target.env, "MYSQL_USER": user}, mysql_server, target.database, task)
    assert f"access denied for {user}@{mysql_server.host}" in line and "server error" not in line, line
    assert "MYSQL_USER" in line and mysql_server.password not in line, line


@pytest.fixture
def ahead(mysql_server, settings, cli_env, reference, tmp_path) -> dict:
    """The test database at F1, with F2 after it in its revisions."""
    versions_env = versions_with(tmp_path, "faults")
    prepare(mysql_server, fault_settings(settings, reference.versions_env))
    env = {**cli_env, **versions_env, "BACKUP_DIR": str(tmp_path / "backups")}
    assert run_invoke(env, "db.upgrade", "-r", F1).returncode == 0
    return env


@pytest.mark.parametrize(
    "args, expected",
    [
        (["db.upgrade", "-r", HEAD[:4]], f"cannot upgrade from {F1} to {HEAD}: it is behind"),
        (["db.upgrade", "-r", SIBLING], f"cannot upgrade from {F1} to {SIBLING}: it is on another branch"),
        (["db.downgrade", "-r", F2], f"cannot downgrade from {F1} to {F2}: it is ahead"),
        (["db.deploy", "--to", HEAD], f"cannot upgrade from {F1} to {HEAD}: it is behind"),
    ],
    ids=["upgrade-behind", "upgrade-sibling", "downgrade-ahead", "deploy-behind"],
)
def test_a_revision_off_the_path_says_which_way_it_lies(args, expected, ahead, mysql_server, database_name):
    if SIBLING in args:
        (Path(ahead["MIGRATIONS_DIR"]) / f"{SIBLING}_sibling.py").write_text(
            revision_text(SIBLING, doc=f"A branch beside {F1}.")
        )
    before = db_state(mysql_server, database_name)
    line = assert_one_error_line(run_invoke(ahead, *args))
    assert expected in line and "ancestor" not in line, line
    if "behind" in expected:
        assert f"invoke db.downgrade -r {HEAD}" in line, line
    if "ahead" in expected:
        assert f"invoke db.upgrade -r {F2}" in line, line
    assert db_state(mysql_server, database_name) == before


def test_the_first_failure_of_a_revision_says_it_is_half_applied(mysql_server, database_name, cli_env, tmp_path):
    env = {**cli_env, **versions_with(tmp_path, "halfway")}
    assert run_invoke(env, "db.create").returncode == 0
    line = assert_one_error_line(run_invoke(env, "db.upgrade"))
    assert "upgrade of b2c3d4e5f6a7 failed" in line and "b2c3d4e5f6a7 is now half-applied" in line, line
    assert "invoke db.recover --undo" in line, line
    assert unfinished_journal(mysql_server, database_name) == [("b2c3d4e5f6a7", "upgrade", "failed")]


@contextmanager
def read_only_folder(folder: Path) -> Iterator[None]:
    """folder no file can be written in: a read-only tmpfs as root (who may write anywhere else), else mode 0555."""
    folder.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=1m,mode=0755", "tmpfs", str(folder)],
            capture_output=True,
        ).returncode
        == 0
    )
    if not mounted:
        folder.chmod(0o555)
    try:
        yield
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)
        folder.chmod(0o755)


@pytest.mark.parametrize("backup_dir", [".", "sub"], ids=["folder", "below"])
def test_a_read_only_backup_folder_is_refused_before_the_dump(backup_dir, target, mysql_server, tmp_path):  # noqa: F811
    folder = tmp_path / "read-only"
    with read_only_folder(folder):
        env = {**target.env, "BACKUP_DIR": str(folder / backup_dir)}
        line = refused(env, mysql_server, target.database, "db.backup")
        assert str(folder / backup_dir) in line, line
        assert "cannot write backups" in line or "cannot create the backup folder" in line, line
        assert list(folder.iterdir()) == []
        before = db_state(mysql_server, target.database)
        deploy = assert_one_error_line(run_invoke({**env, "DEPLOY_FULL_BACKUP": "1"}, "db.deploy", "--to", F1))
        assert "backup failed" in deploy and "unchanged" in deploy and "unexpected" not in deploy, deploy
        assert db_state(mysql_server, target.database) == before
