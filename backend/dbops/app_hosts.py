"""The application on several hosts: a rolling restart over SSH (Fabric), and each host's health.

APP_HOSTS lists the hosts (`[user@]host[:port]`); empty means the service runs here and
restart.py restarts it. The roll restarts APP_HOSTS_BATCH hosts at a time with RESTART_COMMAND,
run by `sh -c` in APP_DIR on the host, and checks each one's health (HEALTH_URL, where
`{host}` stands for the host's name; HEALTH_COMMAND runs on the host instead) before it moves
on. The first host that fails stops the roll: hosts after it keep running the code they have.

No secret travels: each host's service reads the database password from its own config.env.
The host keys must be known (SSH_KNOWN_HOSTS, else ~/.ssh/known_hosts): an unknown key is
refused, as `ssh -o StrictHostKeyChecking=yes` would, where Fabric alone would accept it.
"""

from __future__ import annotations

import secrets
import shlex
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import paramiko
from fabric import Connection

from ..config import APP_HOST_PATTERN, START_ID_VARIABLE, Settings
from .errors import RestartError
from .restart import COMMAND_TIMEOUT, HealthResult, health_check, probe_health

TIMED_OUT = 124  # coreutils timeout's exit status when the command ran out of time


@dataclass(frozen=True)
class AppHost:
    user: str | None
    name: str
    port: int | None

    @classmethod
    def parse(cls, text: str) -> AppHost:
        match = APP_HOST_PATTERN.fullmatch(text.strip())
        if not match or (match["port"] and not 0 < int(match["port"]) < 65536):
            raise RestartError(f"{text!r} is not [user@]host[:port]")
        return cls(match["user"], match["host"], int(match["port"]) if match["port"] else None)

    def __str__(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.name}{f':{self.port}' if self.port else ''}"


@dataclass(frozen=True)
class HostRestart:
    """One host's part of a roll; timings in seconds."""

    host: str
    status: str  # restarted, failed, not restarted
    command_seconds: float | None = None
    health_seconds: float | None = None
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


class RollStopped(RestartError):
    """A host failed: the roll stopped there. hosts holds every host's outcome, in order."""

    def __init__(self, message: str, hosts: list[HostRestart]) -> None:
        super().__init__(message)
        self.hosts = hosts


@dataclass(frozen=True)
class HostStatus:
    host: str
    healthy: bool
    revision: str | None = None
    pid: int | None = None
    uptime_seconds: float | None = None
    error: str = ""

    def describe(self) -> str:
        if not self.healthy:
            return f"{self.host}: {self.error}"
        uptime = f", up {_duration(self.uptime_seconds)}" if self.uptime_seconds is not None else ""
        return f"{self.host}: revision {self.revision or 'unknown'}, pid {self.pid or 'unknown'}{uptime}"


def _duration(seconds: float) -> str:
    minutes, second = divmod(int(seconds), 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours}h{minute:02d}m" if hours else f"{minute}m{second:02d}s" if minute else f"{second}s"


def hosts_of(settings: Settings, names: tuple[str, ...] | None = None) -> list[AppHost]:
    """The hosts to act on: names (e.g. from --hosts), else APP_HOSTS."""
    return [AppHost.parse(name) for name in (settings.app_hosts if names is None else names)]


def health_url(settings: Settings, host: AppHost) -> str:
    return (settings.health_url or "http://{host}:" + str(settings.app_port) + "/health").replace("{host}", host.name)


def _connection(settings: Settings, host: AppHost) -> Connection:
    connection = Connection(
        host.name,
        user=host.user,
        port=host.port,
        connect_timeout=settings.ssh_connect_timeout,
        connect_kwargs={"key_filename": settings.ssh_identity_file} if settings.ssh_identity_file else {},
    )
    if _known_hosts(settings).is_file():
        connection.client.load_host_keys(str(_known_hosts(settings)))
    connection.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return connection


def _known_hosts(settings: Settings) -> Path:
    return settings.ssh_known_hosts or Path.home() / ".ssh" / "known_hosts"


def _ssh_failure(exc: Exception, host: AppHost, settings: Settings) -> str:
    if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
        return f"its host key is not in {_known_hosts(settings)} (SSH_KNOWN_HOSTS): check it, then add it"
    if isinstance(exc, paramiko.AuthenticationException):
        return "SSH authentication failed (SSH_IDENTITY_FILE, or a key in the agent)"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "SSH connection timed out"
    return f"SSH: {' '.join((str(exc) or type(exc).__name__).split())}"


def run_on(settings: Settings, host: AppHost, command: str, env: dict[str, str] | None = None) -> float:
    """Run command through a shell on the host, in APP_DIR; its duration, RestartError unless it exits 0."""
    assignments = "".join(f"{name}={shlex.quote(value)} " for name, value in (env or {}).items())
    # coreutils' timeout on the host bounds the command there (and exits 124), whatever the connection does.
    line = (
        f"cd {shlex.quote(settings.app_dir)} && {assignments}timeout {COMMAND_TIMEOUT:.0f} sh -c {shlex.quote(command)}"
    )
    started = time.monotonic()
    try:
        with _connection(settings, host) as connection:
            result = connection.run(line, hide=True, warn=True, in_stream=False)
    except (OSError, paramiko.SSHException, EOFError) as exc:
        raise RestartError(f"{host}: {_ssh_failure(exc, host, settings)}") from None
    if result.exited == TIMED_OUT:
        raise RestartError(f"{host}: the command did not finish within {COMMAND_TIMEOUT:.0f} s")
    if result.exited != 0:
        output = result.stderr.strip() or result.stdout.strip() or "no error output"
        raise RestartError(f"{host}: exit code {result.exited}: {output.splitlines()[-1].strip()}")
    return time.monotonic() - started


def _restart_host(settings: Settings, host: AppHost, expected_revision: str | None) -> HostRestart:
    start_id = secrets.token_hex(16)
    command_seconds = run_on(settings, host, settings.restart_command, {START_ID_VARIABLE: start_id})
    started = time.monotonic()
    if settings.health_command:
        run_on(settings, host, settings.health_command)
        health = HealthResult("HEALTH_COMMAND", 1, time.monotonic() - started)
    else:
        try:
            health = health_check(settings, expected_revision, start_id, url=health_url(settings, host))
        except RestartError as exc:
            raise RestartError(f"{host}: {exc}") from None
    return HostRestart(str(host), "restarted", round(command_seconds, 3), round(health.seconds, 3), health.describe())


def rolling_restart(
    settings: Settings,
    expected_revision: str | None = None,
    *,
    hosts: list[AppHost] | None = None,
    say=lambda line: None,
) -> list[HostRestart]:
    """Restart hosts a batch at a time, each batch healthy before the next; RollStopped at the first failure."""
    hosts = hosts_of(settings) if hosts is None else hosts
    done: list[HostRestart] = []
    size = settings.app_hosts_batch
    for batch in (hosts[start : start + size] for start in range(0, len(hosts), size)):
        with ThreadPoolExecutor(max_workers=len(batch)) as pool:
            futures = [pool.submit(_restart_host, settings, host, expected_revision) for host in batch]
        failures = []
        for host, future in zip(batch, futures, strict=True):
            try:
                outcome = future.result()
                say(f"✅ {outcome.host}: restarted in {outcome.command_seconds:.1f} s; {outcome.detail}")
            except RestartError as exc:
                outcome = HostRestart(str(host), "failed", detail=str(exc))
                failures.append(str(exc))
            done.append(outcome)
        if failures:
            rest = hosts[len(done) :]
            done += [HostRestart(str(host), "not restarted") for host in rest]
            left = f"; not restarted: {', '.join(map(str, rest))}" if rest else ""
            raise RollStopped(f"rolling restart stopped at {failures[0]}{left}", done)
    return done


def status(settings: Settings, hosts: list[AppHost] | None = None) -> list[HostStatus]:
    """Each host's /health answer (once, no retries), or why there is none; the local service without APP_HOSTS."""
    hosts = hosts_of(settings) if hosts is None else hosts
    urls = [(str(host), health_url(settings, host)) for host in hosts] or [("local", settings.effective_health_url)]
    now = datetime.now(UTC)
    found = []
    for name, url in urls:
        body, why = probe_health(url, settings.health_timeout)
        if body is None:
            found.append(HostStatus(name, False, error=why))
            continue
        try:
            uptime = (now - datetime.fromisoformat(body["started_at"])).total_seconds()
        except (KeyError, TypeError, ValueError):
            uptime = None
        found.append(HostStatus(name, True, body.get("revision"), body.get("pid"), uptime))
    return found
