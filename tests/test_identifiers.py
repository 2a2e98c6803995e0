"""Database names: refused before any SQL, or quoted safely end to end."""

from __future__ import annotations

import pymysql
import pytest
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from backend.dbops import admin
from backend.dbops.errors import InvalidIdentifier
from backend.dbops.identifiers import quote_identifier, validate_identifier
from tests.helpers import schema_names


@pytest.mark.parametrize("name", ["emotional_chat", "a-b", "über", "x" * 64, "we`ird", "sp ace", "semi;colon--"])
def test_valid_names(name):
    assert validate_identifier(name) == name


@pytest.mark.parametrize(
    "name", ["", "x" * 65, "trailing ", "nul\x00byte", "tab\tname", "-starts-with-dash", "emoji\U0001f600"]
)
def test_refused_names(name):
    with pytest.raises(InvalidIdentifier):
        validate_identifier(name)


def test_quoting_doubles_backticks():
    assert quote_identifier("a`b") == "`a``b`"
    assert quote_identifier("plain") == "`plain`"


HOSTILE = st.one_of(
    st.text(min_size=0, max_size=70),
    st.sampled_from(
        [
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
            "\x00",
            "-x",
            ":0",
            "a:b",
        ]
    ),
)


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=HOSTILE)
def test_any_name_is_refused_or_round_trips(settings, mysql_server, name):
    try:
        validate_identifier(name)
    except InvalidIdentifier:
        return  # refused before any SQL
    target = settings.with_database(name)
    schemas_before = schema_names(mysql_server)
    # Never touch a schema that exists already (mysql, sys, another test's ...).
    assume(name.casefold() not in {schema.casefold() for schema in schemas_before})
    try:
        assert admin.create_database(target) is True
        assert name in schema_names(mysql_server)
        assert admin.database_exists(target)
        assert admin.drop_database(target) is True
        assert schema_names(mysql_server) == schemas_before
    except pymysql.err.Error:
        pytest.fail(f"{name!r} passed validation but the server refused it")
    finally:
        connection = mysql_server.connect()
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {quote_identifier(name)}")
        connection.close()
