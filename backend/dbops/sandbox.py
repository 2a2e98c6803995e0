"""The project's local sandbox server (`invoke sandbox.up/down/status`).

One throwaway server in .sandbox/ (ignored by git) on a free port, with an application
user whose random password is kept in .sandbox/sandbox.json (mode 0600). Settings use it
when no database is configured, so `invoke sandbox.up db.deploy` needs nothing else.

`up(server="mariadb-11.8")` runs one of the matrix targets instead (targets.py, providers.py): from a
local binary of that version or a Debian chroot, whose data then lives inside the chroot;
.sandbox/sandbox.json still says where, so `down` stops and removes it the same way.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import SANDBOX_STATE_NAME
from .errors import SandboxError
from .identifiers import quote_identifier
from .providers import start_server
from .servers import ServerInstance, create_user, start_instance, stop_instance
from .targets import get_target

SANDBOX_DATABASE = "emotional_chat"
SANDBOX_USER = "emotional_chat"


@dataclass(frozen=True)
class SandboxStatus:
    running: bool
    instance: ServerInstance | None
    database: str = ""
    user: str = ""
    server: str = ""  # the matrix target it runs, when chosen with up(server=...)

    def describe(self) -> str:
        if not self.instance:
            return "no sandbox: start one with `invoke sandbox.up`"
        where = f"{self.instance.flavour} {self.instance.version} on 127.0.0.1:{self.instance.port}"
        if self.instance.chroot:
            where += " (Debian chroot)"
        state = "running" if self.running else "stopped"
        return f"sandbox {state}: {where}, database {self.database}, user {self.user}, folder {self.instance.base_dir}"


def _read_state(state_file: Path) -> dict:
    try:
        return json.loads(state_file.read_text())
    except (OSError, ValueError):
        return {}


def _write_state(state_file: Path, state: dict) -> None:
    temporary = state_file.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(state, handle, indent=2)
    os.replace(temporary, state_file)


def status(sandbox_dir: Path) -> SandboxStatus:
    state = _read_state(sandbox_dir / SANDBOX_STATE_NAME)
    if not state.get("instance"):
        return SandboxStatus(running=False, instance=None)
    instance = ServerInstance.from_dict(state["instance"])
    return SandboxStatus(
        running=instance.is_running(),
        instance=instance,
        database=state.get("database", ""),
        user=state.get("user", ""),
        server=state.get("server", ""),
    )


def _start(
    sandbox_dir: Path, port: int | None, binary: str | None, server: str, say: Callable[[str], None]
) -> ServerInstance:
    if server:
        return start_server(server, sandbox_dir, port=port, say=say)[0]
    return start_instance(sandbox_dir, port=port, binary=binary)


def up(
    sandbox_dir: Path,
    binary: str | None = None,
    server: str | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> tuple[SandboxStatus, bool]:
    """Start the sandbox (or keep the running one); return (status, started_now).

    server: a matrix target id (e.g. mariadb-11.8) instead of the local binary; the first
    time, its Debian root is built, which say is told about as it goes (minutes).
    """
    if server and binary:
        raise SandboxError("choose either a server or a binary, not both")
    if server:
        get_target(server)  # an unknown id fails before anything starts
    current = status(sandbox_dir)
    if current.running:
        if server and current.server != server:
            raise SandboxError(
                f"the sandbox runs {current.server or 'the local server'}: stop it with `invoke sandbox.down` first"
            )
        return current, False
    state_file = sandbox_dir / SANDBOX_STATE_NAME
    previous = _read_state(state_file)
    kept = previous.get("server", "") if previous.get("instance") else None
    if kept is not None and server is not None and kept != server:
        raise SandboxError(
            f"the sandbox keeps data of {kept or 'the local server'}: remove it with `invoke sandbox.down` first"
        )
    server = server or kept or ""
    port = previous.get("instance", {}).get("port") if previous else None
    sandbox_dir.mkdir(parents=True, exist_ok=True)
    try:
        instance = _start(sandbox_dir, port, binary, server, say)
    except SandboxError:
        if port is None:
            raise
        instance = _start(sandbox_dir, None, binary, server, say)  # the old port is taken now
    try:
        password = create_user(instance, SANDBOX_USER, previous.get("password"))
        connection = instance.root_connection()
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"CREATE DATABASE IF NOT EXISTS {quote_identifier(SANDBOX_DATABASE)} "
                    "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                )
        finally:
            connection.close()
    except Exception:
        stop_instance(instance)
        raise
    _write_state(
        state_file,
        {
            "host": instance.host,
            "port": instance.port,
            "user": SANDBOX_USER,
            "password": password,
            "database": SANDBOX_DATABASE,
            "server": server,
            "instance": instance.to_dict(),
        },
    )
    return status(sandbox_dir), True


def down(sandbox_dir: Path, keep_data: bool = False) -> bool:
    """Stop the sandbox and remove its folder (unless keep_data); return True if one was there."""
    current = status(sandbox_dir)
    if current.instance is None and not sandbox_dir.exists():
        return False
    if current.instance is not None:
        stop_instance(current.instance)
    if keep_data:
        return True
    if current.instance is not None and current.instance.chroot:
        # The data folder of a chroot server lives inside that root, not in sandbox_dir.
        shutil.rmtree(current.instance.base_dir, ignore_errors=True)
    shutil.rmtree(sandbox_dir, ignore_errors=True)
    return True
