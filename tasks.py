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
            raise Exit(f"❌ unexpected {type(exc).__name__}: {first} (DB_DEBUG=1 shows the traceback)", code=1) from None

    return wrapper


def _settings() -> Settings:
    return load_settings()


def _ask():
    """A prompt when a person is at the terminal, else None (guards then refuse)."""
    return input if sys.stdin.isatty() else None


def _say(line: str) -> None:
    print(line, flush=True)


def _describe_step(step) -> None:
    _say(f"  → {step.revision}  {(step.doc or '').strip()}")


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
    for item in report.items:
        if item.ok:
            _say(f"{'⚠️ ' if item.warning else '✅'} {item.name}: {item.detail}")
    for line in report.pending:
        _say(f"     pending: {line}")
    if not report.ok:
        raise Exit("\n".join(f"❌ {item.name}: {item.detail}" for item in report.items if not item.ok), code=1)


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
        tags = [tag for tag, on in (("head", info.is_head), ("current", info.is_current), ("merge", info.is_merge)) if on]
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


@task(help={"revision": "Target revision: an id, -N steps, or base (default: -1, one step)."})
@cli_errors
def downgrade(c, revision="-1"):
    """Revert revisions down to --revision (default: one step)."""
    from backend.dbops import migrate

    settings = _settings()
    before, after = migrate.downgrade(settings, revision)
    _say(f"✅ {settings.database}: {', '.join(before)} -> {', '.join(after) or 'base'}")


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
        _say(f"✅ wrote {path.relative_to(path.parents[2]) if len(path.parents) > 2 else path}: review it before applying")


@task(help={"message": "Message of the merge revision (default: 'merge heads')."})
@cli_errors
def merge(c, message="merge heads"):
    """Join several heads into one with a merge revision."""
    from backend.dbops import migrate

    path = migrate.merge(_settings(), message)
    _say(f"✅ wrote merge revision {path.name}")


@task(help={"revision": "Revision to record as applied, without running anything (head, base or an id)."})
@cli_errors
def stamp(c, revision=""):
    """Record a revision in alembic_version without running migrations."""
    from backend.dbops import migrate

    if not revision:
        raise Exit("❌ say which revision: invoke db.stamp -r REV", code=1)
    settings = _settings()
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
    """Drop, create and upgrade the configured database to head (asks first)."""
    from backend.dbops import admin
    from backend.dbops.guards import confirm_destructive

    settings = _settings()
    confirm_destructive(settings, "reset", settings.database, yes, allow_production, _ask())
    admin.drop_database(settings)
    admin.create_database(settings)
    _say(f"✅ recreated database {settings.database}")
    _upgrade(settings, "head")


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
    end = end or ("base" if downgrade else "head")
    if not downgrade and start != "base" and migrate.pending(migrate.script_directory(settings), start.split(","), end) == []:
        _say(f"-- nothing to run: {start} is already at {end}")
        return
    print(migrate.offline_sql(settings, start, end, downgrade=downgrade), end="")


db = Collection("db", init, check, current, history, heads, upgrade, downgrade, revision, merge, stamp, create, drop, reset, sql)


# ---------------------------------------------------------------- sandbox


@task(name="up", help={"binary": "Server binary to run (default: mariadbd or mysqld found on this machine)."})
@cli_errors
def sandbox_up(c, binary=None):
    """Start the local sandbox server (used when no database is configured)."""
    from backend.dbops import sandbox

    state, started = sandbox.up(_settings().sandbox_dir, binary=binary)
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

ns = Collection(db, sandbox_ns)
