"""The sandbox namespace: the local server used when no database is configured."""

from __future__ import annotations

from invoke import Collection, Exit, task

from backend.config import load_settings
from backend.console import say

from .cli import cli_errors


@task(
    name="up",
    help={
        "binary": "Server binary to run (default: mariadbd or mysqld found on this machine).",
        "server": "Server version to run instead, e.g. mariadb-11.8, mariadb-10.5, mysql-9.7 (from a local binary "
        "or a Debian chroot, built once; `invoke sandbox.servers` lists them).",
    },
)
@cli_errors
def sandbox_up(c, binary=None, server=None):
    """Start the local sandbox server (used when no database is configured)."""
    from backend.dbops import sandbox

    state, started = sandbox.up(load_settings().sandbox_dir, binary=binary, server=server, say=say)
    say(f"✅ {state.describe()}" if started else f"✅ already {state.describe()}")


@task(name="down", help={"keep_data": "Stop the server but keep its data for the next sandbox.up."})
@cli_errors
def sandbox_down(c, keep_data=False):
    """Stop the sandbox server and remove its data."""
    from backend.dbops import sandbox

    if sandbox.down(load_settings().sandbox_dir, keep_data=keep_data):
        say("✅ sandbox stopped" + (", data kept" if keep_data else " and removed"))
    else:
        say("✅ no sandbox was running")


@task(name="status")
@cli_errors
def sandbox_status(c):
    """Show whether the sandbox server runs, and where."""
    from backend.dbops import sandbox

    state = sandbox.status(load_settings().sandbox_dir)
    say(f"{'✅' if state.running else '⚠️ '} {state.describe()}")
    if not state.running:
        raise Exit(code=1)


@task(name="servers")
@cli_errors
def sandbox_servers(c):
    """List the server versions (sandbox.up --server, nox -s migrations) and what each provider would do."""
    from backend.dbops.providers import describe_providers
    from backend.dbops.targets import TARGETS

    for target in TARGETS.values():
        say(f"{target.id}  ({target.label}; tags {', '.join(target.tags)})")
        for provider, verdict in describe_providers(target.id):
            say(f"    {provider:7} {verdict}")


@task(
    name="provision",
    help={"servers": "Server versions: ids or tags (mariadb, mysql, debian) or all, separated by commas."},
)
@cli_errors
def sandbox_provision(c, servers):
    """Build the Debian roots of server versions no local binary serves (root only; once per machine)."""
    from backend.dbops.debian_roots import prepare_roots
    from backend.dbops.targets import select_targets

    failed = []
    for prepared in prepare_roots(select_targets(servers.split(",")), say=say):
        if prepared.local_binary:
            say(f"✅ {prepared.target}: served by the local {prepared.local_binary}, no root needed")
        elif prepared.marker:
            marker = prepared.marker
            how = "already built" if marker["reused"] else f"built in {marker['seconds']:.0f} s"
            say(
                f"✅ {prepared.target}: {marker['flavour']} {marker['version']}, {how}, {marker.get('size_mb', '?')} MB"
            )
        else:
            failed.append(f"❌ {prepared.target}: {prepared.error}")
    if failed:
        raise Exit("\n".join(failed), code=1)


ns = Collection("sandbox", sandbox_up, sandbox_down, sandbox_status, sandbox_servers, sandbox_provision)
