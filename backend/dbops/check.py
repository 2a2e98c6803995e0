"""Health check of the configured database (`invoke db.check`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import Settings
from . import migrate
from .connection import connect, require_configured, server_info
from .errors import DbOpsError, UnknownDatabase


@dataclass(frozen=True)
class CheckItem:
    name: str
    ok: bool
    detail: str
    warning: bool = False  # ok but worth a look


@dataclass
class CheckReport:
    items: list[CheckItem] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(item.ok for item in self.items)

    def add(self, name: str, ok: bool, detail: str, warning: bool = False) -> None:
        self.items.append(CheckItem(name, ok, detail, warning))


def run_check(settings: Settings) -> CheckReport:
    """Connection, server, database, revisions. Raises DbOpsError when nothing can be checked."""
    require_configured(settings)
    report = CheckReport()
    with connect(settings, database=None) as connection:
        info = server_info(connection)
    report.add("connection", True, f"{settings.describe()} (from {settings.source})")
    report.add("server", True, f"{info} ({info.full_version})")

    script = migrate.script_directory(settings)
    heads = script.get_heads()
    if len(heads) == 1:
        report.add("heads", True, f"one head: {heads[0]}")
    elif not heads:
        report.add("heads", False, "no revisions in the code")
    else:
        report.add("heads", False, f"several heads ({', '.join(sorted(heads))}): run `invoke db.merge`")

    try:
        current = migrate.current(settings)
    except UnknownDatabase as exc:
        report.add("database", False, str(exc))
        return report
    report.add("database", True, f"{settings.database} exists")

    try:
        steps = migrate.pending(script, current, "heads" if len(heads) > 1 else "head") if heads else []
    except DbOpsError as exc:
        report.add("revision", False, str(exc))
        return report
    report.pending = [f"{step.revision} {(step.doc or '').strip()}" for step in steps]
    shown = ", ".join(current) or "base"
    if steps:
        report.add("revision", True, f"at {shown}, {len(steps)} pending: run `invoke db.upgrade`", warning=True)
        return report
    report.add("revision", True, f"at head ({shown})")
    differences = migrate.autogenerate_diff(settings)
    if differences:
        report.add(
            "models",
            True,
            f"{len(differences)} difference(s) between backend/database.py and the schema: "
            "generate a revision with `invoke db.revision -m MESSAGE`",
            warning=True,
        )
    else:
        report.add("models", True, "the schema matches backend/database.py")
    return report
