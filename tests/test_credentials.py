"""Passwords beyond ASCII: the driver and the command-line clients send the same bytes (UTF-8)."""

from __future__ import annotations

import uuid

import pytest

from tests.helpers import HEAD, version_rows


@pytest.fixture
def account(mysql_server, request):
    """A user created with the test's password (as the server's own client would send it), removed afterwards."""
    user = f"u_{uuid.uuid4().hex[:10]}"
    connection = mysql_server.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, request.param))
            cursor.execute("GRANT ALL PRIVILEGES ON *.* TO %s@'%%'", (user,))
        yield user, request.param
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP USER IF EXISTS %s@'%%'", (user,))
        connection.close()


@pytest.mark.parametrize(
    "account", ["pässwörd", "密码🔑", "ünï \\\"' 密码🔑 #;"], indirect=True, ids=["latin-1", "beyond-latin-1", "quoted"]
)
def test_a_non_ascii_password_works_for_the_driver_and_the_clients(
    account, invoke, mysql_server, database_name, tmp_path
):
    user, password = account
    env = {"MYSQL_USER": user, "MYSQL_PASSWORD": password, "BACKUP_DIR": str(tmp_path / "backups")}
    for args in (["db.init"], ["db.check"], ["db.backup"]):
        result = invoke(*args, env=env)
        assert result.returncode == 0, result.output
        assert password not in result.output
    [backup_file] = [path for path in (tmp_path / "backups").glob("*.sql.*") if path.suffix != ".json"]
    assert invoke("db.downgrade", "-r", "base", env=env).returncode == 0
    restored = invoke("db.restore", str(backup_file), "--yes", env=env)
    assert restored.returncode == 0, restored.output
    assert version_rows(mysql_server, database_name) == [HEAD]
