"""Invoke tasks: `invoke --list` shows them, `invoke --help db.upgrade` explains one.

Thin layer: parse options, call backend.dbops, print short lines with a status mark,
and turn errors into one line starting with ❌ and a non-zero exit code.
Heavy libraries (SQLAlchemy, Alembic) are imported inside task bodies so that
`invoke --list` stays fast.
"""

from __future__ import annotations

import functools
import logging
import sys

from invoke import Collection, Exit, task

from backend.config import ConfigError, Settings, debug_requested, load_settings
from backend.dbops.errors import DbOpsError


def _debugging() -> bool:
    # `invoke --debug` turns on DEBUG logging at the root; DB_DEBUG=1 asks too.
    return debug_requested() or logging.getLogger().isEnabledFor(logging.DEBUG)


def cli_errors(body):
    """Show DbOpsError/ConfigError (and anything unexpected) as one ❌ line, exit 1."""

    @functools.wraps(body)
    def wrapper(c, *args, **kwargs):
        try:
            return body(c, *args, **kwargs)
        except Exit:
            raise
        except (DbOpsError, ConfigError) as exc:
            if _debugging():
                raise
            raise Exit(f"❌ {exc}", code=1) from None
        except KeyboardInterrupt:
            raise Exit("❌ interrupted", code=130) from None
        except Exception as exc:
            if _debugging():
                raise
            first = " ".join(str(exc).split())[:300]
            raise Exit(
                f"❌ unexpected {type(exc).__name__}: {first} (DB_DEBUG=1 shows the traceback)", code=1
            ) from None

    return wrapper


def _settings() -> Settings:
    return load_settings()


class _WaitingLines(logging.Handler):
    """What the library says while it waits (for a metadata lock...), as ⏳ lines on stdout."""

    def emit(self, record: logging.LogRecord) -> None:
        _say(f"  ⏳ {record.getMessage()}")


_waiting = logging.getLogger("backend.dbops")
_waiting.addHandler(_WaitingLines(logging.WARNING))
_waiting.propagate = False


def _ask():
    """A prompt when a person is at the terminal, else None (guards then refuse)."""
    return input if sys.stdin.isatty() else None


def _say(line: str) -> None:
    print(line, flush=True)


def _show_report(report) -> None:
    """Passed checks on stdout; failed ones as ❌ lines with exit code 1."""
    for item in report.items:
        if item.ok:
            _say(f"{'⚠️ ' if item.warning else '✅'} {item.name}: {item.detail}")
    for line in report.pending:
        _say(f"     pending: {line}")
    if not report.ok:
        raise Exit("\n".join(f"❌ {item.name}: {item.detail}" for item in report.failures), code=1)


def _describe_step(step, direction: str) -> None:
    _say(f"  {'→' if direction == 'upgrade' else '←'} {step.revision}  {(step.doc or '').strip()}")


def _upgrade(settings: Settings, target: str) -> None:
    from backend.dbops import migrate

    applied = migrate.upgrade(settings, target, on_step=_describe_step)
    now = ", ".join(migrate.current(settings)) or "base"
    if applied:
        _say(f"✅ applied {len(applied)} revision(s); {settings.database} is at {now}")
    else:
        _say(f"✅ nothing to apply; {settings.database} is at {now}")


# ---------------------------------------------------------------- db


@task
@cli_errors
def init(c):
    """Create the database if missing, then upgrade it to head."""
    from backend.dbops import admin

    settings = _settings()
    if admin.create_database(settings):
        _say(f"✅ created database {settings.database} (utf8mb4)")
    else:
        _say(f"✅ database {settings.database} exists")
    _upgrade(settings, "head")


@task
@cli_errors
def check(c):
    """Check connection, server, heads and revision; exit 1 when something is wrong."""
    from backend.dbops.check import run_check

    report = run_check(_settings())
    _show_report(report)


@task
@cli_errors
def current(c):
    """Show the revision the database is at."""
    from backend.dbops import migrate

    settings = _settings()
    revisions = migrate.current(settings)
    if not revisions:
        _say(f"{settings.database}: base (no revision applied)")
        return
    by_id = {info.revision: info for info in migrate.history(settings, revisions)}
    for revision in revisions:
        info = by_id.get(revision)
        head = " (head)" if info and info.is_head else ""
        _say(f"{settings.database}: {revision}{head}  {info.message if info else ''}")


@task(help={"offline": "List revisions from the code only, without asking the database what is applied."})
@cli_errors
def history(c, offline=False):
    """List revisions, newest first, marking applied and pending ones."""
    from backend.dbops import migrate

    settings = _settings()
    revisions = () if offline else migrate.current(settings)
    for info in migrate.history(settings, revisions):
        mark = "  " if offline else "✅" if info.is_applied else "⏳"
        tags = [
            tag for tag, on in (("head", info.is_head), ("current", info.is_current), ("merge", info.is_merge)) if on
        ]
        parents = ", ".join(info.down_revisions) or "base"
        suffix = f" ({', '.join(tags)})" if tags else ""
        _say(f"{mark} {parents} -> {info.revision}{suffix}  {info.message}")


@task
@cli_errors
def heads(c):
    """Show the head revisions of the code (more than one needs `db.merge`)."""
    from backend.dbops import migrate

    found = migrate.heads(_settings())
    for revision in found:
        _say(revision)
    if len(found) > 1:
        raise Exit(f"⚠️  {len(found)} heads: join them with `invoke db.merge`", code=1)


@task(help={"revision": "Target revision (default: head)."})
@cli_errors
def upgrade(c, revision="head"):
    """Apply pending revisions up to --revision, one at a time."""
    _upgrade(_settings(), revision)


PROTECTED_HELP = {
    "yes": "Do not ask (on a protected environment it also needs --allow-production).",
    "allow_production": "Allow it on a protected (production) environment without a terminal; needs --yes.",
}


@task(help={"revision": "Target revision: an id, -N steps, or base (default: -1, one step).", **PROTECTED_HELP})
@cli_errors
def downgrade(c, revision="-1", yes=False, allow_production=False):
    """Revert revisions down to --revision (default: one step).

    On a protected environment it asks first and runs as a deploy does: lock, preflight, backup,
    the steps, verify, a record in db.deploys, and a rollback when a step fails.
    """
    from backend.dbops import deploy as pipeline
    from backend.dbops import migrate
    from backend.dbops.guards import confirm_protected

    settings = _settings()
    if settings.is_protected:
        confirm_protected(settings, f"downgrade to {revision}", yes, allow_production, _ask())
        try:
            record = pipeline.deploy(settings, revision, say=_say, progress=_progress_printer(), downgrade=True)
        except pipeline.DeployFailed as failure:
            raise Exit(f"❌ downgrade {failure.record.status}: {failure}", code=1) from None
        _say(f"✅ {record.message}")
        return
    reverted = migrate.downgrade(settings, revision, on_step=_describe_step)
    now = ", ".join(migrate.current(settings)) or "base"
    _say(f"✅ reverted {len(reverted)} revision(s); {settings.database} is at {now}")


@task(
    help={
        "message": "What the revision changes (becomes part of the file name).",
        "empty": "Write an empty revision to fill by hand instead of autogenerating from the models.",
    }
)
@cli_errors
def revision(c, message="", empty=False):
    """Create a revision: autogenerated from backend/database.py, or --empty."""
    from backend.dbops import migrate

    path = migrate.revision(_settings(), message, autogenerate=not empty)
    if path is None:
        _say("✅ the models and the database agree: no revision written")
    else:
        _say(
            f"✅ wrote {path.relative_to(path.parents[2]) if len(path.parents) > 2 else path}: review it before applying"
        )


@task(help={"message": "Message of the merge revision (default: 'merge heads')."})
@cli_errors
def merge(c, message="merge heads"):
    """Join several heads into one with a merge revision."""
    from backend.dbops import migrate

    path = migrate.merge(_settings(), message)
    _say(f"✅ wrote merge revision {path.name}")


@task(
    help={
        "revision": "Revision to record as applied, without running anything (head, base or an id).",
        **PROTECTED_HELP,
    }
)
@cli_errors
def stamp(c, revision="", yes=False, allow_production=False):
    """Record a revision in alembic_version without running migrations (asks first on a protected environment)."""
    from backend.dbops import migrate
    from backend.dbops.guards import confirm_protected

    if not revision:
        raise Exit("❌ say which revision: invoke db.stamp -r REV", code=1)
    settings = _settings()
    migrate.validate_revision_argument(revision)
    confirm_protected(settings, f"stamp at {revision}", yes, allow_production, _ask())
    now = migrate.stamp(settings, revision)
    _say(f"✅ {settings.database} stamped at {', '.join(now) or 'base'}")


@task
@cli_errors
def create(c):
    """Create the configured database (utf8mb4) if it does not exist."""
    from backend.dbops import admin

    settings = _settings()
    created = admin.create_database(settings)
    _say(f"✅ created database {settings.database}" if created else f"✅ database {settings.database} exists")


DESTRUCTIVE_HELP = {
    "yes": "Do not ask to type the database name (refused on production without --allow-production).",
    "allow_production": "Also allow it on a protected (production) environment; needs --yes.",
}


@task(help=DESTRUCTIVE_HELP)
@cli_errors
def drop(c, yes=False, allow_production=False):
    """Drop the configured database and all its data (asks first)."""
    from backend.dbops import admin
    from backend.dbops.guards import confirm_destructive

    settings = _settings()
    confirm_destructive(settings, "drop", settings.database, yes, allow_production, _ask())
    dropped = admin.drop_database(settings)
    _say(f"✅ dropped database {settings.database}" if dropped else f"⚠️  database {settings.database} did not exist")


@task(help=DESTRUCTIVE_HELP)
@cli_errors
def reset(c, yes=False, allow_production=False):
    """Empty the configured database and upgrade it to head, under the migration lock (asks first)."""
    from backend.dbops import admin, migrate
    from backend.dbops.guards import confirm_destructive
    from backend.dbops.lock import migration_lock
    from backend.dbops.tool_tables import HISTORY_TABLES

    settings = _settings()
    confirm_destructive(settings, "reset", settings.database, yes, allow_production, _ask())
    admin.create_database(settings)
    with migration_lock(settings, "reset") as lock:
        # The lock, journal and deploy history tables survive: they are the record of what happened.
        dropped = admin.empty_database(settings, keep=HISTORY_TABLES)
        migrate.stamp(settings, "base", lock=lock)
        _say(f"✅ emptied database {settings.database} ({len(dropped)} tables dropped)")
        applied = migrate.upgrade(settings, "head", on_step=_describe_step, lock=lock)
    _say(f"✅ applied {len(applied)} revision(s); {settings.database} is at {', '.join(migrate.current(settings))}")


@task(help={"revision": "Revision whose schema the database should have (default: head).", **DESTRUCTIVE_HELP})
@cli_errors
def adopt(c, revision="head", yes=False, allow_production=False):
    """Adopt a database the old tool or a person made: record REV when its schema matches what REV builds (asks first).

    Example: invoke db.adopt -r e9e7d98878ca
    """
    from backend.dbops import adopt as adoption
    from backend.dbops.guards import confirm_adopt

    settings = _settings()

    def confirm(found) -> None:
        _say(
            f"✅ the {len(found.tables)} table(s) of {found.database} match revision {found.revision} "
            "(built in a scratch database)"
        )
        for note in found.notes:
            _say(f"⚠️  {note.text()}: left as it is")
        confirm_adopt(settings, found.revision, found.describe_was(), yes, allow_production, _ask())

    result = adoption.adopt(settings, revision, confirm=confirm)
    if not result.matches:
        for difference in result.differences + result.notes:
            _say(f"     {difference.text()}")
        raise Exit(
            f"❌ {result.database} differs from revision {result.revision} in {len(result.differences)} "
            "place(s): nothing recorded",
            code=1,
        )
    _say(
        f"✅ {result.database} adopted at {result.revision} (alembic_version held {result.describe_was()}); "
        "`invoke db.upgrade` applies the revisions after it"
    )


@task(
    help={
        "to": "Revision to deploy (default: head).",
        "dry_run": "Print the plan and the SQL it would run; change nothing.",
        "yes": "Do not ask for confirmation (needed for non-interactive deploys to production).",
        "report": "Also write the deploy record as JSON to this file (for CI).",
        "allow_irreversible": "Also run statements a rollback could not undo (the preflight names them; a rollback "
        "then says they were not undone).",
    }
)
@cli_errors
def deploy(c, to="head", dry_run=False, yes=False, report=None, allow_irreversible=False):
    """Deploy: lock, preflight, backup, upgrade, verify, restart; undo the deploy's changes when a step fails.

    Example: invoke db.deploy --to head --report deploy.json
    """
    from backend.dbops import deploy as pipeline
    from backend.dbops.guards import confirm_deploy

    settings = _settings()
    report_file = pipeline.report_path(report) if report and not dry_run else None
    if dry_run:
        plan = pipeline.make_plan(settings, to)
        _say(f"Plan for {settings.describe()}: {' → '.join(plan.steps)}")
        _say(f"  from {', '.join(plan.current) or 'base'} to {', '.join(plan.target) or 'base'}")
        for revision_id, message in plan.pending:
            _say(f"  → {revision_id}  {message}")
        if plan.sql:
            _say("-- SQL the upgrade would run:")
            print(plan.sql, end="")
        _say(f"✅ dry run: {len(plan.pending)} revision(s) to apply; nothing changed")
        return
    confirm_deploy(settings, yes, _ask())
    try:
        record = pipeline.deploy(
            settings, to, say=_say, progress=_progress_printer(), allow_irreversible=allow_irreversible
        )
    except pipeline.DeployFailed as failure:
        message = f"❌ deploy {failure.record.status}: {failure}"
        if report_file:
            try:
                pipeline.write_report(report_file, failure.record)
            except DbOpsError as exc:
                message += f"; {exc}"
        raise Exit(message, code=1) from None
    timings = ", ".join(f"{step.name} {step.seconds:.1f}s" for step in record.steps)
    _say(f"✅ {record.message} ({timings})")
    if report_file:
        pipeline.write_report(report_file, record)


def _progress_printer():
    """A one-line progress display on a terminal, else None."""
    if not sys.stdout.isatty():
        return None
    import time

    started = time.monotonic()

    def show(done: int, total: int) -> None:
        elapsed = max(time.monotonic() - started, 1e-6)
        speed = done / elapsed
        left = f", about {max(total - done, 0) / speed:,.0f} s left" if total and speed else ""
        sys.stdout.write(f"\r  {done / 1e6:,.1f} MB of about {total / 1e6:,.1f} MB, {speed / 1e6:,.1f} MB/s{left}   ")
        sys.stdout.flush()
        if total and done >= total:
            sys.stdout.write("\n")

    return show


@task(
    help={
        "undo": "Undo an interrupted deploy or restore (the database as before it), or a half-applied revision.",
        "finish": "Complete a half-applied revision, or an interrupted restore, instead.",
    }
)
@cli_errors
def recover(c, undo=False, finish=False):
    """Finish what a killed run left: an interrupted rollback or restore, a half-applied revision.

    Without a flag it finishes an interrupted rollback or restore; --undo puts the database back
    as before an interrupted deploy or restore; --undo or --finish settles a half-applied revision.
    """
    from backend.dbops.recover import recover as run_recover

    if undo and finish:
        raise Exit("❌ choose one: --undo or --finish", code=1)
    result = run_recover(
        _settings(), "undo" if undo else "finish" if finish else None, say=lambda line: _say(f"  {line}")
    )
    for operation in result.operations:
        _say(f"  {operation}")
    if result.data_lost:
        _say(
            f"⚠️  data in {', '.join(result.data_lost)} could not come back from the schema alone: "
            "restore those tables from a backup if it matters"
        )
    if result.remaining:
        raise Exit(f"❌ {result.what}; still differs: {', '.join(result.remaining)}", code=1)
    _say(f"✅ {result.what}; the database is at {', '.join(result.revision_now) or 'base'}")


@task(
    help={
        "deploy": "Settle only this deploy (an id, or its first 8 characters, from `invoke db.deploys`).",
        "yes": "Do not ask first (needed without a terminal).",
    }
)
@cli_errors
def settle(c, deploy=None, yes=False):
    """Drop what finished deploys and restores kept aside (holding tables and triggers); asks first.

    Example: invoke db.settle --yes
    """
    from backend.dbops.deploy import settle_deploys
    from backend.dbops.guards import confirm_settle
    from backend.dbops.lock import migration_lock

    settings = _settings()
    confirm_settle(settings, yes, _ask())
    with migration_lock(settings, "settle") as lock:
        settled = settle_deploys(settings, lock, deploy_id=deploy)
    if not settled:
        _say("✅ nothing to settle")
    for deploy_id, tables in settled:
        _say(f"✅ settled {deploy_id[:8]}: dropped {len(tables)} holding table(s)")


@task(
    help={
        "revision": "Lint only this revision (an id or head).",
        "all": "Lint every revision (default: those pending against the database; all when it is not reachable).",
        "format": "text (default) or json.",
        "large_rows": "Rows from which a table copy counts as large (default 1,000,000).",
    }
)
@cli_errors
def lint(c, revision=None, all=False, format="text", large_rows=0):
    """Lint revisions for what hurts on MySQL: data loss, renames, failing ALTERs, table copies; exit 1 on errors.

    Example: invoke db.lint --all --format json. Silence one finding with a comment in the revision:
    `# lint: ignore[drop-column] nothing reads it since 2.3`.
    """
    from backend.dbops import lint as linter

    if format not in ("text", "json"):
        raise Exit("❌ --format must be text or json", code=1)
    options = {"large_table_rows": int(large_rows)} if large_rows else {}
    report = linter.lint(_settings(), [revision] if revision else None, all_revisions=all, **options)
    if format == "json":
        import json

        print(json.dumps(report.to_dict(), indent=2))
    else:
        for note in report.notes:
            _say(f"   {note}")
        for finding in report.findings:
            _say(finding.text())
    if report.errors:
        raise Exit(f"❌ {len(report.errors)} error(s) in {len(report.revisions)} revision(s) linted", code=1)
    if format == "text":
        silenced = f", {len(report.silenced)} silenced" if report.silenced else ""
        _say(f"✅ {len(report.revisions)} revision(s) linted: no errors, {len(report.warnings)} warning(s){silenced}")


@task(help={"format": "text (default), json, or markdown (a table for a pull-request comment)."})
@cli_errors
def drift(c, format="text"):
    """Compare the models, the migrations (built in a scratch database) and the live database; exit 1 on drift.

    Example: invoke db.drift --format markdown > drift.md
    """
    from backend.dbops.drift import drift as compare

    if format not in ("text", "json", "markdown"):
        raise Exit("❌ --format must be text, json or markdown", code=1)
    report = compare(_settings())
    if format == "json":
        import json

        print(json.dumps(report.to_dict(), indent=2))
    elif format == "markdown":
        print(report.to_markdown(), end="")
    else:
        for note in report.notes:
            _say(f"   {note}")
        for line in report.text_lines():
            _say(line)
    if report.drifted:
        drifting = [comparison.title for comparison in report.comparisons if comparison.differences]
        raise Exit(f"❌ schema drift: {', '.join(drifting)}", code=1)
    if format == "text":
        _say("✅ no drift: the models, the migrations and the live database agree")


@task(help={"limit": "How many deploys to show, newest first (default 20)."})
@cli_errors
def deploys(c, limit=20):
    """List recorded deploys: when, who, from and to revision, status, backup, step timings."""
    from backend.dbops.deploy_history import list_deploys

    rows = list_deploys(_settings(), int(limit))
    if not rows:
        _say("no deploys recorded yet")
        return
    for row in rows:
        mark = "✅" if row["status"] == "succeeded" else "⏳" if row["status"] == "running" else "❌"
        timings = " ".join(f"{step['name']}={step['seconds']:.1f}s" for step in row["steps"])
        _say(
            f"{mark} {row['started_at']:%Y-%m-%d %H:%M:%S} {row['os_user']}@{row['host']} [{row['environment']}] "
            f"{row['from_revision']} -> {row['to_revision'] or '?'} {row['status']}  {timings}"
        )
        if row["backup_file"]:
            _say(f"     backup: {row['backup_file']}")
        if row["status"] != "succeeded" and row["message"]:
            _say(f"     {row['message']}")


@task(help={"revision": "Revision the database should be at (default: head)."})
@cli_errors
def verify(c, revision="head"):
    """Verify the database: at the revision, matches the models, smoke SQL passes."""
    from backend.dbops.verify import verify as run_verify

    report = run_verify(_settings(), revision)
    _show_report(report)


@task(
    help={
        "start": "Revision to start from: current (the database's, the default), base or an id.",
        "end": "Revision to end at (default: head; for --downgrade, the lower end, default base).",
        "downgrade": "Render the downgrade SQL from --start down to --end instead.",
    }
)
@cli_errors
def sql(c, start="current", end="", downgrade=False):
    """Print the SQL a range of revisions would run, without changing the database."""
    from backend.dbops import migrate

    settings = _settings()
    if start == "current":
        if settings.is_configured:
            start = ",".join(migrate.current(settings)) or "base"
        else:
            start = "head" if downgrade else "base"
    else:
        script = migrate.script_directory(settings)
        for revision in start.split(","):
            migrate.resolve_target(script, revision)  # refuses one the code does not know
    end = end or ("base" if downgrade else "head")
    if (
        not downgrade
        and start != "base"
        and migrate.pending(migrate.script_directory(settings), start.split(","), end) == []
    ):
        _say(f"-- nothing to run: {start} is already at {end}")
        return
    print(migrate.offline_sql(settings, start, end, downgrade=downgrade), end="")


@task
@cli_errors
def backup(c):
    """Back up the database into BACKUP_DIR: compressed, verified, with a manifest; old ones rotated."""
    from backend.dbops import backup as backup_ops

    progress = _progress_printer()
    result = backup_ops.backup(_settings(), progress=progress)
    if progress is not None:
        sys.stdout.write("\r\x1b[K")  # clear the progress line
    manifest = result.manifest
    _say(
        f"✅ {result.path}: {backup_ops.format_size(manifest.bytes)}, {len(manifest.tables)} table(s) "
        f"at {manifest.revision}, {manifest.duration_seconds:.1f} s"
    )
    for path in result.rotated:
        _say(f"   removed old backup {path.name}")


@task
@cli_errors
def backups(c):
    """List the database's backups in BACKUP_DIR, newest first: time, revision, size, good or not."""
    from backend.dbops import backup as backup_ops

    settings = _settings()
    entries = backup_ops.list_backups(settings)
    if not entries:
        _say(f"no backups of {settings.database} in {settings.backup_dir}")
    for entry in entries:
        revision = entry.manifest.revision if entry.manifest else "?"
        problem = f"  ({entry.problem})" if entry.problem else ""
        _say(
            f"{'✅' if entry.good else '⚠️ '} {entry.when[:19].replace('T', ' ')}  {revision:<12}  "
            f"{backup_ops.format_size(entry.size):>10}  {entry.path.name}{problem}"
        )


@task(
    help={
        "file": "The backup file (.sql.zst or .sql.gz); its .json manifest must be beside it.",
        "into": "Restore into this database (created if missing) instead of the configured one.",
        "replace": "With --into: replace the tables of that database when it has some (they are kept aside).",
        **DESTRUCTIVE_HELP,
    }
)
@cli_errors
def restore(c, file, into=None, replace=False, yes=False, allow_production=False):
    """Verify a backup FILE, then replace the database's tables with it, keeping the replaced ones (asks first).

    Example: invoke db.restore backups/emotional_chat-20261130T093000Z-e9e7d98878ca.sql.zst
    """
    from backend.dbops import restore as restore_ops
    from backend.dbops.guards import confirm_destructive

    settings = _settings()
    target = into or settings.database

    def confirm(manifest) -> None:
        _say(
            f"✅ {manifest.file} verified: {manifest.database} at {manifest.revision}, "
            f"{len(manifest.tables)} table(s), taken {manifest.started_at[:19].replace('T', ' ')} UTC"
        )
        confirm_destructive(settings, "restore", target, yes, allow_production, _ask())

    result = restore_ops.restore(settings, file, into=into, replace=replace, confirm=confirm)
    _say(
        f"✅ restored {result.database}: {len(result.tables)} table(s), {sum(result.tables.values())} rows, "
        f"at {result.manifest.revision}, {result.duration_seconds:.1f} s"
    )
    if result.kept:
        _say(
            f"   the replaced tables are kept as {', '.join(result.kept[:3])}{' ...' if len(result.kept) > 3 else ''}"
            " until `invoke db.settle`"
        )
    if result.counts_differing:
        _say(
            f"⚠️  row counts differ from the manifest's (counted as the dump began): "
            f"{'; '.join(result.counts_differing[:5])}"
        )


db = Collection(
    "db",
    init,
    check,
    current,
    history,
    heads,
    upgrade,
    downgrade,
    revision,
    merge,
    stamp,
    adopt,
    create,
    drop,
    reset,
    sql,
    deploy,
    deploys,
    verify,
    recover,
    settle,
    backup,
    backups,
    restore,
    lint,
    drift,
)


# ---------------------------------------------------------------- sandbox


@task(
    name="up",
    help={
        "binary": "Server binary to run (default: mariadbd or mysqld found on this machine).",
        "server": "Server version to run instead, e.g. mariadb-11.8, mariadb-10.5, mysql-9.7 (from a local binary "
        "or a Debian chroot, built once; see `python -m backend.dbops.matrix targets`).",
    },
)
@cli_errors
def sandbox_up(c, binary=None, server=None):
    """Start the local sandbox server (used when no database is configured)."""
    from backend.dbops import sandbox

    state, started = sandbox.up(_settings().sandbox_dir, binary=binary, server=server, say=_say)
    _say(f"✅ {state.describe()}" if started else f"✅ already {state.describe()}")


@task(name="down", help={"keep_data": "Stop the server but keep its data for the next sandbox.up."})
@cli_errors
def sandbox_down(c, keep_data=False):
    """Stop the sandbox server and remove its data."""
    from backend.dbops import sandbox

    if sandbox.down(_settings().sandbox_dir, keep_data=keep_data):
        _say("✅ sandbox stopped" + (", data kept" if keep_data else " and removed"))
    else:
        _say("✅ no sandbox was running")


@task(name="status")
@cli_errors
def sandbox_status(c):
    """Show whether the sandbox server runs, and where."""
    from backend.dbops import sandbox

    state = sandbox.status(_settings().sandbox_dir)
    _say(f"{'✅' if state.running else '⚠️ '} {state.describe()}")
    if not state.running:
        raise Exit(code=1)


sandbox_ns = Collection("sandbox", sandbox_up, sandbox_down, sandbox_status)

# ---------------------------------------------------------------- app


@task(
    name="run",
    help={
        "host": "Address to listen on (default: APP_HOST, 127.0.0.1).",
        "port": "Port to listen on (default: APP_PORT, 8000).",
    },
)
@cli_errors
def app_run(c, host=None, port=0):
    """Run the backend service in the foreground until Ctrl-C or SIGTERM."""
    from backend.app import serve

    serve(_settings(), host=host, port=port or None, ready=lambda url: _say(f"✅ serving {url}/health (Ctrl-C stops)"))


def _hosts_option(hosts: str | None) -> tuple[str, ...] | None:
    return None if hosts is None else tuple(hosts.replace(",", " ").split())


@task(
    name="restart",
    help={
        "expect_revision": "Also require /health to report this revision (retried until it does).",
        "hosts": "Restart these hosts (comma-separated [user@]host[:port]) instead of APP_HOSTS.",
    },
)
@cli_errors
def app_restart(c, expect_revision=None, hosts=None):
    """Restart the backend service with RESTART_COMMAND, then check its health; across APP_HOSTS (or --hosts)
    a rolling restart over SSH, APP_HOSTS_BATCH hosts at a time, stopping at the first host that fails.

    Example: invoke app.restart --hosts web1,web2,deploy@web3:2222
    """
    from backend.dbops import app_hosts
    from backend.dbops.restart import restart

    settings = _settings()
    targets = app_hosts.hosts_of(settings, _hosts_option(hosts))
    if not targets:
        result = restart(settings, expected_revision=expect_revision)
        _say(f"✅ restarted in {result.command_seconds:.1f} s; {result.health.describe()}")
        return
    done = app_hosts.rolling_restart(settings, expect_revision, hosts=targets, say=_say)
    _say(f"✅ restarted {len(done)} host(s), {settings.app_hosts_batch} at a time")


@task(name="status", help={"hosts": "Ask these hosts (comma-separated) instead of APP_HOSTS."})
@cli_errors
def app_status(c, hosts=None):
    """Each host's /health answer: revision, pid, uptime (the local service without APP_HOSTS).

    Example: invoke app.status --hosts web1,web2
    """
    from backend.dbops import app_hosts

    settings = _settings()
    found = app_hosts.status(settings, app_hosts.hosts_of(settings, _hosts_option(hosts)))
    for host in found:
        _say(f"{'✅' if host.healthy else '❌'} {host.describe()}")
    unhealthy = [host.host for host in found if not host.healthy]
    if unhealthy:
        raise Exit(f"❌ {len(unhealthy)} of {len(found)} host(s) not healthy: {', '.join(unhealthy)}", code=1)


app_ns = Collection("app", app_run, app_restart, app_status)

ns = Collection(db, sandbox_ns, app_ns)
