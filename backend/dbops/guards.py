"""Confirmation guard for destructive operations (drop, reset, restore, ...)."""

from __future__ import annotations

from collections.abc import Callable

from ..config import Settings
from .errors import Refused

Ask = Callable[[str], str]


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
    answer = ask(f"⚠️  {action} deletes all data in {database!r} on {settings.address}. Type the database name to go on: ")
    if answer.strip() != database:
        raise Refused("the name typed did not match: nothing changed")


def confirm_deploy(settings: Settings, yes: bool = False, ask: Ask | None = None) -> None:
    """A deploy to a protected environment needs --yes or the database name typed back."""
    if not settings.is_protected or yes:
        return
    if ask is None:
        raise Refused(f"a deploy to {settings.environment} needs confirmation: run it in a terminal or pass --yes")
    answer = ask(f"⚠️  Deploy to {settings.environment} {settings.describe()}. Type the database name to go on: ")
    if answer.strip() != settings.database:
        raise Refused("the name typed did not match: nothing changed")


def confirm_protected(settings: Settings, action: str, yes: bool = False, allow_production: bool = False,
                      ask: Ask | None = None) -> None:
    """On a protected environment: the database name typed back at a terminal, or --yes with
    --allow-production; elsewhere nothing is asked."""
    if not settings.is_protected or (yes and allow_production):
        return
    if ask is None or yes:
        raise Refused(f"{action} of {settings.database!r} on the protected {settings.environment} environment needs "
                      "confirmation: run it in a terminal, or pass --yes --allow-production")
    answer = ask(f"⚠️  {action} on {settings.environment} {settings.describe()}. Type the database name to go on: ")
    if answer.strip() != settings.database:
        raise Refused("the name typed did not match: nothing changed")


def confirm_settle(settings: Settings, yes: bool = False, ask: Ask | None = None) -> None:
    """Settling drops what would let a person undo a deploy by hand: asked first, or --yes."""
    if yes:
        return
    if ask is None:
        raise Refused("settle needs confirmation: run it in a terminal or pass --yes")
    answer = ask(f"⚠️  Drop the holding tables of finished deploys of {settings.describe()}? Type yes to go on: ")
    if answer.strip().lower() != "yes":
        raise Refused("not confirmed: nothing changed")


def confirm_adopt(settings: Settings, revision: str, was: str, yes: bool = False, allow_production: bool = False,
                  ask: Ask | None = None) -> None:
    """Adopting changes no table but decides what every later upgrade runs: asked as drop and reset are."""
    if _allowed_without_asking(settings, "adopt", settings.database, yes, allow_production):
        return
    if ask is None:
        raise Refused(f"adopt of {settings.database!r} needs confirmation: run it in a terminal or pass --yes")
    answer = ask(f"⚠️  Record {revision} as the revision of {settings.database!r} on {settings.address} "
                 f"(alembic_version: {was})? Type the database name to go on: ")
    if answer.strip() != settings.database:
        raise Refused("the name typed did not match: nothing changed")
