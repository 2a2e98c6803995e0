"""Settings: sources, precedence, validation, secrecy."""

from __future__ import annotations

import json
import os
import re
from dataclasses import fields

import pytest

from backend.config import PROJECT_ROOT, ConfigError, Settings, debug_requested, load_settings


def test_environment_wins_over_the_file(tmp_path):
    config = tmp_path / "config.env"
    config.write_text("MYSQL_HOST=db.internal\nMYSQL_PORT=3307\nMYSQL_DATABASE=from_file\nMYSQL_PASSWORD=filepw\n")
    settings = load_settings({"MYSQL_DATABASE": "from_env", "SANDBOX_DIR": str(tmp_path)}, config_file=config)
    assert (settings.host, settings.port, settings.database, settings.password) == (
        "db.internal",
        3307,
        "from_env",
        "filepw",
    )
    assert settings.source == "environment"
    assert settings.config_file == config


def test_another_file_is_chosen_with_db_config_file(tmp_path):
    production = tmp_path / "config.production.env"
    production.write_text("MYSQL_DATABASE=emotional_chat\nAPP_ENV=production\n")
    settings = load_settings({"DB_CONFIG_FILE": str(production)})
    assert settings.is_protected and settings.source == "config"


def test_a_named_config_file_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings({"DB_CONFIG_FILE": str(tmp_path / "missing.env")})


def test_relative_paths_are_relative_to_the_project(tmp_path):
    settings = load_settings(
        {"MIGRATIONS_DIR": "elsewhere/versions", "SANDBOX_DIR": str(tmp_path)}, config_file=tmp_path / "none.env"
    )
    assert settings.versions_dir == PROJECT_ROOT / "elsewhere" / "versions"


def test_sandbox_supplies_the_connection_only_when_nothing_is_configured(tmp_path):
    (tmp_path / "sandbox.json").write_text(
        json.dumps({"host": "127.0.0.1", "port": 41234, "user": "sb", "password": "sbpw", "database": "emotional_chat"})
    )
    empty = tmp_path / "empty.env"
    empty.write_text("")
    from_sandbox = load_settings({"SANDBOX_DIR": str(tmp_path)}, config_file=empty)
    assert (from_sandbox.port, from_sandbox.user, from_sandbox.source) == (41234, "sb", "sandbox")
    configured = load_settings({"SANDBOX_DIR": str(tmp_path), "MYSQL_DATABASE": "mine"}, config_file=empty)
    assert (configured.port, configured.database, configured.source) == (3306, "mine", "environment")


def test_nothing_configured(tmp_path):
    settings = load_settings({"SANDBOX_DIR": str(tmp_path)}, config_file=tmp_path / "none.env")
    assert not settings.is_configured and settings.source == "defaults"


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"MYSQL_PORT": "abc"}, "MYSQL_PORT must be a whole number"),
        ({"MYSQL_PORT": "70000"}, "between 1 and 65535"),
        ({"MYSQL_CONNECT_TIMEOUT": "-3"}, "must not be negative"),
        ({"APP_ENV": "live"}, "APP_ENV must be one of"),
    ],
)
def test_malformed_values(tmp_path, environ, message):
    with pytest.raises(ConfigError, match=message):
        load_settings({**environ, "SANDBOX_DIR": str(tmp_path)}, config_file=tmp_path / "none.env")


def test_a_password_on_a_pipe_wins_over_the_environment_and_the_file(tmp_path):
    config = tmp_path / "config.env"
    config.write_text("MYSQL_DATABASE=app\nMYSQL_PASSWORD=filepw\n")
    read_end, write_end = os.pipe()
    os.write(write_end, "p@ss w0rd\n;é".encode())
    os.close(write_end)
    environ = {"MYSQL_PASSWORD_FD": str(read_end), "MYSQL_PASSWORD": "envpw", "APP_START_ID": "abc"}
    settings = load_settings(environ, config_file=config)
    assert settings.password == "p@ss w0rd\n;é" and settings.app_start_id == "abc"
    with pytest.raises(OSError):
        os.fstat(read_end)  # read once, then closed
    with pytest.raises(ConfigError, match="MYSQL_PASSWORD_FD='x' does not name an open file descriptor"):
        load_settings({"MYSQL_PASSWORD_FD": "x"}, config_file=config)


def test_password_never_in_repr_or_description():
    settings = Settings(password="hunter2-secret", database="emotional_chat")
    assert "hunter2-secret" not in repr(settings)
    assert "hunter2-secret" not in settings.describe()
    assert "hunter2-secret" not in str(settings.with_database("other"))


def test_settings_are_immutable():
    with pytest.raises(AttributeError):
        Settings().database = "x"  # type: ignore[misc]


def test_debug_requested():
    assert debug_requested({"DB_DEBUG": "1"}) and debug_requested({"DB_DEBUG": "yes"})
    assert not debug_requested({}) and not debug_requested({"DB_DEBUG": "0"})


def _as_documented(default) -> str:
    """A field's default as the guide writes it."""
    if isinstance(default, tuple):
        return ",".join(default)
    if isinstance(default, bool):
        return str(int(default))
    if isinstance(default, float):
        return f"{default:g}"
    return str(default).removeprefix(f"{PROJECT_ROOT}/")


def test_the_guide_gives_every_variable_the_default_of_its_field():
    """Each default is written once, on its Settings field; the guide's tables must agree with it."""
    guide = (PROJECT_ROOT / "docs" / "数据库版本管理.md").read_text()
    documented = dict(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \| ([^|]+?) \|", guide, re.M))
    variables = {item.metadata["variable"]: item.default for item in fields(Settings) if "variable" in item.metadata}
    assert len(variables) == len(fields(Settings)) - 3  # all but config_file, app_start_id and source
    derived = {
        "HEALTH_URL": "`http://APP_HOST:APP_PORT/health`",  # empty: made of APP_HOST and APP_PORT
        "APP_DIR": "本项目的目录",  # this checkout's path, different on each machine
        "SSH_KNOWN_HOSTS": "`~/.ssh/known_hosts`",  # unset: the user's own file
    }
    wrong = {
        name: documented.get(name)
        for name, default in variables.items()
        if documented.get(name)
        not in (
            {derived[name]}
            if name in derived
            else {f"`{_as_documented(default)}`"}
            if _as_documented(default)
            else {"空", "无"}
        )
    }
    assert not wrong, f"the guide's defaults differ from Settings: {wrong}"
    settings = load_settings(
        {"SANDBOX_DIR": str(PROJECT_ROOT / "no-such-sandbox")}, config_file=PROJECT_ROOT / "none.env"
    )
    assert all(
        getattr(settings, item.name) == item.default
        for item in fields(Settings)
        if "variable" in item.metadata and item.name != "sandbox_dir"
    )
