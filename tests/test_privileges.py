"""Accounts with exactly the grants the guide lists, wildcard and role grants, SCRATCH_DATABASE,
and read-only servers: db.check says what the steps will meet, and the steps agree."""

from __future__ import annotations

import re
import uuid
from contextlib import contextmanager

import pymysql
import pytest

from backend.dbops.privileges import (
    DATABASE_PRIVILEGES,
    SCHEMA_PRIVILEGES,
    Account,
    Grant,
    grant_target,
    like_escape,
    parse_grant,
)
from backend.dbops.servers import create_user, start_instance, stop_instance
from tests.command_line import assert_one_error_line
from tests.helpers import (
    APP_TABLES,
    GUIDE,
    HEAD,
    TEST_USER,
    ServerTarget,
    raw_schema,
    tables,
    version_rows,
    versions_with,
)

# The full pipeline but the restart, with the backups in the test's folder.
PIPELINE = {"DEPLOY_STEPS": "preflight,backup,upgrade,verify", "DEPLOY_VERIFY_MODELS": "0"}


def _variable(server: ServerTarget, name: str) -> str:
    connection = server.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW GLOBAL VARIABLES LIKE %s", (name,))
            row = cursor.fetchone()
    finally:
        connection.close()
    return str(row[1]).upper() if row else ""


def _is_mariadb(server: ServerTarget) -> bool:
    connection = server.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT VERSION()")
            ((version,),) = cursor.fetchall()
            return "mariadb" in version.lower()
    finally:
        connection.close()


def _schemas(server: ServerTarget, prefix: str) -> list[str]:
    connection = server.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
            return sorted(row[0] for row in cursor.fetchall() if row[0].startswith(prefix))
    finally:
        connection.close()


def _all_tables(server: ServerTarget, database: str) -> list[str]:
    connection = server.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (database,))
            return sorted(row[0] for row in cursor.fetchall())
    finally:
        connection.close()


class Accounts:
    """Users and roles made for one test on its server, with grants written as {user}, {db}, {role}."""

    def __init__(self, server: ServerTarget, database: str) -> None:
        self.server, self.database = server, database
        self.users: list[str] = []
        self.roles: list[str] = []

    def user(self, *grants: str, role: str | None = None) -> dict[str, str]:
        """A new user with these grants; the environment that runs invoke as it."""
        name, password = f"p{uuid.uuid4().hex[:10]}", f"pw {uuid.uuid4().hex[:8]}'`\""
        connection = self.server.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (name, password))
        finally:
            connection.close()
        self.users.append(name)
        self.server.execute(
            None, *(grant.format(user=f"'{name}'@'%'", db=f"`{self.database}`", role=f"`{role}`") for grant in grants)
        )
        return {"MYSQL_USER": name, "MYSQL_PASSWORD": password}

    def role(self, *grants: str) -> str:
        name = f"r{uuid.uuid4().hex[:10]}"
        self.server.execute(None, f"CREATE ROLE `{name}`")
        self.roles.append(name)
        self.server.execute(None, *(grant.format(role=f"`{name}`", db=f"`{self.database}`") for grant in grants))
        return name

    def drop(self) -> None:
        self.server.execute(
            None,
            *(f"DROP USER IF EXISTS '{name}'@'%'" for name in self.users),
            *(f"DROP ROLE IF EXISTS `{name}`" for name in self.roles),
        )


@pytest.fixture
def accounts(mysql_server, created_database):
    made = Accounts(mysql_server, created_database.database)
    yield made
    made.drop()


@contextmanager
def global_variable(server: ServerTarget, name: str, value: str):
    """SET GLOBAL name = value for the block, then back to what it was."""
    before = _variable(server, name)
    server.execute(None, f"SET GLOBAL {name} = {value}")
    try:
        yield
    finally:
        server.execute(None, f"SET GLOBAL {name} = {before}")


@pytest.fixture
def triggers_allowed(mysql_server):
    """With binary logging on (MySQL's default), triggers need SUPER unless the server trusts their creators:
    the accounts of these tests have no SUPER, so the server is told to (its own test covers the other way)."""
    if _variable(mysql_server, "log_bin") in ("ON", "1"):
        with global_variable(mysql_server, "log_bin_trust_function_creators", "ON"):
            yield
    else:
        yield


@pytest.fixture
def scratch_name(mysql_server, database_name):
    """A SCRATCH_DATABASE name, dropped after the test."""
    name = f"{database_name}_scratch"
    yield name
    mysql_server.execute(None, f"DROP DATABASE IF EXISTS `{name}`")


def _documented_grants() -> tuple[str, list[str], list[str]]:
    """The guide's GRANT for the managed database, then its two ways for scratch databases."""
    guide = GUIDE.read_text(encoding="utf-8")
    section = guide[guide.index("### 部署账号的权限") :]
    section = section[: section.index("\n## ")]
    blocks = re.findall(r"```sql\n(.*?)```", section, re.S)
    statements = []
    for block in blocks:
        lines = [line for line in block.splitlines() if not line.lstrip().startswith("--")]
        statements.append([" ".join(part.split()) for part in "\n".join(lines).split(";") if part.strip()])
    managed, scratch = statements
    assert len(managed) == 1 and len(scratch) == 3, blocks
    return managed[0], scratch[:1], scratch[1:]


def _as(statement: str, database: str) -> str:
    """A documented statement for this test's user ({user}) and database."""
    return (
        statement.replace("'deployer'@'%'", "{user}")
        .replace("`emotional_chat_scratch`", f"`{database}_scratch`")
        .replace("`emotional\\_chat\\_%`.*", grant_target(database + "_").replace("{", "{{").replace("}", "}}"))
        .replace("`emotional_chat`", "{db}")
    )


def _deploy_twice(invoke, env: dict, tmp_path) -> dict:
    """Base to head, then a revision that alters a table (the DDL probe copies it into a scratch database);
    the environment with that revision."""
    env = {**env, **PIPELINE, "BACKUP_DIR": str(tmp_path / "backups"), "DEPLOY_FULL_BACKUP": "1"}
    first = invoke("db.deploy", env=env)
    assert first.returncode == 0, first.output
    env.update(versions_with(tmp_path, "halfway", "a1b2*"))
    second = invoke("db.deploy", env=env)
    assert second.returncode == 0, second.output
    assert "ddl: a1b2c3d4e5f6 users" in second.stdout and "▶ backup" in second.stdout
    return env


def _drift_compared(result) -> bool:
    """db.drift built the migrations' schema and compared (drift or not), rather than failing."""
    return "✅ no drift" in result.stdout or "❌ schema drift: " in result.stderr


# ---------------------------------------------------------------- the guide's grants


def test_the_documented_grants_alone_fail_the_check_until_a_scratch_database_is_named(
    invoke, accounts, mysql_server, database_name, scratch_name, tmp_path, triggers_allowed
):
    managed, _, dedicated = _documented_grants()
    assert all(privilege in managed for privilege in DATABASE_PRIVILEGES)
    user = accounts.user(_as(managed, database_name))

    check = invoke("db.check", env=user)
    assert check.returncode == 1, check.output
    assert "✅ privileges: all that upgrade, backup and restore need" in check.stdout
    failed = [line for line in check.stderr.splitlines() if line.startswith("❌")]
    assert len(failed) == 1 and failed[0].startswith("❌ scratch: ") and "may not create scratch databases" in failed[0]
    assert "SCRATCH_DATABASE" in failed[0] and grant_target(database_name[:40] + "_") in failed[0]
    deploy = invoke("db.deploy", env={**user, **PIPELINE, "BACKUP_DIR": str(tmp_path / "backups")})
    assert deploy.returncode == 1 and "preflight failed: scratch:" in deploy.output
    assert tables(mysql_server, database_name) == []

    mysql_server.execute(
        None,
        *(
            _as(statement, database_name).format(user=f"'{user['MYSQL_USER']}'@'%'", db=f"`{database_name}`")
            for statement in dedicated
        ),
    )
    mysql_server.execute(None, f"CREATE TABLE `{scratch_name}`.leftover (id INT)")
    configured = {**user, "SCRATCH_DATABASE": scratch_name}
    check = invoke("db.check", env=configured)
    assert check.returncode == 0, check.output
    assert f"✅ scratch: throwaway schemas are built in SCRATCH_DATABASE {scratch_name}" in check.stdout
    deployed = _deploy_twice(invoke, configured, tmp_path)
    assert _all_tables(mysql_server, scratch_name) == []  # emptied before and after each use
    assert _drift_compared(invoke("db.drift", env=deployed))
    revision = invoke("db.revision", "-m", "nothing", env=configured)
    assert revision.returncode == 0 and "no revision written" in revision.stdout, revision.output
    assert _all_tables(mysql_server, scratch_name) == []
    assert _schemas(mysql_server, f"{database_name}_") == [scratch_name]  # it never made a database of its own

    backup = sorted((tmp_path / "backups").glob("*.sql.zst"))[-1]
    restored = invoke("db.restore", str(backup), "--yes", env=configured)
    assert restored.returncode == 0, restored.output
    assert tables(mysql_server, database_name) == ["alembic_version", *APP_TABLES]


def test_the_documented_wildcard_grant_covers_the_scratch_databases(
    invoke, accounts, mysql_server, database_name, tmp_path, triggers_allowed
):
    managed, wildcard, _ = _documented_grants()
    user = accounts.user(_as(managed, database_name), *(_as(statement, database_name) for statement in wildcard))
    check = invoke("db.check", env=user)
    assert check.returncode == 0, check.output
    deployed = _deploy_twice(invoke, user, tmp_path)
    assert _drift_compared(invoke("db.drift", env=deployed))
    assert _schemas(mysql_server, f"{database_name}_") == []  # every scratch database dropped


# ---------------------------------------------------------------- wildcard and role grants


def test_one_wildcard_grant_is_read_as_the_privileges_it_gives(
    invoke, accounts, mysql_server, database_name, tmp_path, triggers_allowed
):
    user = accounts.user(f"GRANT {', '.join(DATABASE_PRIVILEGES)} ON {grant_target(database_name)} TO {{user}}")
    check = invoke("db.check", env=user)
    assert check.returncode == 0, check.output
    assert "✅ privileges: all that upgrade, backup and restore need" in check.stdout
    _deploy_twice(invoke, user, tmp_path)
    assert version_rows(mysql_server, database_name) == ["a1b2c3d4e5f6"]


def test_an_unescaped_underscore_is_a_wildcard_and_an_exact_grant_wins_over_a_pattern(
    invoke, accounts, database_name, triggers_allowed
):
    pattern = "_" + database_name[1:]  # '_' stands for the 't' of the name
    user = accounts.user(f"GRANT ALL ON `{pattern}`.* TO {{user}}")
    assert "✅ privileges: all that upgrade, backup and restore need" in invoke("db.check", env=user).stdout
    # An exact grant ('\_' is an underscore) counts alone: the pattern's privileges do not add to it.
    narrowed = accounts.user(
        f"GRANT ALL ON `{pattern}`.* TO {{user}}", f"GRANT SELECT ON `{like_escape(database_name)}`.* TO {{user}}"
    )
    check = invoke("db.check", env=narrowed)
    assert check.returncode == 1 and f"❌ privileges: {narrowed['MYSQL_USER']} lacks INSERT, UPDATE" in check.stderr
    # and the server agrees
    assert "CREATE command denied" in assert_one_error_line(invoke("db.upgrade", env=narrowed))


def test_privileges_through_a_default_role_count(
    invoke, accounts, mysql_server, database_name, tmp_path, triggers_allowed
):
    role = accounts.role(f"GRANT {', '.join(DATABASE_PRIVILEGES)} ON {grant_target(database_name)} TO {{role}}")
    default = "SET DEFAULT ROLE {role} FOR {user}" if _is_mariadb(mysql_server) else "SET DEFAULT ROLE {role} TO {user}"
    user = accounts.user("GRANT {role} TO {user}", default, role=role)
    check = invoke("db.check", env=user)
    assert check.returncode == 0, check.output
    assert f"(through role {role})" in check.stdout
    _deploy_twice(invoke, user, tmp_path)


def test_a_role_granted_but_not_enabled_gives_nothing(invoke, accounts, database_name, triggers_allowed):
    role = accounts.role(f"GRANT ALL ON {grant_target(database_name)} TO {{role}}")
    user = accounts.user("GRANT {role} TO {user}", role=role)
    check = invoke("db.check", env=user)
    assert check.returncode == 1 and f"lacks {', '.join(DATABASE_PRIVILEGES)} on {database_name}" in check.stderr
    # and the server agrees: the account cannot even open the database
    assert "may not use database" in assert_one_error_line(invoke("db.upgrade", env=user))


# ---------------------------------------------------------------- binary logging and triggers


@pytest.fixture
def binlog_server(mysql_server, tmp_path_factory):
    """A server with binary logging on: the session's when it has it (MySQL's default), else a MariaDB of our own."""
    if _variable(mysql_server, "log_bin") in ("ON", "1"):
        yield mysql_server
        return
    instance = start_instance(tmp_path_factory.mktemp("binlog"), extra_args=("--log-bin=binlog", "--server-id=1"))
    try:
        yield ServerTarget(instance.host, instance.port, TEST_USER, create_user(instance, TEST_USER), instance)
    finally:
        stop_instance(instance)


def test_with_binary_logging_triggers_need_super_or_trusted_creators(invoke, binlog_server, database_name):
    server = binlog_server
    server.execute(None, f"CREATE DATABASE IF NOT EXISTS `{database_name}`")
    made = Accounts(server, database_name)
    try:
        user = made.user(f"GRANT ALL ON {grant_target(database_name)} TO {{user}}")
        env = {**user, "MYSQL_HOST": server.host, "MYSQL_PORT": str(server.port)}
        with global_variable(server, "log_bin_trust_function_creators", "OFF"):
            check = invoke("db.check", env=env)
            assert check.returncode == 1, check.output
            assert "binary logging is on" in check.stderr and "SUPER" in check.stderr
            # what the check foresees: the server refuses this account a trigger
            connection = pymysql.connect(
                host=server.host,
                port=server.port,
                user=user["MYSQL_USER"],
                password=user["MYSQL_PASSWORD"],
                database=database_name,
                autocommit=True,
            )
            with connection.cursor() as cursor, pytest.raises(pymysql.err.OperationalError, match="SUPER"):
                cursor.execute("CREATE TABLE t (id INT)")
                cursor.execute("CREATE TRIGGER t_ins BEFORE INSERT ON t FOR EACH ROW SET NEW.id = NEW.id")
            connection.close()
            server.execute(None, f"DROP TABLE `{database_name}`.t")  # a table and no revision: db.check would say adopt
        with global_variable(server, "log_bin_trust_function_creators", "ON"):
            check = invoke("db.check", env=env)
            assert check.returncode == 0, check.output
    finally:
        made.drop()
        server.execute(None, f"DROP DATABASE IF EXISTS `{database_name}`")


# ---------------------------------------------------------------- SCRATCH_DATABASE and db.recover


def test_recover_names_the_scratch_database_it_may_not_create_then_uses_scratch_database(
    invoke, accounts, mysql_server, database_name, scratch_name, tmp_path, triggers_allowed
):
    env = {**versions_with(tmp_path, "halfway"), "DEPLOY_STEPS": "preflight,upgrade,verify"}
    assert invoke("db.upgrade", "-r", "a1b2c3d4e5f6", env=env).returncode == 0
    before = raw_schema(mysql_server, database_name)
    assert "upgrade of b2c3d4e5f6a7 failed" in assert_one_error_line(invoke("db.upgrade", env=env))
    user = accounts.user(f"GRANT {', '.join(DATABASE_PRIVILEGES)} ON {{db}}.* TO {{user}}")

    line = assert_one_error_line(invoke("db.recover", "--undo", env={**env, **user}))
    assert "None" not in line and f"may not create the scratch database '{database_name}_autogen_" in line
    assert "SCRATCH_DATABASE" in line

    mysql_server.execute(
        None,
        f"CREATE DATABASE `{scratch_name}`",
        f"GRANT {', '.join(SCHEMA_PRIVILEGES)} ON `{scratch_name}`.* TO '{user['MYSQL_USER']}'@'%'",
    )
    result = invoke("db.recover", "--undo", env={**env, **user, "SCRATCH_DATABASE": scratch_name})
    assert result.returncode == 0, result.output
    assert raw_schema(mysql_server, database_name) == before
    assert _all_tables(mysql_server, scratch_name) == []


def test_an_access_denied_error_names_the_database_the_server_refused(invoke, accounts, mysql_server, database_name):
    mysql_server.execute(None, f"DROP DATABASE `{database_name}`")
    user = accounts.user("GRANT SELECT ON {db}.* TO {user}")
    line = assert_one_error_line(invoke("db.create", env=user))
    assert f"may not use database '{database_name}'" in line


@pytest.mark.parametrize(
    "which, message",
    [
        ("itself", "is the managed database itself"),
        ("mysql", "is a system schema"),
        ("managed", "holds alembic_deploys"),
        ("missing", "does not exist"),
    ],
)
def test_a_scratch_database_that_may_not_be_emptied_is_refused(
    invoke, mysql_server, created_database, database_name, scratch_name, which, message
):
    mysql_server.execute(None, f"CREATE TABLE `{database_name}`.keep (id INT)")
    if which == "managed":
        mysql_server.execute(
            None,
            f"CREATE DATABASE `{scratch_name}`",
            f"CREATE TABLE `{scratch_name}`.alembic_deploys (id INT)",
            f"CREATE TABLE `{scratch_name}`.users (id INT)",
        )
    name = {"itself": database_name, "mysql": "mysql"}.get(which, scratch_name)
    env = {"SCRATCH_DATABASE": name}
    assert message in assert_one_error_line(invoke("db.drift", env=env))
    assert message in assert_one_error_line(invoke("db.revision", "-m", "x", env=env))
    assert _all_tables(mysql_server, database_name) == ["keep"]
    if which == "managed":
        assert _all_tables(mysql_server, scratch_name) == ["alembic_deploys", "users"]
    check = invoke("db.check", env=env)
    assert check.returncode == 1 and f"❌ scratch: SCRATCH_DATABASE {name!r}" in check.stderr, check.output
    assert message in check.stderr


def test_a_scratch_database_in_use_by_another_run_is_not_shared(invoke, mysql_server, created_database, scratch_name):
    mysql_server.execute(None, f"CREATE DATABASE `{scratch_name}`")
    holder = mysql_server.connect()
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT GET_LOCK(%s, 0)", (f"alembic-scratch:{scratch_name}",))
            assert cursor.fetchone()[0] == 1
        line = assert_one_error_line(
            invoke("db.drift", env={"SCRATCH_DATABASE": scratch_name, "DEPLOY_LOCK_TIMEOUT": "1"})
        )
        assert f"SCRATCH_DATABASE {scratch_name!r} is in use by another run" in line
    finally:
        holder.close()
    assert _drift_compared(invoke("db.drift", env={"SCRATCH_DATABASE": scratch_name}))


# ---------------------------------------------------------------- read-only servers


def test_a_read_only_server_fails_the_check_and_is_refused_before_anything_runs(
    invoke, mysql_server, created_database, database_name
):
    with global_variable(mysql_server, "read_only", "ON"):
        check = invoke("db.check")
        assert check.returncode == 1
        assert "❌ read_only: the server at" in check.stderr and "read_only=ON" in check.stderr, check.output
        for command in (("db.deploy",), ("db.upgrade",), ("db.stamp", "-r", HEAD)):
            line = assert_one_error_line(invoke(*command))
            assert "is read-only (read_only=ON)" in line and "replica" in line and "nothing changed" in line
        assert _all_tables(mysql_server, database_name) == []  # not even the lock or the deploy record
    assert "✅ read_only: the server accepts writes" in invoke("db.check").stdout


# ---------------------------------------------------------------- reading grants


def _grant(line: str) -> Grant:
    """The grant of a line parse_grant reads."""
    grant = parse_grant(line)
    assert grant is not None, line
    return grant


def test_grant_lines_as_both_servers_print_them():
    assert _grant("GRANT SELECT, LOCK TABLES, SHOW VIEW ON `app\\_%`.* TO `u`@`%`").privileges == {
        "SELECT",
        "LOCK TABLES",
        "SHOW VIEW",
    }
    assert _grant("GRANT USAGE ON *.* TO `u`@`%` IDENTIFIED BY PASSWORD '*0A'").database is None
    assert _grant("GRANT ALL ON `a``b`.* TO `r`").database == "a`b"
    for other in (
        "GRANT `r` TO `u`@`%`",
        "SET DEFAULT ROLE `r` FOR `u`@`%`",
        "GRANT SELECT (id) ON `a`.`t` TO `u`@`%`",
        "GRANT EXECUTE ON PROCEDURE `a`.`p` TO `u`@`%`",
        "GRANT PROXY ON ''@'' TO 'root'@'localhost'",
    ):
        assert parse_grant(other) is None
    revoke = _grant("REVOKE INSERT ON `app`.* FROM `u`@`%`")
    assert revoke.revoke and revoke.database == "app"


def test_database_patterns_follow_like_and_the_most_specific_grant():
    def account(*lines: str, **options) -> Account:
        return Account([_grant(line) for line in lines], **options)

    escaped = account("GRANT ALL ON `app\\_%`.* TO `u`@`%`")
    assert escaped.lacks("app_live", ("DROP",)) == [] and escaped.lacks("appXlive", ("DROP",)) == ["DROP"]
    assert account("GRANT ALL ON `app_%`.* TO `u`@`%`").lacks("appXlive", ("DROP",)) == []
    assert account("GRANT ALL ON `app_%`.* TO `u`@`%`", wildcards=False).lacks("appXlive", ("DROP",)) == ["DROP"]
    assert account("GRANT ALL ON `App`.* TO `u`@`%`", case_sensitive=False).lacks("app", ("DROP",)) == []
    # the exact name counts alone for a grantee; a role's grants add to it
    both = account(
        "GRANT SELECT ON `app`.* TO `u`@`%`", "GRANT INSERT ON `ap%`.* TO `u`@`%`", "GRANT DELETE ON `app`.* TO `r`"
    )
    assert both.privileges_on("app") == {"SELECT", "DELETE"} and both.privileges_on("apx") == {"INSERT"}
    longer = account("GRANT SELECT ON `a%`.* TO `u`@`%`", "GRANT INSERT ON `app%`.* TO `u`@`%`")
    assert longer.privileges_on("apple") == {"INSERT"}
    # MySQL's partial revokes take privileges back from a global grant
    revoked = account("GRANT SELECT, INSERT ON *.* TO `u`@`%`", "REVOKE INSERT ON `app`.* FROM `u`@`%`")
    assert revoked.privileges_on("app") == {"SELECT"} and revoked.privileges_on("other") == {"SELECT", "INSERT"}
    assert account("GRANT SUPER ON *.* TO `u`@`%`", trigger_needs_super=True).lacks_super_for_triggers() is False
    assert account("GRANT USAGE ON *.* TO `u`@`%`", trigger_needs_super=True).lacks_super_for_triggers() is True
