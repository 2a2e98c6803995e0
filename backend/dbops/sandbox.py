"""The project's local sandbox server (`invoke sandbox.up/down/status`).

One throwaway server in .sandbox/ (ignored by git) on a free port, with an application
user whose random password is kept in .sandbox/sandbox.json (mode 0600). Settings use it
when no database is configured, so `invoke sandbox.up db.deploy` needs nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..config import SANDBOX_STATE_NAME
from .errors import SandboxError
from .identifiers import quote_identifier
from .servers import ServerInstance, create_user, start_instance, stop_instance

SANDBOX_DATABASE = "emotional_chat"
SANDBOX_USER = "emotional_chat"


@dataclass(frozen=True)
class SandboxStatus:
    running: bool
    instance: ServerInstance | None
    database: str = ""
    user: str = ""

    def describe(self) -> str:
        if not self.instance:
            return "no sandbox: start one with `invoke sandbox.up`"
        where = f"{self.instance.flavour} {self.instance.version} on 127.0.0.1:{self.instance.port}"
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
        running=instance.is_running(), instance=instance, database=state.get("database", ""), user=state.get("user", "")
    )


def up(sandbox_dir: Path, binary: str | None = None) -> tuple[SandboxStatus, bool]:
    """Start the sandbox (or keep the running one); return (status, started_now)."""
    current = status(sandbox_dir)
    if current.running:
        return current, False
    state_file = sandbox_dir / SANDBOX_STATE_NAME
    previous = _read_state(state_file)
    port = previous.get("instance", {}).get("port") if previous else None
    try:
        instance = start_instance(sandbox_dir, port=port, binary=binary)
    except SandboxError:
        if port is None:
            raise
        instance = start_instance(sandbox_dir, binary=binary)  # the old port is taken now
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
    shutil.rmtree(sandbox_dir, ignore_errors=True)
    return True
