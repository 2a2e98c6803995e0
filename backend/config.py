"""Settings: one immutable object built from the environment, then a dotenv file.

Sources, first match wins for each variable:
  1. real environment variables;
  2. the dotenv file named by DB_CONFIG_FILE (default: config.env in the project root);
  3. the sandbox server (SANDBOX_DIR/sandbox.json, default .sandbox/), for the connection only,
     and only when no database is configured by 1 or 2;
  4. built-in defaults.

Each Settings field names its variable, its default and how its text is read, in one place;
load_settings reads every field that way. This is the only module that reads os.environ.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SANDBOX_STATE_NAME = "sandbox.json"

ENVIRONMENTS = ("development", "staging", "production")
DEPLOY_STEP_NAMES = ("preflight", "backup", "upgrade", "verify", "restart")
DEFAULT_DEPLOY_STEPS = DEPLOY_STEP_NAMES
# A protected environment may not leave these out of its deploy.
REQUIRED_PROTECTED_STEPS = ("preflight", "backup", "upgrade", "verify")
PROTECTED_ENVIRONMENTS = frozenset({"production"})
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})


class ConfigError(ValueError):
    """A configuration value is missing or malformed."""


# ---------------------------------------------------------------- reading one variable
# Each reader turns a variable's text into the setting's value; it is called only when the
# variable is set (an unset one leaves the field's default), and most treat an empty value as unset.

Reader = Callable[[str, str, Any], Any]


def _path(value: str | Path) -> Path:
    """Relative paths are relative to the project root, wherever the command runs."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def _text(name: str, raw: str, default: str) -> str:
    return (raw or default).strip()


def _verbatim(name: str, raw: str, default: str) -> str:
    return raw or default


def _folder(name: str, raw: str, default: Path) -> Path:
    return _path(raw or default)


def _whole(name: str, raw: str, default: int) -> int:
    if not raw.strip():
        return default
    try:
        number = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if number < 0:
        raise ConfigError(f"{name} must not be negative, got {number}")
    return number


def _optional_path(name: str, raw: str, default: Path | None) -> Path | None:
    return _path(raw.strip()) if raw.strip() else default


def _nonzero(name: str, raw: str, default: int | float) -> int | float:
    """A whole number where 0 means the default (a timeout), as the field's type."""
    return type(default)(_whole(name, raw, 0) or default)


def _at_least_one(name: str, raw: str, default: int) -> int:
    return max(1, _whole(name, raw, default))


def _port(name: str, raw: str, default: int) -> int:
    port = _whole(name, raw, default)
    if not 0 < port < 65536:
        raise ConfigError(f"{name} must be between 1 and 65535, got {port}")
    return port


def _flag(name: str, raw: str, default: bool) -> bool:
    """On for 1, true, yes or on; set but empty is off."""
    return raw.strip().lower() in TRUE_WORDS


def _names(name: str, raw: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """Comma-separated names."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


# An application host, [user@]host[:port]: plain names only, since they go into SSH and URLs.
APP_HOST_PATTERN = re.compile(
    r"(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>\d{1,5}))?"
)


def _hosts(name: str, raw: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """Application hosts separated by commas or spaces, each [user@]host[:port]."""
    hosts = tuple(raw.replace(",", " ").split())
    bad = [host for host in hosts if not APP_HOST_PATTERN.fullmatch(host)]
    if bad:
        raise ConfigError(f"{name}: {bad[0]!r} is not [user@]host[:port]")
    if len(set(hosts)) != len(hosts):
        raise ConfigError(f"{name} lists a host twice")
    return hosts


_LOAD_THRESHOLDS = re.compile(r"\w+[=:]\d+(,\w+[=:]\d+)*")


def _load_thresholds(name: str, raw: str, default: str) -> str:
    """pt-online-schema-change's status thresholds: Variable=number[,Variable=number...]."""
    value = raw.replace(" ", "") or default
    if not _LOAD_THRESHOLDS.fullmatch(value):
        raise ConfigError(f"{name} must be status thresholds such as Threads_running=25, got {value!r}")
    return value


def _seconds(name: str, raw: str, default: float) -> float:
    try:
        value = float(raw.strip()) if raw.strip() else default
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw.strip()!r}") from None
    if not 0 < value < 3600:
        raise ConfigError(f"{name} must be between 0 and 3600 seconds, got {value}")
    return value


def _statements(name: str, raw: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """SQL statements separated by ';;' (a single ';' may appear inside one)."""
    return tuple(part.strip() for part in raw.split(";;") if part.strip())


def _choice(choices: tuple[str, ...], rule: str) -> Reader:
    """One of choices; rule says which, after the variable's name ("must be one of ...")."""

    def read(name: str, raw: str, default: str) -> str:
        value = (raw or default).strip().lower()
        if value not in choices:
            raise ConfigError(f"{name} {rule}, got {value!r}")
        return value

    return read


def _steps(name: str, raw: str, default: tuple[str, ...]) -> tuple[str, ...]:
    steps = tuple(step.strip().lower() for step in raw.split(",") if step.strip()) or default
    unknown = [step for step in steps if step not in DEPLOY_STEP_NAMES]
    if unknown:
        raise ConfigError(f"unknown deploy step(s) {', '.join(unknown)}: choose from {', '.join(DEPLOY_STEP_NAMES)}")
    if len(set(steps)) != len(steps):
        raise ConfigError(f"a deploy step is listed twice in {','.join(steps)}")
    return steps


def _variable(name: str, default: Any, read: Reader = _text, per_environment: bool = False, **options: Any) -> Any:
    """A field set by the variable `name`; per_environment: <name>_<APP_ENV> wins over <name>."""
    return field(
        default=default, metadata={"variable": name, "read": read, "per_environment": per_environment}, **options
    )


@dataclass(frozen=True)
class Settings:
    """Each field's default and the variable that sets it are written here, and only here."""

    host: str = _variable("MYSQL_HOST", "127.0.0.1")
    port: int = _variable("MYSQL_PORT", 3306, _port)
    user: str = _variable("MYSQL_USER", "root")
    # Excluded from repr so the password never reaches logs or tracebacks.
    password: str = _variable("MYSQL_PASSWORD", "", _verbatim, repr=False)
    database: str = _variable("MYSQL_DATABASE", "", _verbatim)
    environment: str = _variable(
        "APP_ENV", "development", _choice(ENVIRONMENTS, "must be one of " + ", ".join(ENVIRONMENTS))
    )
    connect_timeout: int = _variable("MYSQL_CONNECT_TIMEOUT", 5, _nonzero)
    # The revision files; tests and experiments point MIGRATIONS_DIR at their own folder.
    versions_dir: Path = _variable("MIGRATIONS_DIR", PROJECT_ROOT / "alembic" / "versions", _folder)
    config_file: Path | None = None
    sandbox_dir: Path = _variable("SANDBOX_DIR", PROJECT_ROOT / ".sandbox", _folder)
    # "scratch": autogenerate against a throwaway database at head; "database": the configured one.
    autogenerate_against: str = _variable(
        "AUTOGENERATE_AGAINST", "scratch", _choice(("scratch", "database"), "must be scratch or database")
    )
    # A database the tool may empty and reuse for its throwaway schemas (autogenerate, drift,
    # recover, lint, the DDL probe), for an account that may not create databases; "": create them.
    scratch_database: str = _variable("SCRATCH_DATABASE", "", _verbatim)
    # Backups
    backup_dir: Path = _variable("BACKUP_DIR", PROJECT_ROOT / "backups", _folder)
    backup_keep: int = _variable("BACKUP_KEEP", 10, _at_least_one)
    # Deploy pipeline; a protected environment may not leave out REQUIRED_PROTECTED_STEPS.
    deploy_steps: tuple[str, ...] = _variable("DEPLOY_STEPS", DEFAULT_DEPLOY_STEPS, _steps, per_environment=True)
    lock_timeout: int = _variable("DEPLOY_LOCK_TIMEOUT", 10, _whole)
    # DDL waits up to ddl_wait_seconds (not queued) for the sessions holding its table, then
    # at most 1 s queued; a timeout is retried ddl_retries times with backoff.
    ddl_wait_seconds: int = _variable("DDL_WAIT_SECONDS", 60, _whole)
    ddl_retries: int = _variable("DDL_RETRIES", 5, _whole)
    # Holding tables of a finished deploy are dropped after this many hours (db.settle drops them now).
    hold_retention_hours: int = _variable("HOLD_RETENTION_HOURS", 24, _whole)
    # The online-DDL guard refuses a table copy above this many rows unless the revision opts in.
    ddl_guard_max_rows: int = _variable("DDL_GUARD_MAX_ROWS", 1_000_000, _whole)
    # What such a statement does: "online" runs it through pt-online-schema-change, "direct" as
    # written (the table copy blocks writes), "refuse" stops the deploy; "auto": online when the tool is installed.
    online_schema_change: str = _variable(
        "ONLINE_SCHEMA_CHANGE",
        "auto",
        _choice(("auto", "online", "direct", "refuse"), "must be auto, online, direct or refuse"),
        per_environment=True,
    )
    # pt-online-schema-change's throttling: pause above max load, stop above critical load,
    # chunks sized to take chunk_time seconds, pause while a replica lags more than max_lag seconds.
    # Short chunks: each holds the copy's AUTO-INC lock, which the application's writes wait for
    # (tests/bench/online.py at 4M rows: writer max 251 ms at 0.1 s, 1.2 s at the tool's 0.5 s).
    osc_max_load: str = _variable("OSC_MAX_LOAD", "Threads_running=25", _load_thresholds)
    osc_critical_load: str = _variable("OSC_CRITICAL_LOAD", "Threads_running=50", _load_thresholds)
    osc_chunk_time: float = _variable("OSC_CHUNK_TIME", 0.1, _seconds)
    osc_max_lag: float = _variable("OSC_MAX_LAG", 1.0, _seconds)
    osc_replicas: tuple[str, ...] = _variable("OSC_REPLICAS", (), _hosts, per_environment=True)
    smoke_sql: tuple[str, ...] = _variable("DEPLOY_SMOKE_SQL", (), _statements)
    # Compare the live schema with backend/database.py when verifying at head.
    verify_models: bool = _variable("DEPLOY_VERIFY_MODELS", True, _flag)
    # The deploy's backup step takes a full dump (else only the undo log keeps what it changes).
    deploy_full_backup: bool = _variable("DEPLOY_FULL_BACKUP", False, _flag, per_environment=True)
    # Tables the application does not manage (names or fnmatch patterns): verify, drift,
    # autogenerate and the preflight leave them alone, as Alembic's include_name would.
    unmanaged_tables: tuple[str, ...] = _variable("UNMANAGED_TABLES", (), _names)
    # Application service and its restart
    app_host: str = _variable("APP_HOST", "127.0.0.1")
    app_port: int = _variable("APP_PORT", 8000, _whole)
    restart_command: str = _variable(
        "RESTART_COMMAND", str(PROJECT_ROOT / "scripts" / "restart_services.sh"), _verbatim
    )
    health_url: str = _variable("HEALTH_URL", "")  # default: http://app_host:app_port/health
    health_command: str = _variable("HEALTH_COMMAND", "")  # instead of the URL when set
    health_timeout: float = _variable("HEALTH_TIMEOUT", 5.0, _nonzero)
    health_retries: int = _variable("HEALTH_RETRIES", 10, _at_least_one)
    # Several application hosts: a rolling restart over SSH (app_hosts.py); empty: the service runs here.
    app_hosts: tuple[str, ...] = _variable("APP_HOSTS", (), _hosts, per_environment=True)
    app_hosts_batch: int = _variable("APP_HOSTS_BATCH", 1, _at_least_one)
    app_dir: str = _variable("APP_DIR", str(PROJECT_ROOT))  # the project's folder on each host
    ssh_identity_file: str = _variable("SSH_IDENTITY_FILE", "")  # default: the agent, ~/.ssh/id_*
    ssh_known_hosts: Path | None = _variable("SSH_KNOWN_HOSTS", None, _optional_path)  # default: ~/.ssh/known_hosts
    ssh_connect_timeout: float = _variable("SSH_CONNECT_TIMEOUT", 10.0, _nonzero)
    # Set by app.restart for the service it starts, which answers it on /health (APP_START_ID,
    # read from the real environment only).
    app_start_id: str = ""
    # "config", "environment" or "sandbox": told to the user by db.check.
    source: str = "defaults"

    @property
    def is_configured(self) -> bool:
        return bool(self.database)

    @property
    def is_protected(self) -> bool:
        return self.environment in PROTECTED_ENVIRONMENTS

    @property
    def effective_health_url(self) -> str:
        return self.health_url or f"http://{self.app_host}:{self.app_port}/health"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def describe(self) -> str:
        """A one-line, secret-free description of the target."""
        return f"{self.user}@{self.address}/{self.database or '(none)'} [{self.environment}]"

    def with_database(self, database: str) -> Settings:
        return replace(self, database=database)


# Never passed on to child processes (dump clients, the restart command, the service).
SECRET_VARIABLES = frozenset({"MYSQL_PASSWORD", "MYSQL_PWD"})
# The number of an inherited pipe holding the password: how app.restart hands its password to
# the service it starts without a command line or an environment showing it.
PASSWORD_FD_VARIABLE = "MYSQL_PASSWORD_FD"
# A value new at each app.restart, in the environment of the service it starts.
START_ID_VARIABLE = "APP_START_ID"


def child_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process: ours, without the password (nor the pipe it came on)."""
    env = os.environ if environ is None else environ
    return {key: value for key, value in env.items() if key not in SECRET_VARIABLES | {PASSWORD_FD_VARIABLE}}


def search_path() -> str:
    """PATH, for finding programs (the servers and clients)."""
    return os.environ.get("PATH", "")


def debug_requested(environ: Mapping[str, str] | None = None) -> bool:
    """DB_DEBUG=1 asks for tracebacks; checked before Settings exist, since loading may fail."""
    env = os.environ if environ is None else environ
    return str(env.get("DB_DEBUG", "")).strip().lower() in TRUE_WORDS


@functools.cache
def _password_from_descriptor(value: str) -> str:
    """What the pipe named by MYSQL_PASSWORD_FD holds: read to its end and closed on the first
    load, remembered for the later ones (`invoke` loads the settings for each task)."""
    try:
        with os.fdopen(int(value), "rb") as source:
            return source.read().decode("utf-8", "surrogateescape")
    except (ValueError, OSError):
        raise ConfigError(
            f"{PASSWORD_FD_VARIABLE}={value!r} does not name an open file descriptor to read the password from"
        ) from None


# The sandbox state's keys: the fields of the connection it supplies.
_SANDBOX_FIELDS = ("host", "port", "user", "password", "database")
_FIELDS = {item.name: item for item in fields(Settings)}


def _read_sandbox_state(path: Path) -> dict[str, str]:
    """The sandbox's connection as variables; a key it lacks is empty, which leaves the default."""
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {_FIELDS[name].metadata["variable"]: str(state.get(name) or "") for name in _SANDBOX_FIELDS}


def _value(item: Field, values: Mapping[str, str], environment: str = "") -> Any:
    """The field's value from the variables in values (environment: for a per-environment variable)."""
    name = item.metadata["variable"]
    raw = values.get(name)
    if item.metadata["per_environment"]:
        raw = values.get(f"{name}_{environment.upper()}") or raw or ""
    return item.default if raw is None else item.metadata["read"](name, raw, item.default)


def load_settings(environ: Mapping[str, str] | None = None, config_file: str | Path | None = None) -> Settings:
    """Build Settings from the environment, a dotenv file and the sandbox state.

    A password on the pipe named by MYSQL_PASSWORD_FD counts as the environment's MYSQL_PASSWORD.
    """
    env = dict(os.environ if environ is None else environ)
    if env.get(PASSWORD_FD_VARIABLE):
        env["MYSQL_PASSWORD"] = _password_from_descriptor(env[PASSWORD_FD_VARIABLE])
    path = _path(config_file or env.get("DB_CONFIG_FILE") or "config.env")
    if env.get("DB_CONFIG_FILE") and not path.is_file():
        raise ConfigError(f"config file {path} named by DB_CONFIG_FILE does not exist")
    file_values = {k: v for k, v in dotenv_values(path).items() if v is not None} if path.is_file() else {}

    merged: dict[str, str] = {**file_values, **env}
    source = "environment" if env.get("MYSQL_DATABASE") else "config" if file_values.get("MYSQL_DATABASE") else ""
    if not merged.get("MYSQL_DATABASE"):
        sandbox = _read_sandbox_state(_value(_FIELDS["sandbox_dir"], merged) / SANDBOX_STATE_NAME)
        if sandbox.get("MYSQL_DATABASE"):
            # The sandbox supplies the whole connection, never mixed with a half-set one.
            merged.update(sandbox)
            source = "sandbox"

    environment = _value(_FIELDS["environment"], merged)
    values = {name: _value(item, merged, environment) for name, item in _FIELDS.items() if "variable" in item.metadata}
    if environment in PROTECTED_ENVIRONMENTS:
        missing = [step for step in REQUIRED_PROTECTED_STEPS if step not in values["deploy_steps"]]
        if missing:
            raise ConfigError(f"{environment} deploys may not skip {', '.join(missing)}")
    return Settings(
        **values,
        config_file=path if path.is_file() else None,
        app_start_id=env.get(START_ID_VARIABLE, "").strip(),
        source=source or "defaults",
    )
