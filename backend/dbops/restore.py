"""`invoke db.restore`: a person's disaster recovery, journaled, keeping what it replaces.

The replaced tables are renamed aside into holding tables (one atomic RENAME, nothing
copied) and stay until `invoke db.settle`; their views are kept as definitions. The restore
is recorded in alembic_deploys with the undo log of what it set aside, so that a restore
killed halfway is found by `db.check` and finished by `db.recover` (the dump loaded again)
or undone by `db.recover --undo` (the replaced tables put back).
"""

from __future__ import annotations

import getpass
import socket
import time
import uuid
from collections.abc import Callable, Container
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import pymysql

from ..config import Settings
from . import admin, alembic_setup
from .backup_files import COMPRESSIONS, Manifest, decompress_command
from .backup_verify import verify_backup
from .clients import find_client
from .connection import connect, require_configured, server_info
from .deploy_history import (
    RESTORE_TARGET,
    ROLLBACK_INCOMPLETE,
    ROLLED_BACK,
    ROLLING_BACK,
    RUNNING,
    SUCCEEDED,
    DeployRecord,
    load_records,
    record_start,
    record_update,
)
from .errors import BackupError, Refused
from .identifiers import SYSTEM_SCHEMAS, validate_identifier
from .lock import HeldLock, migration_lock
from .parallel_load import Loaded, load_parallel
from .schema import row_counts
from .tool_tables import HOLD_PREFIX, TOOL_TABLES
from .undo import holding, log, revert
from .undo.session import Session, q
from .undo.tabledef import object_definition, show_create

Say = Callable[[str], None]

# How long db.recover waits for a stopped leftover statement of a killed restore to end.
LEFTOVER_WAIT_SECONDS = 10
LOAD_CLIENTS = {"mariadb": ("mariadb", "mysql"), "mysql": ("mysql", "mariadb")}
# Data sessions of a restore. Measured on 2 cores (1M messages): see docs and the report of #14.
LOAD_SESSIONS = 3
Progress = Callable[[int, int], None]  # (dump bytes loaded, the dump's size)


@dataclass(frozen=True)
class RestoreResult:
    database: str
    manifest: Manifest
    tables: dict[str, int]
    duration_seconds: float
    counts_differing: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # holding tables with the replaced tables

    def lines(self) -> list[str]:
        """What was restored, where the replaced tables are kept, and the row counts that differ."""
        lines = [
            f"✅ restored {self.database}: {len(self.tables)} table(s), {sum(self.tables.values())} rows, "
            f"at {self.manifest.revision}, {self.duration_seconds:.1f} s"
        ]
        if self.kept:
            lines.append(
                f"   the replaced tables are kept as {', '.join(self.kept[:3])}{' ...' if len(self.kept) > 3 else ''}"
                " until `invoke db.settle`"
            )
        if self.counts_differing:
            lines.append(
                f"⚠️  row counts differ from the manifest's (counted as the dump began): "
                f"{'; '.join(self.counts_differing[:5])}"
            )
        return lines


def _application_objects(session: Session) -> tuple[list[str], list[str]]:
    """(base tables, views) of the database, the tool's own tables left out."""
    rows = session.rows(
        "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
        "ORDER BY TABLE_NAME"
    )
    tables = [name for name, kind in rows if kind == "BASE TABLE" and name not in TOOL_TABLES]
    views = [name for name, kind in rows if kind == "VIEW"]
    return tables, views


def _tool_session(connection) -> Session:
    session = Session.autocommitting(connection)
    session.run("SET SESSION foreign_key_checks = 0")
    return session


def restore(
    settings: Settings,
    path: str | Path,
    into: str | None = None,
    replace: bool = False,
    confirm: Callable[[Manifest], None] | None = None,
    progress: Progress | None = None,
) -> RestoreResult:
    """Verify a backup, then replace the target's tables with it, keeping the replaced ones aside.

    The target is into, or the configured database (which must be the backup's). Into an
    existing database that holds tables only with replace. confirm, when given, is called
    after verification and before anything changes; it may raise. progress, when given, is
    called about twice a second with (dump bytes loaded, the dump's size).
    """
    require_configured(settings)
    path = Path(path).absolute()
    if not path.is_file():
        raise BackupError(f"backup file {path} does not exist: see `invoke db.backups`")
    target = validate_identifier(into or settings.database)
    if target.lower() in SYSTEM_SCHEMAS:
        raise Refused(f"{target!r} is a system schema of the server: restore into another database")
    manifest = verify_backup(path, None if into else settings.database)
    target_settings = settings.with_database(target)
    if into and not replace and admin.database_exists(target_settings):
        with connect(target_settings) as connection:
            tables, views = _application_objects(Session.of(connection))
        if tables or views:
            raise Refused(
                f"database {target!r} exists and holds {len(tables)} table(s): pass --replace to "
                "replace them (they are kept aside until `invoke db.settle`)"
            )
    if confirm is not None:
        confirm(manifest)
    clock = time.monotonic()
    admin.create_database(target_settings)
    with migration_lock(target_settings, f"restore {path.name}") as lock:
        unfinished = load_records(lock.connection, (RUNNING, ROLLING_BACK))
        if any(record.status == ROLLING_BACK or record.target == RESTORE_TARGET for record in unfinished):
            raise Refused(f"{target} has an unfinished rollback or restore: finish it with `invoke db.recover` first")
        record = DeployRecord(
            id=str(uuid.uuid4()),
            database=target,
            environment=settings.environment,
            target=RESTORE_TARGET,
            os_user=getpass.getuser(),
            host=socket.gethostname(),
            started_at="",
            backup_file=str(path),
            from_revision=list(alembic_setup.current(target_settings)),
        )
        record_start(lock.connection, record)
        kept = _set_aside(target_settings, lock, record.id)
        counts, differing = _reload(target_settings, lock, record, path, manifest, progress)
    return RestoreResult(target, manifest, counts, round(time.monotonic() - clock, 3), differing, kept)


def _set_aside(settings: Settings, lock: HeldLock, restore_id: str) -> list[str]:
    """Rename every table of the database aside (views kept as definitions); return the holding names."""
    control = Session.of(lock.connection)
    log.ensure_table(control)
    with connect(settings, guard_ddl=True) as connection:
        session = _tool_session(connection)
        tables, views = _application_objects(session)
        for view in views:
            log.add(
                control,
                restore_id,
                None,
                log.OBJECT,
                detail={"type": "VIEW", "name": view, "before": object_definition(session, "VIEW", view)},
            )
        held = []
        for table in tables:
            entry = log.add(
                control,
                restore_id,
                None,
                log.REPLACED_TABLE,
                table,
                detail={"before": show_create(session, table), "triggers": holding.table_triggers(session, table)},
            )
            entry.hold = holding.hold_name(restore_id, entry.id, table)
            log.save(control, entry)
            held.append(entry.hold)
        _complete_set_aside(session, control, restore_id)
    return held


def _complete_set_aside(session: Session, control: Session, restore_id: str) -> None:
    """Do what the restore's prepared entries say (again, after a kill: each step checks first)."""
    pending = log.entries(control, restore_id, (log.PREPARED,))
    replaced: dict[int, tuple[str, str]] = {}  # entry id: (table, holding table)
    for entry in pending:
        if entry.kind == log.OBJECT:
            session.run(f"DROP VIEW IF EXISTS {q(entry.detail['name'])}")
        elif entry.kind == log.REPLACED_TABLE:
            table = entry.table_name()
            if entry.hold is None:
                # Killed between writing the entry and its holding name: the table was not moved yet.
                entry.hold = holding.hold_name(restore_id, entry.id, table)
                log.save(control, entry)
            replaced[entry.id] = (table, entry.hold)
    moving = [
        (table, hold)
        for table, hold in replaced.values()
        if holding.table_exists(session, table) and not holding.table_exists(session, hold)
    ]
    if moving:
        session.run("RENAME TABLE " + ", ".join(f"{q(table)} TO {q(hold)}" for table, hold in moving))
    for entry in pending:
        if entry.id in replaced:
            holding.free_names(session, replaced[entry.id][1], entry.detail["before"], entry.detail["triggers"])
        log.save(control, entry, log.DONE)


def _drop_loaded(session: Session, keep: Container[str] = frozenset()) -> None:
    """What a load left: every table and view that is neither the tool's nor held (nor in keep)."""
    tables, views = _application_objects(session)
    for view in views:
        if view not in keep:
            session.run(f"DROP VIEW IF EXISTS {q(view)}")
    for table in tables:
        if table not in keep:
            session.run(f"DROP TABLE IF EXISTS {q(table)}")


def _reload(
    settings: Settings,
    lock: HeldLock,
    record: DeployRecord,
    path: Path,
    manifest: Manifest,
    progress: Progress | None = None,
) -> tuple[dict, list[str]]:
    with connect(settings, guard_ddl=True) as connection:
        _drop_loaded(_tool_session(connection))
    load_dump(settings, path, manifest.compression, progress, manifest.uncompressed_bytes)
    with connect(settings) as connection:
        counts = row_counts(Session.of(connection), set(manifest.tables))
    differing = [
        f"{name} has {count}, the manifest {manifest.tables[name]}"
        for name, count in counts.items()
        if manifest.tables.get(name) is not None and count != manifest.tables[name]
    ]
    record.status, record.to_revision = SUCCEEDED, list(alembic_setup.current(settings))
    record.message = f"restored {path.name}; replaced tables kept until `invoke db.settle`"
    record_update(lock.connection, record, final=True)
    return counts, differing


def _stop_leftover_renames(control: Session, restore_id: str) -> None:
    """Stop the killed run's RENAME the server may still have queued: a statement outlives its client
    until the server next checks (once a second while it waits for a table). Left to run, it would
    move the tables while they are being put right. A user may always stop its own statements."""
    marker = control.literal(f"{HOLD_PREFIX}{restore_id[:8]}_")
    leftovers = (
        "SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() "
        f"AND INFO LIKE 'RENAME TABLE%' AND INSTR(INFO, {marker}) > 0"
    )
    deadline = time.monotonic() + LEFTOVER_WAIT_SECONDS
    while found := [row[0] for row in control.rows(leftovers)]:
        for thread in found:
            with suppress(pymysql.err.MySQLError):  # it ended meanwhile
                control.run(f"KILL QUERY {int(thread)}")
        if time.monotonic() > deadline:
            raise BackupError(f"a RENAME of the interrupted restore still runs (thread {found[0]}): try again")
        time.sleep(0.1)


def resume(settings: Settings, lock: HeldLock, record: DeployRecord, *, undo: bool, say: Say) -> str:
    """Finish a restore a killed run left halfway (load the dump again), or undo it (the replaced tables back)."""
    control = Session.of(lock.connection)
    _stop_leftover_renames(control, record.id)
    if not undo:
        if record.backup_file is None:  # restore() writes it when it starts
            raise BackupError(f"cannot finish the restore {record.id}: its record names no dump file")
        path = Path(record.backup_file)
        try:
            manifest = verify_backup(path)
        except BackupError as exc:
            raise BackupError(
                f"cannot finish the restore: {exc}; `invoke db.recover --undo` puts the replaced tables back instead"
            ) from None
        with connect(settings, guard_ddl=True) as connection:
            _complete_set_aside(_tool_session(connection), control, record.id)
        _reload(settings, lock, record, path, manifest)
        return f"restore of {path.name} finished: the dump is loaded again"
    with connect(settings, guard_ddl=True) as connection:
        session = _tool_session(connection)
        # Tables and views the kill left in place before they were set aside are the originals.
        originals = {
            entry.table_name() if entry.kind == log.REPLACED_TABLE else entry.detail["name"]
            for entry in log.entries(control, record.id, (log.PREPARED,))
            if entry.kind == log.OBJECT or entry.hold is None or not holding.table_exists(session, entry.hold)
        }
        _drop_loaded(session, keep=originals)
        outcome = revert.revert(control, session, record.id, say)
    record.status = ROLLED_BACK if outcome.complete else ROLLBACK_INCOMPLETE
    record.to_revision = list(alembic_setup.current(settings))
    record.message = (
        "restore undone: the replaced tables are back"
        if outcome.complete
        else f"restore undone in part; not as before: {'; '.join(outcome.remaining)}"
    )
    record_update(lock.connection, record, final=True)
    return record.message


def load_dump(
    settings: Settings, path: Path, compression_name: str, progress: Progress | None = None, total: int = 0
) -> Loaded:
    """Feed the dump from the decompressor to the command-line client: its rows through
    LOAD_SESSIONS sessions at once (parallel_load.py), the rest in order through one."""
    with connect(settings) as connection:
        flavour = server_info(connection).flavour
    program = find_client(LOAD_CLIENTS[flavour], "mysql client")
    decompress = decompress_command(COMPRESSIONS[compression_name], path)
    return load_parallel(settings, program, decompress, LOAD_SESSIONS, progress, total)
