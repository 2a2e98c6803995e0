"""Big-table ALTERs run online: pt-online-schema-change copies, the cut-over is ours.

A hook on the migration connection sees each ALTER TABLE a revision sends. When ddl_guard.route
says it goes online (a table copy above DDL_GUARD_MAX_ROWS rows with ONLINE_SCHEMA_CHANGE=online,
or a revision that says `# ddl-guard: online`), the statement is not sent: the tool builds an
altered copy of the table in chunks behind its triggers, throttled by OSC_MAX_LOAD,
OSC_CRITICAL_LOAD, OSC_CHUNK_TIME and the lag of OSC_REPLICAS. It runs with --no-swap-tables,
--no-drop-triggers and --no-drop-new-table, so the copy waits for our cut-over
(undo/online_alter.py), which keeps the original aside until the deploy settles and points
other tables' foreign keys at the copy. A plain upgrade (no deploy, nothing to undo) drops the
original right after.

The tool reads the credentials from an option file in memory (memfd), which it can open once
per connection it makes and which no kill leaves behind; it dies with this process.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Settings, child_environment
from .clients import dies_with, option_file_text
from .ddl_guard import (
    ALTER_TABLE,
    COPY,
    ER_ALTER_OPERATION_NOT_SUPPORTED,
    INPLACE,
    INSTANT,
    ONLINE,
    ONLINE_ASKED,
    OPT_IN,
    OSC_TOOL,
    UNKNOWN,
    route,
    schema_change_mode,
)
from .errors import DbOpsError
from .servers import find_program
from .tool_tables import TOOL_TABLES
from .undo import holding, log, online_alter
from .undo.session import Session, q
from .undo.tabledef import show_create

if TYPE_CHECKING:
    from alembic.script import Script
    from sqlalchemy.engine import Connection

Say = Callable[[str], None]


class OnlineSchemaChangeFailed(DbOpsError):
    pass


def _memory_file(data: bytes) -> int:
    """An anonymous in-memory file holding data: /dev/fd/N of it opens afresh for each reader."""
    fd = os.memfd_create("client-options", os.MFD_CLOEXEC)
    os.write(fd, data)
    return fd


def tool_command(settings: Settings, options_fd: int, table: str, alter: str, copy: str, replicas: str) -> list[str]:
    """The tool's command line: nothing secret on it (the password is in the option file). replicas:
    the table listing OSC_REPLICAS for the tool's lag checks (its DSN recursion method)."""
    program = find_program(OSC_TOOL)
    if program is None:
        raise OnlineSchemaChangeFailed(f"{OSC_TOOL} is not installed: install percona-toolkit")
    return [
        program,
        f"F=/dev/fd/{options_fd},h={settings.host},P={settings.port},D={settings.database},t={table}",
        "--alter",
        alter,
        "--execute",
        # The cut-over is ours (undo/online_alter.py): the copy and the tool's triggers wait for it.
        "--no-swap-tables",
        "--no-drop-triggers",
        "--no-drop-new-table",
        f"--new-table-name={copy}",
        "--alter-foreign-keys-method=none",
        "--force",  # needed with method none; the cut-over points the foreign keys at the copy
        "--no-check-alter",  # column renames are copied, and a rollback maps them back
        "--no-version-check",
        "--charset=utf8mb4",
        f"--max-load={settings.osc_max_load}",
        f"--critical-load={settings.osc_critical_load}",
        f"--chunk-time={settings.osc_chunk_time}",
        f"--max-lag={settings.osc_max_lag}",
        f"--recursion-method=dsn=D={settings.database},t={replicas}"
        if settings.osc_replicas
        else "--recursion-method=none",
        "--progress=time,5",
    ]


@contextmanager
def replica_table(control: Session, settings: Settings, name: str, options_fd: int) -> Iterator[None]:
    """The table the tool reads OSC_REPLICAS from (DSNs with the same option file), while it runs."""
    if not settings.osc_replicas:
        yield
        return
    control.run(
        f"CREATE TABLE {q(name)} (id INT AUTO_INCREMENT PRIMARY KEY, parent_id INT NULL, dsn VARCHAR(255) NOT NULL)"
    )
    try:
        for replica in settings.osc_replicas:
            host, _, port = replica.rpartition("@")[2].partition(":")
            dsn = f"h={host.strip('[]')},P={port or 3306},F=/dev/fd/{options_fd}"
            control.run(f"INSERT INTO {q(name)} (dsn) VALUES ({control.literal(dsn)})")
        yield
    finally:
        control.run(f"DROP TABLE IF EXISTS {q(name)}")


def run_tool(control: Session, settings: Settings, table: str, alter: str, names: dict[str, str], say: Say) -> None:
    """Run the tool to build the altered copy (names: online_alter.table_names); its progress, pauses
    and replica waits go to say; raise with its error."""
    fd = _memory_file(option_file_text(settings))
    try:
        with replica_table(control, settings, names["replicas"], fd):
            process = subprocess.Popen(
                tool_command(settings, fd, table, alter, names["copy"], names["replicas"]),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=child_environment(),
                pass_fds=(fd,),
                preexec_fn=dies_with(os.getpid()),
            )
            output = _follow(process, say)
    finally:
        os.close(fd)
    if process.returncode != 0:
        errors = [line for line in output if line.strip() and not line.startswith(("DROP ", "Not "))]
        failing = next((line for line in errors if "rror" in line or "DBD" in line), errors[-1] if errors else "")
        if settings.password:
            failing = failing.replace(settings.password, "***")
        raise OnlineSchemaChangeFailed(
            f"pt-online-schema-change failed on {table} (exit {process.returncode}): {' '.join(failing.split())[:300]}"
        )


def _follow(process: subprocess.Popen, say: Say) -> list[str]:
    """The tool's output lines, once it ended; those about its progress and its waits go to say."""
    output: list[str] = []
    assert process.stdout is not None
    for raw in process.stdout:
        line = raw.decode("utf-8", "replace").rstrip()
        output.append(line)
        shown = re.sub(r"^(\d{4}-\S+ |\(\d+\) )", "", line)  # its timestamp or counter
        if shown.startswith(("Copying ", "Pausing because", "Replica ")) or "Copied rows OK" in shown:
            say(shown)
    process.wait()
    return output


def probe(control: Session, table: str, alter: str, probe_table: str) -> str:
    """The cheapest algorithm the server would run `ALTER TABLE table alter` with, tried on an empty copy."""
    control.run(f"DROP TABLE IF EXISTS {q(probe_table)}")
    control.run(f"CREATE TABLE {q(probe_table)} LIKE {q(table)}")
    try:
        for algorithm, suffix in ((INSTANT, "ALGORITHM=INSTANT"), (INPLACE, "ALGORITHM=INPLACE, LOCK=NONE")):
            try:
                control.run(f"ALTER TABLE {q(probe_table)} {alter}, {suffix}")
                return algorithm
            except Exception as exc:
                code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
                if code not in ER_ALTER_OPERATION_NOT_SUPPORTED:
                    return UNKNOWN
        return COPY
    finally:
        control.run(f"DROP TABLE IF EXISTS {q(probe_table)}")


class OnlineAlterHook:
    """Attached to a migration connection: sends the ALTERs that must run online through the tool.
    With a deploy_id, each is recorded in the undo log and its original kept aside (see the module's text)."""

    def __init__(self, settings: Settings, control: Connection, deploy_id: str | None, say: Say) -> None:
        self.settings = settings
        self.control = Session.of(control)
        self.deploy_id = deploy_id
        self.say = say
        self.mode = schema_change_mode(settings)
        self.step: Script | None = None
        self._source = ""

    def attach(self, connection: Connection) -> None:
        from sqlalchemy import event

        # Attached before the deploy's capture hook: a statement run online reaches it as `DO 0`.
        event.listen(connection, "before_cursor_execute", self.before, retval=True)

    def begin_step(self, step: Script) -> None:
        self.step = step
        self._source = Path(step.path).read_text(errors="replace")

    def before(self, conn, cursor, statement: str, parameters: Any, context, executemany: bool):
        match = ALTER_TABLE.match(statement)
        if match is None or executemany or self.step is None:
            return statement, parameters
        table, alter = match.group(1), match.group(2).strip().rstrip(";")
        table = table[1:-1].replace("``", "`") if table.startswith("`") else table
        asked, allowed = bool(ONLINE_ASKED.search(self._source)), bool(OPT_IN.search(self._source))
        if table in TOOL_TABLES or allowed or (self.mode != ONLINE and not asked):
            return statement, parameters
        rows = self.control.value(
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
            f"AND TABLE_NAME = {self.control.literal(table)} AND TABLE_TYPE = 'BASE TABLE'"
        )
        if rows is None or (not asked and int(rows) <= self.settings.ddl_guard_max_rows):
            return statement, parameters
        run_id = self.deploy_id or uuid.uuid4().hex
        algorithm = probe(self.control, table, alter, holding.probe_name(run_id))
        if route(algorithm, int(rows), self.settings.ddl_guard_max_rows, self.mode, False, asked) != ONLINE:
            return statement, parameters
        Session.of(conn).commit()  # no metadata lock of ours in the tool's way
        self.run(run_id, table, alter, statement)
        return "DO 0", None

    def run(self, run_id: str, table: str, alter: str, statement: str) -> None:
        from .undo.statements import classify

        key = holding.table_key(self.control, table)
        if key is None:
            raise OnlineSchemaChangeFailed(
                f"{table} has no primary key or unique key of NOT NULL columns: {OSC_TOOL} copies by key"
            )
        revision = self.step.revision if self.step is not None else None
        renames = list(classify(statement).alter.renamed)
        entry = online_alter.start(self.control, run_id, revision, table, key, renames) if self.deploy_id else None
        names = online_alter.table_names(run_id, entry.id if entry else 0, table)
        copy, track, aside = names["copy"], names["track"], names["aside"]
        self.say(f"{table}: {alter[:80]} runs online through {OSC_TOOL}")
        try:
            run_tool(self.control, self.settings, table, alter, names, self.say)
            if entry is not None:
                online_alter.install_tracking(self.control, run_id, table, copy, track, key)
            mapping = online_alter.column_mapping(self.control, table, copy, dict(renames))
            online_alter.cut_over(self.control, run_id, table, copy, aside, mapping, key, [track] if entry else [])
        except BaseException:
            if entry is not None:
                # Undone now, so that the deploy's rollback finds nothing of it left.
                online_alter.revert(self.control, self.control, run_id, entry)
                log.save(self.control, entry, log.FAILED)
            else:
                online_alter.undo_unswapped(self.control, run_id, table, copy, [names["replicas"]])
            raise
        online_alter.restore_names(self.control, table, aside, show_create(self.control, aside) or "")
        if entry is None:
            self.control.run(f"DROP TABLE IF EXISTS {q(aside)}")
            self.say(f"{table}: swapped in; the original dropped")
        else:
            log.save(self.control, entry, log.DONE)
            self.say(f"{table}: swapped in; the original kept as {aside} until the deploy is settled")
