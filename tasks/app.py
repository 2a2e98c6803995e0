"""The app namespace: the backend service run in the foreground, or restarted and checked."""

from __future__ import annotations

from invoke import Collection, Exit, task

from backend.config import load_settings
from backend.console import say

from .cli import cli_errors


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

    serve(
        load_settings(), host=host, port=port or None, ready=lambda url: say(f"✅ serving {url}/health (Ctrl-C stops)")
    )


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

    settings = load_settings()
    targets = app_hosts.hosts_of(settings, _hosts_option(hosts))
    if not targets:
        result = restart(settings, expected_revision=expect_revision)
        say(f"✅ restarted in {result.command_seconds:.1f} s; {result.health.describe()}")
        return
    done = app_hosts.rolling_restart(settings, expect_revision, hosts=targets, say=say)
    say(f"✅ restarted {len(done)} host(s), {settings.app_hosts_batch} at a time")


@task(name="status", help={"hosts": "Ask these hosts (comma-separated) instead of APP_HOSTS."})
@cli_errors
def app_status(c, hosts=None):
    """Each host's /health answer: revision, pid, uptime (the local service without APP_HOSTS).

    Example: invoke app.status --hosts web1,web2
    """
    from backend.dbops import app_hosts

    settings = load_settings()
    found = app_hosts.status(settings, app_hosts.hosts_of(settings, _hosts_option(hosts)))
    for host in found:
        say(f"{'✅' if host.healthy else '❌'} {host.describe()}")
    unhealthy = [host.host for host in found if not host.healthy]
    if unhealthy:
        raise Exit(f"❌ {len(unhealthy)} of {len(found)} host(s) not healthy: {', '.join(unhealthy)}", code=1)


ns = Collection("app", app_run, app_restart, app_status)
