"""Restart the application service and check its health: the deploy's last step.

Commands run from the project root without a shell, and without the database password in
their environment. RESTART_COMMAND gets the password the tool uses on an inherited pipe
(its number in MYSQL_PASSWORD_FD), so the service it starts connects as the tool does
whether the password came from the environment or a config file; and a new APP_START_ID,
which the service answers on /health: the check then knows it hears the service just
started, not another process holding the port.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.client import HTTPException
from urllib.parse import urlsplit

from ..config import PASSWORD_FD_VARIABLE, PROJECT_ROOT, START_ID_VARIABLE, Settings, child_environment
from .errors import RestartError
from .secret_pipe import TooLong, pipe_holding

COMMAND_TIMEOUT = 60.0
FIRST_DELAY = 0.2
MAX_DELAY = 2.0


@dataclass(frozen=True)
class HealthResult:
    target: str  # the URL, or HEALTH_COMMAND
    attempts: int
    seconds: float
    body: dict = field(default_factory=dict)  # the JSON the URL answered; empty for a command

    @property
    def revision(self) -> str | None:
        return self.body.get("revision")

    def describe(self) -> str:
        seen = f", revision {self.revision}" if self.revision else ""
        return f"{self.target} healthy after {self.attempts} attempt(s) in {self.seconds:.1f} s{seen}"


@dataclass(frozen=True)
class RestartResult:
    command_seconds: float
    health: HealthResult


def _first_line(text: str, settings: Settings) -> str:
    line = next((line.strip() for line in text.splitlines() if line.strip()), "no error output")
    return line.replace(settings.password, "***") if settings.password else line


def run_command(
    settings: Settings, command: str, name: str, env: dict[str, str] | None = None, pass_fds: tuple[int, ...] = ()
) -> float:
    """Run the command line held by the setting `name`; return its duration, RestartError unless it exits 0.

    env defaults to child_environment(); pass_fds are descriptors it inherits.
    """
    try:
        args = shlex.split(command)
    except ValueError as exc:
        raise RestartError(f"{name} cannot be parsed: {exc}") from None
    if not args:
        raise RestartError(f"{name} is empty")
    started = time.monotonic()
    try:
        completed = subprocess.run(
            args,
            cwd=PROJECT_ROOT,
            env=child_environment() if env is None else env,
            pass_fds=pass_fds,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=COMMAND_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise RestartError(f"{name} {args[0]} did not finish within {COMMAND_TIMEOUT:.0f} s") from None
    except OSError as exc:
        raise RestartError(f"{name} {args[0]} cannot run: {exc.strerror or exc}") from None
    if completed.returncode != 0:
        raise RestartError(
            f"{name} {args[0]} failed with exit code {completed.returncode}: {_first_line(completed.stderr, settings)}"
        )
    return time.monotonic() - started


def _json_object(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def probe_health(url: str, timeout: float) -> tuple[dict | None, str]:
    """One request: (body, "") on HTTP 200, the body {} when it is not a JSON object; else (None, why)."""
    # No proxy: the service is ours and near, and http_proxy would misroute localhost.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return None, f"HTTP {exc.code}: {_json_object(exc.read()).get('error') or exc.reason}"
    except urllib.error.URLError as exc:
        return None, str(exc.reason)
    except (OSError, HTTPException) as exc:
        return None, str(exc) or type(exc).__name__
    return (_json_object(raw), "") if status == 200 else (None, f"HTTP {status}")


def health_check(
    settings: Settings, expected_revision: str | None = None, start_id: str | None = None, url: str | None = None
) -> HealthResult:
    """HEALTH_COMMAND exits 0, or the health URL (url, else HEALTH_URL's) answers 200 (with expected_revision
    and start_id, when given); url given, HEALTH_COMMAND is not run here (app_hosts runs it on the host).

    The URL is retried up to HEALTH_RETRIES times with a growing delay, since the service
    needs a moment to start. expected_revision and start_id apply to the URL only: a command
    is trusted.
    """
    started = time.monotonic()
    if settings.health_command and url is None:
        run_command(settings, settings.health_command, "HEALTH_COMMAND")
        return HealthResult("HEALTH_COMMAND", 1, time.monotonic() - started)
    url = url or settings.effective_health_url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RestartError(f"HEALTH_URL {url!r} is not an http(s) URL")
    delay, why = FIRST_DELAY, ""
    for attempt in range(1, settings.health_retries + 1):
        body, why = probe_health(url, settings.health_timeout)
        if body is not None:
            if start_id is not None and body.get("start_id") != start_id:
                why = (
                    f"answered by another process (pid {body.get('pid', 'unknown')}), "
                    "not the one RESTART_COMMAND started"
                )
            elif expected_revision is None or body.get("revision") == expected_revision:
                return HealthResult(url, attempt, time.monotonic() - started, body)
            else:
                why = f"revision {body.get('revision')} instead of {expected_revision}"
        if attempt < settings.health_retries:
            time.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)
    raise RestartError(
        f"health check of {url} failed after {settings.health_retries} attempt(s): {' '.join(why.split())}"
    )


def _password_pipe(settings: Settings) -> int:
    """The read end of a pipe holding the password."""
    try:
        return pipe_holding(settings.password.encode("utf-8", "surrogateescape"))
    except TooLong:
        raise RestartError("the password is too long to hand to RESTART_COMMAND on a pipe") from None


def restart(settings: Settings, expected_revision: str | None = None) -> RestartResult:
    """Run RESTART_COMMAND (with the password on a pipe and a new APP_START_ID), then health_check()
    of the service it started; RestartError when either fails."""
    start_id = secrets.token_hex(16)
    password = _password_pipe(settings)
    try:
        env = {**child_environment(), PASSWORD_FD_VARIABLE: str(password), START_ID_VARIABLE: start_id}
        seconds = run_command(settings, settings.restart_command, "RESTART_COMMAND", env, (password,))
    finally:
        os.close(password)
    return RestartResult(seconds, health_check(settings, expected_revision, start_id))
