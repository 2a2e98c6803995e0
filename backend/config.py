"""Settings: one immutable object built from the environment, then a dotenv file.

Sources, first match wins for each variable:
  1. real environment variables;
  2. the dotenv file named by DB_CONFIG_FILE (default: config.env in the project root);
  3. the sandbox server (SANDBOX_DIR/sandbox.json, default .sandbox/), for the connection only,
     and only when no database is configured by 1 or 2;
  4. built-in defaults.

This is the only module that reads os.environ.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

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


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    # Excluded from repr so the password never reaches logs or tracebacks.
    password: str = field(default="", repr=False)
    database: str = ""
    environment: str = "development"
    connect_timeout: int = 5
    # The revision files; tests and experiments point MIGRATIONS_DIR at their own folder.
    versions_dir: Path = PROJECT_ROOT / "alembic" / "versions"
    config_file: Path | None = None
    sandbox_dir: Path = PROJECT_ROOT / ".sandbox"
    # "scratch": autogenerate against a throwaway database at head; "database": the configured one.
    autogenerate_against: str = "scratch"
    # A database the tool may empty and reuse for its throwaway schemas (autogenerate, drift,
    # recover, lint, the DDL probe), for an account that may not create databases; "": create them.
    scratch_database: str = ""
    # Backups
    backup_dir: Path = PROJECT_ROOT / "backups"
    backup_keep: int = 10
    # Deploy pipeline
    deploy_steps: tuple[str, ...] = DEFAULT_DEPLOY_STEPS
    lock_timeout: int = 10
    # DDL waits up to ddl_wait_seconds (not queued) for the sessions holding its table, then
    # at most 1 s queued; a timeout is retried ddl_retries times with backoff.
    ddl_wait_seconds: int = 60
    ddl_retries: int = 5
    # Holding tables of a finished deploy are dropped after this many hours (db.settle drops them now).
    hold_retention_hours: int = 24
    # The online-DDL guard refuses a table copy above this many rows unless the revision opts in.
    ddl_guard_max_rows: int = 1_000_000
    smoke_sql: tuple[str, ...] = ()
    # Compare the live schema with backend/database.py when verifying at head.
    verify_models: bool = True
    # Tables the application does not manage (names or fnmatch patterns): verify, drift,
    # autogenerate and the preflight leave them alone, as Alembic's include_name would.
    unmanaged_tables: tuple[str, ...] = ()
    # Application service and its restart
    app_host: str = "127.0.0.1"
    app_port: int = 8000
    restart_command: str = str(PROJECT_ROOT / "scripts" / "restart_services.sh")
    health_url: str = ""  # default: http://app_host:app_port/health
    health_command: str = ""  # instead of the URL when set
    health_timeout: float = 5.0
    health_retries: int = 10
    # Set by app.restart for the service it starts, which answers it on /health (APP_START_ID).
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
        raise ConfigError(f"{PASSWORD_FD_VARIABLE}={value!r} does not name an open file descriptor to read "
                          "the password from") from None


def _read_sandbox_state(path: Path) -> dict[str, str]:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {
        "MYSQL_HOST": state.get("host", "127.0.0.1"),
        "MYSQL_PORT": str(state.get("port", "")),
        "MYSQL_USER": state.get("user", "root"),
        "MYSQL_PASSWORD": state.get("password", ""),
        "MYSQL_DATABASE": state.get("database", ""),
    }


def _path(value: str | Path) -> Path:
    """Relative paths are relative to the project root, wherever the command runs."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def _int(values: Mapping[str, str | None], name: str, default: int) -> int:
    raw = values.get(name)
    if raw is None or str(raw).strip() == "":
        return default
    try:
        number = int(str(raw).strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if number < 0:
        raise ConfigError(f"{name} must not be negative, got {number}")
    return number


def _deploy_settings(values: Mapping[str, str], environment: str) -> dict:
    """Backup, deploy and restart settings. DEPLOY_STEPS_<ENV> overrides DEPLOY_STEPS per environment."""
    raw_steps = values.get(f"DEPLOY_STEPS_{environment.upper()}") or values.get("DEPLOY_STEPS") or ""
    steps = tuple(step.strip().lower() for step in raw_steps.split(",") if step.strip()) or DEFAULT_DEPLOY_STEPS
    unknown = [step for step in steps if step not in DEPLOY_STEP_NAMES]
    if unknown:
        raise ConfigError(f"unknown deploy step(s) {', '.join(unknown)}: choose from {', '.join(DEPLOY_STEP_NAMES)}")
    if len(set(steps)) != len(steps):
        raise ConfigError(f"a deploy step is listed twice in {','.join(steps)}")
    if environment in PROTECTED_ENVIRONMENTS:
        missing = [step for step in REQUIRED_PROTECTED_STEPS if step not in steps]
        if missing:
            raise ConfigError(f"{environment} deploys may not skip {', '.join(missing)}")
    # Smoke SQL: statements separated by ';;' (a single ';' may appear inside one).
    smoke = tuple(part.strip() for part in (values.get("DEPLOY_SMOKE_SQL") or "").split(";;") if part.strip())
    app_port = _int(values, "APP_PORT", 8000)
    return {
        "backup_dir": _path(values.get("BACKUP_DIR") or "backups"),
        "backup_keep": max(1, _int(values, "BACKUP_KEEP", 10)),
        "deploy_steps": steps,
        "lock_timeout": _int(values, "DEPLOY_LOCK_TIMEOUT", 10),
        "ddl_wait_seconds": _int(values, "DDL_WAIT_SECONDS", 60),
        "ddl_retries": _int(values, "DDL_RETRIES", 5),
        "hold_retention_hours": _int(values, "HOLD_RETENTION_HOURS", 24),
        "ddl_guard_max_rows": _int(values, "DDL_GUARD_MAX_ROWS", 1_000_000),
        "smoke_sql": smoke,
        "verify_models": str(values.get("DEPLOY_VERIFY_MODELS", "1")).strip().lower() in TRUE_WORDS,
        "unmanaged_tables": tuple(name.strip() for name in (values.get("UNMANAGED_TABLES") or "").split(",")
                                  if name.strip()),
        "app_host": (values.get("APP_HOST") or "127.0.0.1").strip(),
        "app_port": app_port,
        "restart_command": values.get("RESTART_COMMAND") or str(PROJECT_ROOT / "scripts" / "restart_services.sh"),
        "health_url": (values.get("HEALTH_URL") or "").strip(),
        "health_command": (values.get("HEALTH_COMMAND") or "").strip(),
        "health_timeout": float(_int(values, "HEALTH_TIMEOUT", 5) or 5),
        "health_retries": max(1, _int(values, "HEALTH_RETRIES", 10)),
    }


def load_settings(
    environ: Mapping[str, str] | None = None, config_file: str | Path | None = None
) -> Settings:
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
    sandbox_dir = _path(merged.get("SANDBOX_DIR") or ".sandbox")
    if not merged.get("MYSQL_DATABASE"):
        sandbox = _read_sandbox_state(sandbox_dir / SANDBOX_STATE_NAME)
        if sandbox.get("MYSQL_DATABASE"):
            # The sandbox supplies the whole connection, never mixed with a half-set one.
            merged.update(sandbox)
            source = "sandbox"

    environment = (merged.get("APP_ENV") or "development").strip().lower()
    if environment not in ENVIRONMENTS:
        raise ConfigError(f"APP_ENV must be one of {', '.join(ENVIRONMENTS)}, got {environment!r}")
    port = _int(merged, "MYSQL_PORT", 3306)
    if not 0 < port < 65536:
        raise ConfigError(f"MYSQL_PORT must be between 1 and 65535, got {port}")

    autogenerate_against = (merged.get("AUTOGENERATE_AGAINST") or "scratch").strip().lower()
    if autogenerate_against not in ("scratch", "database"):
        raise ConfigError(f"AUTOGENERATE_AGAINST must be scratch or database, got {autogenerate_against!r}")
    return Settings(
        **_deploy_settings(merged, environment),
        autogenerate_against=autogenerate_against,
        scratch_database=merged.get("SCRATCH_DATABASE") or "",
        host=(merged.get("MYSQL_HOST") or "127.0.0.1").strip(),
        port=port,
        user=(merged.get("MYSQL_USER") or "root").strip(),
        password=merged.get("MYSQL_PASSWORD") or "",
        database=(merged.get("MYSQL_DATABASE") or ""),
        environment=environment,
        connect_timeout=_int(merged, "MYSQL_CONNECT_TIMEOUT", 5) or 5,
        versions_dir=_path(merged.get("MIGRATIONS_DIR") or "alembic/versions"),
        config_file=path if path.is_file() else None,
        sandbox_dir=sandbox_dir,
        app_start_id=env.get(START_ID_VARIABLE, "").strip(),
        source=source or "defaults",
    )
