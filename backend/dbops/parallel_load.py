"""Loading a dump through several sessions at once: the data statements of each table are spread
over data sessions, everything else runs in order in one control session.

A restore through one `mariadb` client is the server replaying the dump in one session (one
core). Here the decompressed dump passes through this process once: each INSERT statement
(the dump writes one per ~1 MB of rows, a row per line, newlines inside values escaped, so a
statement ends at the first ";\n") goes to whichever data session has the least queued; the
rest (session settings, DROP/CREATE TABLE, views, triggers, routines) goes to the control
session, a `mariadb`/`mysql` client, in order. The data sessions are connections of this
process that send each statement as it is: a client would scan every byte of it again.

Order is kept by markers: the control client prints `SELECT 'marker'` when it reaches it, and a
data session's thread sets an event, so a table's rows are sent only once the control session
has created the table, and anything but table structure (a trigger, a view, the dump's closing
settings) waits until every data session has loaded what it was given. Secondary and foreign
keys are taken out of each CREATE TABLE and added once the rows are in (one sort per key). LOCK
TABLES and DISABLE/ENABLE KEYS lines are left out: they would serialize the sessions and do
nothing for InnoDB. Every session runs with the dump's own header settings (unique_checks=0,
foreign_key_checks=0, its time zone and SQL mode).

Any dump of mariadb-dump or mysqldump loads this way, old backups included; a text it does not
recognise simply stays in the control session.
"""

from __future__ import annotations

import io
import queue
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from typing import IO

from ..config import Settings
from .clients import Child, child_processes, client_command, client_options, finish_children, start_child
from .errors import BackupError

Progress = Callable[[int, int], None]  # (dump bytes loaded so far, the dump's size)

READ_SIZE = 4 << 20
QUEUE_DEPTH = 2  # statements queued per data session (about 1 MB each)
PROGRESS_INTERVAL = 0.5
INIT_COMMAND = "--init-command=SET FOREIGN_KEY_CHECKS=0, UNIQUE_CHECKS=0"

DATA_START = b"INSERT INTO "
STATEMENT_END = b";\n"
# Control lines that only shape tables: they may run while data sessions still load other tables.
_STRUCTURE = re.compile(
    rb"(--|$|DROP TABLE IF EXISTS |CREATE TABLE |/\*!40101 SET @saved_cs_client|/\*!40101 SET character_set_client)"
)
# Lines left out: table locks and key toggles (see the module's docstring).
_LEFT_OUT = re.compile(
    rb"(LOCK TABLES `[^\n]*` WRITE;|UNLOCK TABLES;|/\*!40000 ALTER TABLE `[^\n]*` (DIS|EN)ABLE KEYS \*/;)\s*$"
)
# The dump's header settings, given to every data session too (not the per-table character set juggling).
_SESSION_SETTING = re.compile(rb"(/\*!\d+ SET (?!@saved_cs_client|character_set_client)|SET (?!@saved))")
_DELIMITER = re.compile(rb"DELIMITER\s+(\S+)\s*$", re.IGNORECASE)
_CREATE_TABLE = re.compile(rb"CREATE TABLE (`(?:[^`]|``)+`) \($")
# Secondary keys and foreign keys of a CREATE TABLE, added once the table's rows are in (one sort
# per key instead of a B-tree insert per row; the foreign keys with them, since InnoDB would
# otherwise create an index of its own for each).
_DEFERRED_KEY = re.compile(rb"\s+(KEY `(?:[^`]|``)+` \(.*\)(?: USING \w+)?(?: COMMENT '.*')?),?$")
_DEFERRED_FOREIGN_KEY = re.compile(rb"\s+(CONSTRAINT `(?:[^`]|``)+` FOREIGN KEY .*?),?$")


class _Session:
    """One client process: statements queued to a writer thread, markers read back from its output."""

    def __init__(self, children: list[Child], command: list[str], options: int, depth: int) -> None:
        self.process = start_child(
            children, command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(options,)
        )
        self.queue: queue.Queue[bytes | None] = queue.Queue(depth)
        self.queued = 0  # bytes queued and not yet written
        self.statements = 0  # data statements given to it
        self.failed = False
        self.writer = threading.Thread(target=self._write, daemon=True)
        self.writer.start()

    def _write(self) -> None:
        stdin: IO[bytes] = self.process.stdin
        while (item := self.queue.get()) is not None:
            if not self.failed:
                try:
                    stdin.write(item)
                    stdin.flush()
                except (BrokenPipeError, ValueError, OSError):
                    self.failed = True  # the client died: finish_children quotes its error
            self.queued -= len(item)
        with suppress(OSError, ValueError):
            stdin.close()

    def send(self, data: bytes) -> None:
        if data:
            self.queued += len(data)
            self.queue.put(data)

    def send_settings(self, lines: list[bytes]) -> None:
        self.send(b"".join(lines))

    def sync(self, marker: bytes) -> bytes:
        """Send a marker: wait() then waits until the client has run everything before it."""
        self.send(b"SELECT '" + marker + b"';\n")
        return marker

    def wait(self, marker: bytes) -> bool:
        """Whether the client printed the marker (False: it ended first, having failed)."""
        stdout: IO[bytes] = self.process.stdout
        while line := stdout.readline():
            if line.rstrip(b"\n") == marker:
                return True
        return False

    def close(self) -> None:
        self.queue.put(None)
        self.writer.join()


class _DriverSession:
    """A data session on a connection of this process: statements sent as they are, run by a
    thread. The text is not parsed again by a client (for a dump's INSERT statements a
    `mariadb` client spends about a tenth of the server's time scanning them: CPU a two-core
    machine's server needs)."""

    def __init__(self, settings: Settings, depth: int) -> None:
        from .connection import make_engine

        self.raw = make_engine(settings).raw_connection()
        connection = self.raw.driver_connection
        assert connection is not None  # a fresh connection of the pool
        self.connection = connection
        self.connection.autocommit(True)
        self.queue: queue.Queue[bytes | threading.Event | None] = queue.Queue(depth)
        self.queued = 0
        self.statements = 0
        self.failed = False
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if isinstance(item, threading.Event):
                item.set()
                continue
            if not self.failed:
                try:
                    self.connection.query(item)
                except Exception as exc:  # the server's error, quoted by load_parallel
                    self.failed, self.error = True, exc
            self.queued -= len(item)

    def send(self, data: bytes) -> None:
        statement = data.strip().rstrip(b";")
        if statement:
            self.queued += len(statement)
            self.queue.put(statement)

    def send_settings(self, lines: list[bytes]) -> None:
        for line in lines:
            self.send(line)

    def sync(self, marker: bytes) -> threading.Event:
        done = threading.Event()
        self.queue.put(done)
        return done

    def wait(self, marker: threading.Event) -> bool:
        marker.wait()
        return not self.failed

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        with suppress(Exception):
            self.raw.close()


class _Loader:
    def __init__(self, control: _Session, data: list[_DriverSession], progress: Progress | None, total: int) -> None:
        self.control, self.data = control, data
        self.progress, self.total = progress, total
        self.pending: list[bytes] = []  # control text not yet sent
        self.prelude: list[bytes] = []  # the dump's session settings, for data sessions
        self.data_started = False
        self.control_unsynced = False  # control text sent since the control session last confirmed
        self.data_unsynced = False  # rows sent since every data session last confirmed
        self.delimiter = b";"
        self.in_statement = False  # inside a multi-line control statement
        self.statement_is_structure = True
        self.markers = 0
        self.loaded, self.shown = 0, 0.0
        self.tail = b""
        self.create: list[bytes] | None = None  # the lines of a CREATE TABLE being read
        self.deferred: list[tuple[bytes, list[bytes], list[bytes]]] = []  # (table, keys, foreign keys)
        self.rows_sent: dict[bytes, int] = {}  # data bytes sent per table, to give the largest its own session

    def _marker(self) -> bytes:
        self.markers += 1
        return f"dbops-load-{uuid.uuid4().hex[:8]}-{self.markers}".encode()

    def _flush_control(self) -> None:
        if self.pending:
            self.control.send(b"".join(self.pending))
            self.pending = []
            self.control_unsynced = True

    def _sync(self, sessions: Sequence[_Session | _DriverSession]) -> None:
        markers = [session.sync(self._marker()) for session in sessions]
        for session, marker in zip(sessions, markers, strict=True):
            if not session.wait(marker):  # type: ignore[arg-type]  # each session takes its own marker
                raise _SessionEnded()

    def _defer_keys(self, lines: list[bytes]) -> list[bytes]:
        """The CREATE TABLE without its secondary and foreign keys, which are kept for later."""
        name = _CREATE_TABLE.match(lines[0].rstrip(b"\r\n"))
        if name is None or len(lines) < 3 or not lines[-1].startswith(b")"):
            return lines  # not the dump's usual layout (partitions, say): loaded as it is
        kept, keys, foreign = [], [], []
        for line in lines[1:-1]:
            body = line.rstrip(b"\r\n")
            if key := _DEFERRED_KEY.fullmatch(body):
                keys.append(key.group(1))
            elif foreign_key := _DEFERRED_FOREIGN_KEY.fullmatch(body):
                foreign.append(foreign_key.group(1))
            else:
                kept.append(body.rstrip(b","))
        if not keys and not foreign:
            return lines
        self.deferred.append((name.group(1), keys, foreign))
        return [lines[0], b",\n".join(kept) + b"\n", lines[-1]]

    def _add_deferred_keys(self) -> None:
        """Every data session idle: the deferred keys, the largest tables first over the data
        sessions, then the foreign keys (with foreign_key_checks=0 a change of definition only)."""
        if not self.deferred:
            return
        deferred = sorted(self.deferred, key=lambda item: -self.rows_sent.get(item[0], 0))
        self.deferred = []
        busy = [0] * len(self.data)
        for table, keys, _ in deferred:
            if keys:
                index = busy.index(min(busy))
                busy[index] += self.rows_sent.get(table, 0) + 1
                self.data[index].send(
                    b"ALTER TABLE " + table + b" " + b", ".join(b"ADD " + key for key in keys) + b";\n"
                )
        self._sync(self.data)
        for table, _, foreign in deferred:
            if foreign:
                self.control.send(
                    b"ALTER TABLE " + table + b" " + b", ".join(b"ADD " + key for key in foreign) + b";\n"
                )
        self.control_unsynced = True

    def control_line(self, line: bytes) -> None:
        stripped = line.rstrip(b"\r\n")
        if self.create is not None:
            self.create.append(line)
            if stripped.endswith(b";"):
                lines, self.create = self.create, None
                self.pending.extend(self._defer_keys(lines))
                self.in_statement = False
            return
        if not self.in_statement and _CREATE_TABLE.match(stripped) and self.delimiter == b";":
            self.statement_is_structure = True
            self.create = [line]
            self.in_statement = True
            return
        if not self.in_statement:
            if _LEFT_OUT.match(stripped):
                return
            delimiter = _DELIMITER.match(stripped)
            self.statement_is_structure = bool(_STRUCTURE.match(stripped)) and delimiter is None
            if not self.data_started and _SESSION_SETTING.match(stripped) and stripped.endswith(b";"):
                self.prelude.append(line)
            if delimiter is not None:
                self.delimiter = delimiter.group(1)
        if self.data_unsynced and not self.statement_is_structure:
            # A trigger, a view or the closing settings: every row (and key) must be in first.
            self._flush_control()
            self._sync([self.control, *self.data])
            self._add_deferred_keys()
            self.data_unsynced = False
        self.pending.append(line)
        comment = not self.in_statement and (stripped.startswith(b"--") or not stripped.strip())
        if not comment and _DELIMITER.match(stripped) is None:
            self.in_statement = not stripped.rstrip().endswith(self.delimiter)

    def can_start_data(self) -> bool:
        return not self.in_statement and self.delimiter == b";"

    def data_statement(self, statement: bytes) -> None:
        if self.control.failed or any(session.failed for session in self.data):
            raise _SessionEnded()
        if not self.data_started:
            self.data_started = True
            for session in self.data:
                session.send_settings(self.prelude)
        self._flush_control()
        if self.control_unsynced:
            self._sync([self.control])  # the table exists before its rows arrive
            self.control_unsynced = False
        table = statement[len(DATA_START) : statement.find(b" ", len(DATA_START))]
        self.rows_sent[table] = self.rows_sent.get(table, 0) + len(statement)
        chosen = min(self.data, key=lambda session: session.queued)
        chosen.send(statement)
        chosen.statements += 1
        self.data_unsynced = True

    def advance(self, count: int) -> None:
        self.loaded += count
        if self.progress is not None and time.monotonic() - self.shown >= PROGRESS_INTERVAL:
            self.progress(self.loaded, self.total)
            self.shown = time.monotonic()

    def run(self, source: io.BufferedReader) -> None:
        buffer = bytearray()
        position = 0
        ended = False
        while True:
            if position > READ_SIZE:
                del buffer[:position]
                position = 0
            if not ended and len(buffer) - position < READ_SIZE:
                chunk = source.read1(READ_SIZE)
                if chunk:
                    buffer += chunk
                else:
                    ended = True
            if position >= len(buffer):
                if ended:
                    break
                continue
            progressed = self._consume(buffer, position, ended)
            if progressed == position and not ended:
                chunk = source.read1(READ_SIZE)  # a statement longer than what is buffered
                if chunk:
                    buffer += chunk
                else:
                    ended = True
                continue
            if progressed == position and ended:
                # Text without a final newline: it is control text.
                self.control_line(bytes(buffer[position:]))
                self.advance(len(buffer) - position)
                self.tail = (self.tail + bytes(buffer[position:]))[-4096:]
                break
            self.tail = (self.tail + bytes(buffer[max(position, progressed - 4096) : progressed]))[-4096:]
            self.advance(progressed - position)
            position = progressed
        if self.data_unsynced or self.deferred:  # a dump without closing settings
            self._flush_control()
            self._sync([self.control, *self.data])
            self._add_deferred_keys()
        self._flush_control()
        if self.progress is not None:
            self.progress(self.loaded, self.total)

    def _consume(self, buffer: bytearray, position: int, ended: bool) -> int:
        """Dispatch the whole statements and lines buffered from position; return where they end."""
        while position < len(buffer):
            if buffer.startswith(DATA_START, position) and self.can_start_data():
                end = buffer.find(STATEMENT_END, position)
                if end < 0:
                    return position
                self.data_statement(bytes(buffer[position : end + len(STATEMENT_END)]))
                position = end + len(STATEMENT_END)
                continue
            if len(buffer) - position < len(DATA_START) and not ended:
                return position  # too short to tell whether a data statement starts here
            end = buffer.find(b"\n", position)
            if end < 0:
                return position
            self.control_line(bytes(buffer[position : end + 1]))
            position = end + 1
        return position


@dataclass(frozen=True)
class Loaded:
    tail: bytes  # the dump's last bytes (its trailer)
    statements: tuple[int, ...]  # data statements each data session ran


class _SessionEnded(Exception):
    """A client ended before printing a marker: it failed, and finish_children says how."""


def load_parallel(
    settings: Settings,
    program: str,
    decompress: list[str],
    sessions: int,
    progress: Progress | None = None,
    total: int = 0,
) -> Loaded:
    """Load the dump the decompress command writes into settings.database through one control
    session (a `program` client) and `sessions` data sessions (connections of this process)."""
    failure = f"restore of {settings.database!r} failed"
    with ExitStack() as stack:
        [options] = stack.enter_context(client_options(settings))
        children = stack.enter_context(child_processes())
        source = start_child(children, decompress, stdout=subprocess.PIPE)
        command = client_command(
            program,
            options,
            "--default-character-set=utf8mb4",
            "--batch",
            "--skip-column-names",
            "--unbuffered",
            INIT_COMMAND,
            settings.database,
        )
        control = _Session(children, command, options, QUEUE_DEPTH)
        data: list[_DriverSession] = []
        try:
            for _ in range(sessions):
                data.append(_DriverSession(settings, QUEUE_DEPTH))
                data[-1].send(b"SET SESSION FOREIGN_KEY_CHECKS = 0, UNIQUE_CHECKS = 0")
            loader = _Loader(control, data, progress, total)
            try:
                loader.run(source.stdout)
            except _SessionEnded:
                pass  # the session's error is quoted below
        finally:
            control.close()
            for session in data:
                session.close()
        failed = next((session.error for session in data if session.error is not None), None)
        if failed is not None:
            message = " ".join(str(failed).split())[:300]
            raise BackupError(f"{failure}: {message}")
        # The markers' answers are read; what is left of the client's output is nothing.
        with suppress(OSError, ValueError):
            control.process.stdout.read()
        finish_children(children, failure, settings.password)
        return Loaded(loader.tail, tuple(session.statements for session in data))
