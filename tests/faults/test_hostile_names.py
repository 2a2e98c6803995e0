"""Hostile database names through the real command line (property-based).

With MYSQL_DATABASE set to the name, `invoke db.create db.init db.backup`, then
`invoke db.restore FILE --into OTHER --yes db.drop --yes`: every name is either quoted
safely end to end (the schema of exactly that name exists, holds the tables, is backed up,
restored elsewhere and dropped, and no other schema changed) or refused with one line before
the command even connects to the server. Schemas that exist already are never touched.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, assume, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from backend.dbops.errors import InvalidIdentifier
from backend.dbops.identifiers import quote_identifier, validate_identifier
from tests.command_line import assert_one_error_line, run_invoke
from tests.helpers import APP_TABLES, HEAD, query, schema_names, version_rows

pytestmark = pytest.mark.faults("hostile names")

HOSTILE = [
    "`",
    "``",
    "'",
    '"',
    ";--",
    "a`; DROP DATABASE mysql; --",
    "x' OR '1'='1",
    "\\",
    "%",
    "_",
    "名字",
    "a" * 64,
    "a" * 65,
    "end ",
    " lead",
    "nul\x00byte",
    "-x",
    "we`ird.x; y/z",
    "€" * 64,
    "é" * 64,
    "tab\tname",
    "new\nline",
    "$(id)",
    "mysql",
    "#mysql50#x",
    "😀",
]
NAMES = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(min_size=0, max_size=70),
    st.builds(
        lambda head, mark, tail: head + mark + tail, st.text(max_size=6), st.sampled_from(HOSTILE), st.text(max_size=6)
    ),
)


def connections(server) -> int:
    """Connections the server accepted so far (this query's own included)."""
    return int(query(server, "SHOW GLOBAL STATUS LIKE 'Connections'")[0][1])


def env_for(cli_env: dict, name: str, folder) -> dict[str, str]:
    """MYSQL_DATABASE=name; a name an environment cannot carry (NUL) goes through the config file."""
    env = {key: value for key, value in cli_env.items() if key != "MYSQL_DATABASE"}
    config = folder / "hostile.env"
    if "\x00" in name:
        quoted = name.replace("\\", "\\\\").replace("'", "\\'")
        config.write_bytes(f"MYSQL_DATABASE='{quoted}'\n".encode(errors="surrogateescape"))
        env["DB_CONFIG_FILE"] = str(config)
    else:
        env["MYSQL_DATABASE"] = name
    return env


def drop(server, name: str) -> None:
    try:
        quoted = quote_identifier(name)
    except InvalidIdentifier:
        return
    query(server, f"DROP DATABASE IF EXISTS {quoted}")


@hypothesis_settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=NAMES)
@example(name="€" * 64)
@example(name="nul\x00byte")
@example(name="#mysql50#x")
def test_a_name_is_quoted_end_to_end_or_refused_before_any_sql(
    name, cli_env, mysql_server, tmp_path_factory, fault_cases
):
    existing = schema_names(mysql_server)
    # Never touch a schema that exists already (mysql, sys, another test's ...).
    assume(name.casefold() not in {schema.casefold() for schema in existing})
    copy = ("r_" + name[:60]).rstrip(" ")
    assume(copy.casefold() not in {schema.casefold() for schema in existing})
    folder = tmp_path_factory.mktemp("hostile")
    env = {**env_for(cli_env, name, folder), "BACKUP_DIR": str(folder / "backups")}
    with fault_cases.case():
        try:
            validate_identifier(name)
        except InvalidIdentifier:
            valid = False
        else:
            valid = name != ""
        seen = connections(mysql_server)
        created = run_invoke(env, "db.create", "db.init", "db.backup")
        try:
            if not valid:
                line = assert_one_error_line(created)
                assert "database name" in line or "no database configured" in line, line
                assert connections(mysql_server) == seen + 1  # only the count itself: the command never connected
                assert schema_names(mysql_server) == existing
                return
            assert created.returncode == 0, created.output
            assert schema_names(mysql_server) == existing | {name}
            assert version_rows(mysql_server, name) == [HEAD]
            tables = {
                row[0]
                for row in query(
                    mysql_server, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (name,)
                )
            }
            assert set(APP_TABLES) <= tables
            [backup] = (folder / "backups").glob("*.sql.zst")
            assert json.loads(backup.with_name(backup.name + ".json").read_text())["database"] == name

            moved = run_invoke(env, "db.restore", str(backup), "--into", copy, "--yes", "db.drop", "--yes")
            assert moved.returncode == 0, moved.output
            assert schema_names(mysql_server) == existing | {copy}
            assert version_rows(mysql_server, copy) == [HEAD]
        finally:
            drop(mysql_server, name)
            drop(mysql_server, copy)
        assert schema_names(mysql_server) == existing
