"""Tasks of the db namespace that ship a schema: deploy, its record, recovery and settling, and
the backups that guard it. db.py puts them in its namespace."""

from __future__ import annotations

from invoke import Exit, task

from backend.config import load_settings
from backend.console import ask, progress_printer, say, say_lines
from backend.dbops.errors import DbOpsError

from .cli import DESTRUCTIVE_HELP, cli_errors


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

    settings = load_settings()
    report_file = pipeline.report_path(report) if report and not dry_run else None
    if dry_run:
        print(pipeline.make_plan(settings, to).text(settings.describe()), end="", flush=True)
        return
    confirm_deploy(settings, yes, ask())
    try:
        record = pipeline.deploy(
            settings, to, say=say, progress=progress_printer(), allow_irreversible=allow_irreversible
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
    say(f"✅ {record.message} ({timings})")
    if report_file:
        pipeline.write_report(report_file, record)


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
        load_settings(), "undo" if undo else "finish" if finish else None, say=lambda line: say(f"  {line}")
    )
    say_lines(result.lines())
    if result.remaining:
        raise Exit(result.outcome(), code=1)
    say(result.outcome())


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

    settings = load_settings()
    confirm_settle(settings, yes, ask())
    with migration_lock(settings, "settle") as lock:
        settled = settle_deploys(settings, lock, deploy_id=deploy)
    if not settled:
        say("✅ nothing to settle")
    for deploy_id, tables in settled:
        say(f"✅ settled {deploy_id[:8]}: dropped {len(tables)} holding table(s)")


@task(help={"limit": "How many deploys to show, newest first (default 20)."})
@cli_errors
def deploys(c, limit=20):
    """List recorded deploys: when, who, from and to revision, status, backup, step timings."""
    from backend.dbops.deploy_history import deploy_lines, list_deploys

    rows = list_deploys(load_settings(), int(limit))
    if not rows:
        say("no deploys recorded yet")
        return
    for row in rows:
        say_lines(deploy_lines(row))


@task
@cli_errors
def backup(c):
    """Back up the database into BACKUP_DIR: compressed, verified, with a manifest; old ones rotated."""
    from backend.console import clear_progress
    from backend.dbops import backup as backup_ops

    progress = progress_printer()
    result = backup_ops.backup(load_settings(), progress=progress)
    if progress is not None:
        clear_progress()
    say_lines(result.lines())


@task(help={"verify": "Also decompress each backup and check it as a restore would (digest, header, closing line)."})
@cli_errors
def backups(c, verify=False):
    """List the database's backups in BACKUP_DIR, newest first: time, revision, size, good or not."""
    from backend.dbops.backup_files import list_backups
    from backend.dbops.backup_verify import verify_entries

    settings = load_settings()
    entries = list_backups(settings)
    if not entries:
        say(f"no backups of {settings.database} in {settings.backup_dir}")
    if verify:
        entries = verify_entries(entries, settings.database)
    say_lines(entry.line() for entry in entries)
    if verify and not all(entry.good for entry in entries):
        raise Exit(code=1)


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

    settings = load_settings()
    target = into or settings.database

    def confirm(manifest) -> None:
        say(manifest.verified_line())
        confirm_destructive(settings, "restore", target, yes, allow_production, ask())

    from backend.console import clear_progress

    progress = progress_printer()
    result = restore_ops.restore(settings, file, into=into, replace=replace, confirm=confirm, progress=progress)
    if progress is not None:
        clear_progress()
    say_lines(result.lines())


TASKS = (deploy, deploys, recover, settle, backup, backups, restore)
