"""Guards: confirmation before destructive operations (drop, reset, restore, ...), and no
change at all on a read-only server."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..config import Settings
from .errors import Refused

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

Ask = Callable[[str], str]
# Set on a replica (or a server kept from writes): an account with SUPER (or READ_ONLY ADMIN)
# could still write through read_only, which is exactly what must not happen there.
READ_ONLY_VARIABLES = ("read_only", "super_read_only", "innodb_read_only")


def read_only_flags(connection: Connection) -> list[str]:
    """The read-only settings the server has on, e.g. ['read_only=ON'] (MariaDB 11 also says NO_LOCK...)."""
    from sqlalchemy import text

    names = ", ".join(f"'{name}'" for name in READ_ONLY_VARIABLES)
    rows = connection.execute(text(f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({names})"))
    return sorted(f"{name}={value}" for name, value in rows if str(value).upper() not in ("OFF", "0", ""))


def read_only_message(settings: Settings, flags: list[str]) -> str:
    return (
        f"the server at {settings.address} is read-only ({', '.join(flags)}): it is most likely a replica; "
        "point MYSQL_HOST at the primary"
    )


def refuse_read_only(connection: Connection, settings: Settings) -> None:
    """Raise Refused on a read-only server, before anything is written (whatever the account may do)."""
    flags = read_only_flags(connection)
    if flags:
        raise Refused(read_only_message(settings, flags) + ": nothing changed")


def _allowed_without_asking(settings: Settings, action: str, database: str, yes: bool, allow_production: bool) -> bool:
    """True: go on without asking. On a protected environment only with --yes and --allow-production (else Refused)."""
    if settings.is_protected:
        if yes and allow_production:
            return True
        raise Refused(
            f"{action} of {database!r} refused on the protected {settings.environment} environment: "
            "it needs both --yes and --allow-production"
        )
    return yes


def _name_typed_back(ask: Ask, question: str, database: str) -> None:
    """Refused unless the person at the terminal types the database name back."""
    if ask(f"{question} Type the database name to go on: ").strip() != database:
        raise Refused("the name typed did not match: nothing changed")


def confirm_destructive(
    settings: Settings,
    action: str,
    database: str,
    yes: bool = False,
    allow_production: bool = False,
    ask: Ask | None = None,
) -> None:
    """Return when the action may go ahead, else raise Refused (nothing has changed yet).

    Outside production: the user types the database name back, or passes --yes.
    On a protected environment: --yes and --allow-production are both required.
    """
    if _allowed_without_asking(settings, action, database, yes, allow_production):
        return
    if ask is None:
        raise Refused(f"{action} of {database!r} needs confirmation: run it in a terminal or pass --yes")
    _name_typed_back(ask, f"⚠️  {action} deletes all data in {database!r} on {settings.address}.", database)


def confirm_deploy(settings: Settings, yes: bool = False, ask: Ask | None = None) -> None:
    """A deploy to a protected environment needs --yes or the database name typed back."""
    if not settings.is_protected or yes:
        return
    if ask is None:
        raise Refused(f"a deploy to {settings.environment} needs confirmation: run it in a terminal or pass --yes")
    _name_typed_back(ask, f"⚠️  Deploy to {settings.environment} {settings.describe()}.", settings.database)


def confirm_protected(
    settings: Settings, action: str, yes: bool = False, allow_production: bool = False, ask: Ask | None = None
) -> None:
    """On a protected environment: the database name typed back at a terminal, or --yes with
    --allow-production; elsewhere nothing is asked."""
    if not settings.is_protected or (yes and allow_production):
        return
    if ask is None or yes:
        raise Refused(
            f"{action} of {settings.database!r} on the protected {settings.environment} environment needs "
            "confirmation: run it in a terminal, or pass --yes --allow-production"
        )
    _name_typed_back(ask, f"⚠️  {action} on {settings.environment} {settings.describe()}.", settings.database)


def confirm_settle(settings: Settings, yes: bool = False, ask: Ask | None = None) -> None:
    """Settling drops what would let a person undo a deploy by hand: asked first, or --yes."""
    if yes:
        return
    if ask is None:
        raise Refused("settle needs confirmation: run it in a terminal or pass --yes")
    answer = ask(f"⚠️  Drop the holding tables of finished deploys of {settings.describe()}? Type yes to go on: ")
    if answer.strip().lower() != "yes":
        raise Refused("not confirmed: nothing changed")


def confirm_adopt(
    settings: Settings,
    revision: str,
    was: str,
    yes: bool = False,
    allow_production: bool = False,
    ask: Ask | None = None,
) -> None:
    """Adopting changes no table but decides what every later upgrade runs: asked as drop and reset are."""
    if _allowed_without_asking(settings, "adopt", settings.database, yes, allow_production):
        return
    if ask is None:
        raise Refused(f"adopt of {settings.database!r} needs confirmation: run it in a terminal or pass --yes")
    _name_typed_back(
        ask,
        f"⚠️  Record {revision} as the revision of {settings.database!r} on {settings.address} "
        f"(alembic_version: {was})?",
        settings.database,
    )
