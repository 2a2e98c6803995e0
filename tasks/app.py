"""The app namespace: the backend service run in the foreground, or restarted and checked."""

from __future__ import annotations

from invoke import Collection, task

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


@task(name="restart", help={"expect_revision": "Also require /health to report this revision (retried until it does)."})
@cli_errors
def app_restart(c, expect_revision=None):
    """Restart the backend service with RESTART_COMMAND, then check its health."""
    from backend.dbops.restart import restart

    result = restart(load_settings(), expected_revision=expect_revision)
    say(f"✅ restarted in {result.command_seconds:.1f} s; {result.health.describe()}")


ns = Collection("app", app_run, app_restart)
