"""Health check and deploy preflight of the configured database (`invoke db.check`)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Settings
from . import alembic_setup, authoring, ddl_guard, journal, revision_graph
from .adopt import adoption_hint
from .backup import data_and_index_bytes
from .connection import connect, require_configured, server_info
from .deploy_history import RESTORE_TARGET, ROLLING_BACK, RUNNING, load_records
from .errors import AccessDenied, DbOpsError, SchemaChanged, UnknownDatabase
from .guards import read_only_flags, read_only_message
from .lint import lint
from .lock import describe_holder, lock_name
from .privileges import DATABASE_PRIVILEGES, SCHEMA_PRIVILEGES, grant_target, read_account
from .scratch import PURPOSES, generated_name, unusable
from .tool_tables import ignored_tables
from .undo import holding, log
from .undo.session import Session

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

# A zstd dump of InnoDB data is well under half its on-disk size; keep a margin.
BACKUP_SIZE_RATIO = 0.5


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

    @property
    def failures(self) -> list[CheckItem]:
        return [item for item in self.items if not item.ok]

    def add(self, name: str, ok: bool, detail: str, warning: bool = False) -> None:
        self.items.append(CheckItem(name, ok, detail, warning))

    def passed_lines(self) -> list[str]:
        """The passed checks (⚠️ when worth a look), then the pending revisions."""
        passed = [f"{'⚠️ ' if item.warning else '✅'} {item.name}: {item.detail}" for item in self.items if item.ok]
        return passed + [f"     pending: {line}" for line in self.pending]

    def failure_text(self) -> str:
        """One ❌ line per failed check."""
        return "\n".join(f"❌ {item.name}: {item.detail}" for item in self.failures)


def database_size(connection: Connection) -> int:
    return sum(data_and_index_bytes(Session.of(connection)))


def free_bytes(folder: Path) -> int:
    """Free space where folder is (or would be created)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return shutil.disk_usage(existing).free


def _megabytes(size: float) -> str:
    return f"{size / 1e6:,.0f} MB"


def run_check(settings: Settings, own_deploy: str | None = None, rehearse: bool = True) -> CheckReport:
    """The preflight: connection, server, read_only, privileges, scratch databases, heads, revision,
    journal, unfinished rollbacks and restores, holding tables, disk, models, and the rehearsal of
    the pending revisions.

    own_deploy: the deploy running this check, which holds the migration lock.
    rehearse: run the pending revisions on an empty copy of the schema (the deploy's preflight
    does that itself, to its own target).
    Raises DbOpsError when nothing can be checked (no configuration, no server).
    """
    from sqlalchemy.exc import DBAPIError

    require_configured(settings)
    report = CheckReport()
    with connect(settings, database=None) as connection:
        info = server_info(connection)
        read_only = read_only_flags(connection)
        try:
            account = check_account(connection, settings)
        except DBAPIError:
            account = None
    report.add("connection", True, f"{settings.describe()} (from {settings.source})")
    report.add("server", True, f"{info} ({info.full_version})")
    if read_only:
        report.add("read_only", False, read_only_message(settings, read_only))
    else:
        report.add("read_only", True, "the server accepts writes")
    _check_privileges(report, settings, account)

    script = alembic_setup.script_directory(settings)
    heads = script.get_heads()
    if len(heads) == 1:
        report.add("heads", True, f"one head: {heads[0]}")
    elif not heads:
        report.add("heads", False, "no revisions in the code")
    else:
        report.add("heads", False, f"several heads ({', '.join(sorted(heads))}): run `invoke db.merge`")

    try:
        with connect(settings) as connection:
            current = alembic_setup.current_heads(connection)
            left = journal.unfinished(connection)
            recorded = journal.applied_checksums(connection)
            size = database_size(connection)
            to_adopt = None if left else adoption_hint(connection, script, current, ignored_tables(settings))
    except (UnknownDatabase, AccessDenied) as exc:
        report.add("database", False, str(exc))
        return report
    report.add("database", True, f"{settings.database} exists, {_megabytes(size)} of data and indexes")

    if left:
        report.add(
            "journal",
            False,
            f"half-applied revision: {left[-1].describe()}; settle it with `invoke db.recover --undo` (or `--finish`)",
        )
    else:
        report.add("journal", True, "no half-applied revision")
    interrupted = _check_unfinished(report, settings, own_deploy)
    _check_checksums(report, script, current, recorded)

    needed, free = int(size * BACKUP_SIZE_RATIO), free_bytes(settings.backup_dir)
    report.add(
        "disk",
        free > needed,
        f"{_megabytes(free)} free in {settings.backup_dir}, a backup needs about {_megabytes(needed)}",
    )

    if interrupted:
        # Its tables are halfway, some maybe still being renamed by a statement the killed run left
        # on the server: comparing them with the revisions and models would tell nothing (or fail).
        return report
    if to_adopt:
        report.add("revision", False, to_adopt)
        return report
    try:
        steps = revision_graph.pending(script, current, "heads" if len(heads) > 1 else "head") if heads else []
    except DbOpsError as exc:
        report.add("revision", False, str(exc))
        return report
    report.pending = [f"{step.revision} {(step.doc or '').strip()}" for step in steps]
    shown = ", ".join(current) or "base"
    if steps:
        report.add("revision", True, f"at {shown}, {len(steps)} pending: run `invoke db.upgrade`", warning=True)
        if len(heads) == 1:  # several heads are reported above already
            _check_lint(report, settings, [step.revision for step in steps])
            if rehearse and all(item.ok for item in report.items if item.name == "scratch"):
                _check_rehearsal(report, settings)
        return report
    report.add("revision", True, f"at head ({shown})")
    try:
        differences = authoring.autogenerate_diff(settings)
    except SchemaChanged as exc:
        report.add("models", False, str(exc))
        return report
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


@dataclass
class AccountCheck:
    """What db.check says about the account: problems with the managed database and with scratch databases."""

    database: list[str] = field(default_factory=list)
    scratch: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)


def check_account(connection: Connection, settings: Settings) -> AccountCheck:
    """Compare the session's privileges with what upgrade, backup, restore and the scratch databases need."""
    account = read_account(connection)
    result = AccountCheck(roles=account.roles)
    user = settings.user
    missing = account.lacks(settings.database, DATABASE_PRIVILEGES)
    if missing:
        result.database.append(f"{user} lacks {', '.join(missing)} on {settings.database}")
    if account.lacks_super_for_triggers():
        result.database.append(
            f"binary logging is on: {user} needs SUPER to create the triggers a deploy and a "
            "restore use, or set log_bin_trust_function_creators=ON"
        )
    if settings.scratch_database:
        reason = unusable(connection, settings)
        if reason:
            result.scratch.append(reason)
        else:
            missing = account.lacks(settings.scratch_database, SCHEMA_PRIVILEGES)
            if missing:
                result.scratch.append(
                    f"{user} lacks {', '.join(missing)} on SCRATCH_DATABASE {settings.scratch_database}"
                )
        return result
    for purpose in PURPOSES:
        missing = account.lacks(generated_name(settings, purpose, "0" * 8), SCHEMA_PRIVILEGES)
        if missing:
            result.scratch.append(
                f"{user} may not create scratch databases (it lacks {', '.join(missing)} on "
                f"{generated_name(settings, purpose, '…')}): grant {', '.join(SCHEMA_PRIVILEGES)} ON "
                f"{grant_target(settings.database[:40] + '_')}, or set SCRATCH_DATABASE to a database it may empty"
            )
            break
    return result


def _check_privileges(report: CheckReport, settings: Settings, account: AccountCheck | None) -> None:
    if account is None:
        report.add("privileges", True, "could not read the grants of the current user", warning=True)
        return
    through = f" (through role {', '.join(account.roles)})" if account.roles else ""
    if account.database:
        report.add("privileges", False, "; ".join(account.database) + through)
    else:
        report.add("privileges", True, "all that upgrade, backup and restore need" + through)
    if account.scratch:
        report.add("scratch", False, "; ".join(account.scratch))
    elif settings.scratch_database:
        report.add("scratch", True, f"throwaway schemas are built in SCRATCH_DATABASE {settings.scratch_database}")
    else:
        report.add("scratch", True, f"throwaway schemas are built in databases it creates ({settings.database[:40]}_…)")


def _check_unfinished(report: CheckReport, settings: Settings, own_deploy: str | None) -> bool:
    """Rollbacks and restores a killed run left halfway fail; an interrupted deploy is named;
    what finished deploys keep aside is listed with its size. True when a rollback or restore is halfway."""
    from sqlalchemy import text

    with connect(settings) as connection:
        name = lock_name(settings.database)
        if own_deploy is None and connection.execute(text("SELECT IS_USED_LOCK(:n)"), {"n": name}).scalar():
            report.add("deploys", True, f"running now: {describe_holder(connection, name)}", warning=True)
            return False
        records = [record for record in load_records(connection, (RUNNING, ROLLING_BACK)) if record.id != own_deploy]
        session = Session.of(connection)
        unsettled = {entry.deploy_id for entry in log.entries(session) if entry.status != log.SETTLED}
        holds = holding.holding_tables(session)
    for record in records:
        when = f"started {record.started_at} UTC by {record.os_user}@{record.host}"
        if record.target == RESTORE_TARGET:
            report.add(
                "restore",
                False,
                f"restore of {record.backup_file} {when} was interrupted: finish it with "
                "`invoke db.recover`, or put the replaced tables back with `invoke db.recover --undo`",
            )
        elif record.status == ROLLING_BACK:
            report.add(
                "rollback",
                False,
                f"rollback of deploy {record.id[:8]} ({when}) was interrupted: finish it with `invoke db.recover`",
            )
        elif record.id in unsettled:
            report.add(
                "deploys",
                True,
                f"deploy {record.id[:8]} ({when}) was interrupted after it changed the "
                "database: `invoke db.recover --undo` puts it back as it was before",
                warning=True,
            )
    if holds:
        size = sum(size for _, size in holds)
        report.add(
            "holding",
            True,
            f"{len(holds)} holding table(s), {_megabytes(size)}, keep what "
            f"{len(unsettled) or 'earlier'} deploy(s) replaced: dropped by `invoke db.settle` or "
            f"{settings.hold_retention_hours} h after the deploy",
            warning=True,
        )
    return any(record.target == RESTORE_TARGET or record.status == ROLLING_BACK for record in records)


def _check_checksums(report: CheckReport, script, current: tuple[str, ...], recorded: dict[str, str]) -> None:
    """An applied revision whose file changed since it ran means code and database disagree."""
    try:
        applied = revision_graph.applied_revisions(script, current) if current else set()
    except DbOpsError:
        return  # an unknown current revision is reported by the revision check
    edited = []
    for revision, checksum in recorded.items():
        if revision not in applied:
            continue
        path = Path(script.get_revision(revision).path)
        if journal.file_checksum(path) != checksum:
            edited.append(path.name)
    if edited:
        report.add("checksums", False, f"applied revision file(s) edited since they ran: {', '.join(edited)}")
    elif recorded:
        report.add("checksums", True, "applied revision files unchanged since they ran")


def _check_rehearsal(report: CheckReport, settings: Settings) -> None:
    """The pending revisions run on an empty copy of the schema, and leave what the models describe."""
    try:
        statements = ddl_guard.check(settings)
    except DbOpsError as exc:  # a failing statement, a schema verify would refuse, a big table copy
        report.add("rehearsal", False, str(exc))
        return
    report.add(
        "rehearsal",
        True,
        f"the pending revisions run on an empty copy of the schema "
        f"({len(statements)} table change(s) probed) and leave what the models describe",
    )


def _check_lint(report: CheckReport, settings: Settings, revisions: list[str]) -> None:
    """The pending revisions pass the linter (errors fail the check, warnings are shown)."""
    linted = lint(settings, revisions=revisions)
    if linted.errors:
        first = linted.errors[0]
        report.add(
            "lint",
            False,
            f"{len(linted.errors)} error(s) in pending revisions, first: {first.rule} in "
            f"{first.revision} {first.file}:{first.line}: see `invoke db.lint`",
        )
    else:
        report.add(
            "lint", True, f"pending revisions pass, {len(linted.warnings)} warning(s)", warning=bool(linted.warnings)
        )
