"""Bad input through the real command line: one ❌ line, a non-zero exit, nothing changed.

Wrong password, unreachable or unknown host, unknown database, malformed and unknown revision
ids, conflicting options, malformed settings. "Nothing changed" is checked on the whole
server: the list of schemas, and the test database's schema, CHECKSUM TABLE values, revision,
journal, deploy records and lock.
"""

from __future__ import annotations

import pytest

from backend.dbops.servers import free_port
from tests.command_line import assert_one_error_line, run_invoke
from tests.faults.helpers import F1, server_state

pytestmark = pytest.mark.faults("bad input")

WRONG_PASSWORD = "Wr0ng-pa55word-7e1c"


MALFORMED = ["head; DROP TABLE users", "../../etc/passwd", "x y", "$(id)", "'", "`x`", "a" * 129, "%s", "héad"]

CASES = {
    # id: (environment changes, command line, expected in the error line)
    "wrong-password-upgrade": ({"MYSQL_PASSWORD": WRONG_PASSWORD}, ["db.upgrade"], "access denied"),
    "wrong-password-deploy": ({"MYSQL_PASSWORD": WRONG_PASSWORD}, ["db.deploy", "--to", F1], "access denied"),
    "wrong-password-backup": ({"MYSQL_PASSWORD": WRONG_PASSWORD}, ["db.backup"], "access denied"),
    "empty-password": ({"MYSQL_PASSWORD": ""}, ["db.current"], "access denied"),
    "unreachable-port": ({"MYSQL_PORT": "{free_port}"}, ["db.deploy", "--to", F1], "cannot reach the MySQL server"),
    "unknown-host": (
        {"MYSQL_HOST": "no-such-host.invalid", "MYSQL_CONNECT_TIMEOUT": "3"},
        ["db.upgrade"],
        "cannot reach the MySQL server",
    ),
    "unknown-database-deploy": ({"MYSQL_DATABASE": "{database}_missing"}, ["db.deploy", "--to", F1], "does not exist"),
    "unknown-database-backup": ({"MYSQL_DATABASE": "{database}_missing"}, ["db.backup"], "does not exist"),
    "unknown-database-recover": ({"MYSQL_DATABASE": "{database}_missing"}, ["db.recover", "--undo"], "does not exist"),
    **{
        f"malformed-upgrade-{index}": ({}, ["db.upgrade", "-r", value], "malformed revision")
        for index, value in enumerate(MALFORMED)
    },
    "malformed-deploy-to": ({}, ["db.deploy", "--to", "head;--"], "malformed revision"),
    "malformed-deploy-dry-run": (
        {"APP_ENV": "production"},
        ["db.deploy", "--dry-run", "--to", "$(reboot)"],
        "malformed revision",
    ),
    "malformed-downgrade": ({}, ["db.downgrade", "-r", "base; DROP DATABASE x"], "malformed revision"),
    "malformed-stamp": ({}, ["db.stamp", "-r", "head\nbase"], "malformed revision"),
    "malformed-sql-range": ({}, ["db.sql", "--end", "head' --"], "malformed revision"),
    "malformed-verify": ({}, ["db.verify", "-r", "a;b"], "malformed revision"),
    "unknown-revision-upgrade": ({}, ["db.upgrade", "-r", "deadbeef0000"], "unknown revision"),
    "unknown-revision-deploy": ({}, ["db.deploy", "--to", "deadbeef0000"], "unknown revision"),
    "recover-undo-and-finish": ({}, ["db.recover", "--undo", "--finish"], "choose one"),
    "recover-both": ({}, ["db.recover", "--undo", "--finish"], "choose one"),
    "recover-nothing": ({}, ["db.recover"], "nothing to recover"),
    "recover-nothing-to-recover": ({}, ["db.recover", "--finish"], "nothing to recover"),
    "restore-missing-file": ({}, ["db.restore", "/nonexistent/backup.sql.zst", "--yes"], "does not exist"),
    "bad-app-env": ({"APP_ENV": "prod"}, ["db.deploy", "--to", F1], "APP_ENV must be one of"),
    "bad-port": ({"MYSQL_PORT": "70000"}, ["db.upgrade"], "MYSQL_PORT must be between"),
    "bad-lock-timeout": ({"DEPLOY_LOCK_TIMEOUT": "soon"}, ["db.deploy", "--to", F1], "must be a whole number"),
    "negative-lock-timeout": ({"DEPLOY_LOCK_TIMEOUT": "-1"}, ["db.deploy", "--to", F1], "must not be negative"),
    "step-twice": ({"DEPLOY_STEPS": "upgrade,upgrade"}, ["db.deploy", "--to", F1], "listed twice"),
    "unknown-step": ({"DEPLOY_STEPS": "preflight,upgrade,pray"}, ["db.deploy", "--to", F1], "unknown deploy step"),
    "production-skips-backup": (
        {"APP_ENV": "production", "DEPLOY_STEPS": "preflight,upgrade,verify"},
        ["db.deploy", "--yes", "--to", F1],
        "may not skip backup",
    ),
    "missing-config-file": ({"DB_CONFIG_FILE": "/nonexistent/config.env"}, ["db.upgrade"], "does not exist"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_changes_nothing(case, target, mysql_server):
    changes, args, expected = CASES[case]
    values = {"free_port": str(free_port()), "database": target.database}
    env = {**target.env, **{key: value.format(**values) for key, value in changes.items()}}
    before = server_state(mysql_server, target.database)
    result = run_invoke(env, *args)
    line = assert_one_error_line(result)
    assert expected in line, line
    assert WRONG_PASSWORD not in result.output and mysql_server.password not in result.output
    assert server_state(mysql_server, target.database) == before


def test_dry_run_on_production_reads_only(target, mysql_server):
    """A dry run is read-only, so production needs no confirmation for it: it plans and changes nothing."""
    before = server_state(mysql_server, target.database)
    result = run_invoke({**target.env, "APP_ENV": "production"}, "db.deploy", "--dry-run", "--to", F1)
    assert result.returncode == 0, result.output
    assert f"→ {F1}" in result.stdout and "nothing changed" in result.stdout
    assert server_state(mysql_server, target.database) == before
