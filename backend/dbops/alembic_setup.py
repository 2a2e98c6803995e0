"""Alembic bound to Settings: its Config and ScriptDirectory, a connection for it, its errors
turned into one line, and what alembic_version holds."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..config import PROJECT_ROOT, Settings
from .connection import connect
from .errors import RevisionError, first_line

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import Connection

ALEMBIC_INI = PROJECT_ROOT / "alembic.ini"
SCRIPT_LOCATION = PROJECT_ROOT / "alembic"


# Revision arguments: ids, partial ids, head(s), base, relative steps, branch@rev, ranges.
_REVISION_ARGUMENT = re.compile(r"^[A-Za-z0-9_@+\-.:]{1,128}$")


def validate_revision_argument(value: str) -> str:
    if not isinstance(value, str) or not _REVISION_ARGUMENT.match(value):
        raise RevisionError(f"malformed revision {value!r}: use an id from `invoke db.history`, head, base, +N or -N")
    return value


def alembic_config(settings: Settings, connection: Connection | None = None) -> Config:
    from argparse import Namespace

    from alembic.config import Config

    # quiet: Alembic would print its own "Generating ..." lines; the tasks report instead.
    config = Config(str(ALEMBIC_INI), stdout=io.StringIO(), output_buffer=io.StringIO(), cmd_opts=Namespace(quiet=True))
    # ConfigParser interpolates '%': escape it in paths.
    config.set_main_option("script_location", str(SCRIPT_LOCATION).replace("%", "%%"))
    config.set_main_option("version_locations", str(settings.versions_dir).replace("%", "%%"))
    config.attributes["settings"] = settings
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def script_directory(settings: Settings) -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    if not settings.versions_dir.is_dir():
        raise RevisionError(f"revision folder {settings.versions_dir} does not exist")
    with alembic_errors():
        return ScriptDirectory.from_config(alembic_config(settings))


def _explain(exc: BaseException) -> str:
    message = first_line(exc)
    if match := re.search(r"Can't locate revision identified by '([^']*)'", message):
        return f"unknown revision {match.group(1)!r}: see `invoke db.history`"
    if "Multiple head revisions" in message or "Multiple heads" in message:
        return "several heads: join them with `invoke db.merge` (see `invoke db.heads`)"
    if "Target database is not up to date" in message:
        return "the database is not at head: run `invoke db.upgrade` first"
    if message.startswith("Ambiguous"):
        return (
            "a relative step (REV-N, +N) cannot say which branch of a merge to take: name the revision, "
            "see `invoke db.history`"
        )
    if "Relative revision" in message and "didn't produce" in message:
        return "not that many revisions to move: see `invoke db.history`"
    if match := re.search(r"No such revision or branch '([^']*)'", message):
        return f"unknown revision {match.group(1)!r}: see `invoke db.history`"
    return message


@contextmanager
def alembic_errors() -> Iterator[None]:
    """Turn Alembic's CommandError and revision-map errors into RevisionError."""
    from alembic.script.revision import RevisionError as AlembicRevisionError
    from alembic.util import CommandError

    try:
        yield
    except (CommandError, AlembicRevisionError) as exc:
        raise RevisionError(_explain(exc)) from exc


@contextmanager
def migration_connection(settings: Settings) -> Iterator[tuple[Config, Connection]]:
    """An Alembic Config bound to one open connection to the configured database."""
    with connect(settings) as connection, alembic_errors():
        yield alembic_config(settings, connection), connection


def current_heads(connection: Connection) -> tuple[str, ...]:
    from alembic.runtime.migration import MigrationContext

    return tuple(MigrationContext.configure(connection).get_current_heads())


def current(settings: Settings) -> tuple[str, ...]:
    """Revisions recorded in alembic_version (empty at base)."""
    with connect(settings) as connection:
        return current_heads(connection)
