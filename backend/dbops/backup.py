"""Backups: a streamed, compressed dump with a manifest, its verification, and loading a dump.

dump client -> compressor -> this process (sha256, byte count) -> <file>.partial, then fsync
and rename; the same compressed stream goes through a decompressor as it is written, which
checks that it decompresses and ends with the dump's trailer. Credentials reach each client as
an option file it reads from an inherited pipe (--defaults-file=/dev/fd/N): never on a command
line, in the environment or on disk, so a killed run leaves no file holding them. A backup is good only once its manifest exists: the manifest is written after
the file passed verification, so a file without one is the remains of a failed run.

Row counts are taken with SELECT COUNT(*) in a snapshot opened just before the dump's own,
while the dump streams; a restore compares the loaded tables with them and warns on a
difference (writes between the two snapshots). Restores themselves are in restore.py.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ..config import Settings, child_environment
from . import migrate
from .connection import connect, parse_server_version, require_configured, server_info
from .errors import BackupError
from .identifiers import validate_identifier
from .schema import row_counts
from .secret_pipe import TooLong, pipe_holding
from .servers import find_program
from .tool_tables import HISTORY_TABLES, TOOL_TABLES, VERSION_TABLE

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

Progress = Callable[[int, int], None]  # (bytes dumped so far, estimated total)

CHUNK = 1 << 20
PROGRESS_INTERVAL = 0.5
COMPRESSED_SHARE = 0.5  # a compressed dump takes at most this share of data + index length
TRAILER = b"-- Dump completed"
TRAILER_WINDOW = 4096
HEADER_WINDOW = 4096  # the dump client's header comment lies in its first few lines
HOST_LINE = "-- Host: "
DATABASE_FIELD = "    Database: "
SERVER_LINE = "-- Server version"
# MariaDB announces itself as 5.5.5-<version> to clients that do not strip the prefix.
MARIADB_PREFIX = "5.5.5-"
SERVER_NAMES = {"mariadb": "MariaDB", "mysql": "MySQL"}
PARTIAL = ".partial"
MANIFEST = ".json"
DUMP_OPTIONS = (
    "--single-transaction",
    "--quick",
    "--routines",
    "--triggers",
    "--events",
    "--hex-blob",
    "--no-tablespaces",
    "--default-character-set=utf8mb4",
)
# Clients in order of preference for each server flavour.
DUMP_CLIENTS = {"mariadb": ("mariadb-dump", "mysqldump"), "mysql": ("mysqldump", "mariadb-dump")}
LOAD_CLIENTS = {"mariadb": ("mariadb", "mysql"), "mysql": ("mysql", "mariadb")}


@dataclass(frozen=True)
class Compression:
    name: str  # also the program
    suffix: str
    compress: tuple[str, ...]
    decompress: tuple[str, ...]


COMPRESSIONS = {
    "zstd": Compression("zstd", ".sql.zst", ("-q", "-1", "-T2", "-c"), ("-q", "-dc")),
    "gzip": Compression("gzip", ".sql.gz", ("-1", "-c"), ("-dc",)),
}


@dataclass(frozen=True)
class Manifest:
    file: str
    database: str
    source: str  # user@host:port, never the password
    server_flavour: str
    server_version: str
    dump_client: str
    dump_client_version: str
    revisions: tuple[str, ...]
    tables: dict[str, int]
    bytes: int
    uncompressed_bytes: int
    sha256: str
    compression: str
    started_at: str
    finished_at: str
    duration_seconds: float

    @property
    def revision(self) -> str:
        return "+".join(self.revisions) or "base"

    def to_json(self) -> str:
        """The document stored beside the backup (the only place a manifest is serialized)."""
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        return cls(**{**data, "revisions": tuple(data["revisions"])})


@dataclass(frozen=True)
class BackupResult:
    path: Path
    manifest: Manifest
    rotated: list[Path]  # older backups deleted to keep backup_keep


@dataclass(frozen=True)
class BackupEntry:
    path: Path
    manifest: Manifest | None
    when: str  # UTC ISO: the manifest's started_at, else the file's modification time
    size: int
    problem: str = ""  # why it is not good; empty when it is

    @property
    def good(self) -> bool:
        return not self.problem


def format_size(count: float) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    index = 0
    while count >= 1024 and index < len(units) - 1:
        count, index = count / 1024, index + 1
    return f"{count:.0f} {units[index]}" if index == 0 else f"{count:.1f} {units[index]}"


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + MANIFEST)


def _partial(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL)


def read_manifest(path: Path) -> Manifest:
    source = manifest_path(path)
    try:
        return Manifest.from_json(source.read_text())
    except FileNotFoundError:
        raise BackupError(f"{path.name} has no manifest {source.name}: an interrupted or failed backup") from None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise BackupError(f"manifest {source.name} is unreadable ({type(exc).__name__})") from None


# ---------------------------------------------------------------- files


def _create_private(path: Path) -> IO[bytes]:
    """A new file only the owner can read (0600 whatever the umask); fails if it exists."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(descriptor, 0o600)
    return os.fdopen(descriptor, "wb")


def _sync(out: IO[bytes]) -> None:
    out.flush()
    os.fsync(out.fileno())


def _publish(partial: Path, path: Path) -> None:
    """Rename into place, then fsync the folder so that the rename survives a crash."""
    os.replace(partial, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _file_stem(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_+-]", "_", value)


def _create_backup_file(folder: Path, stem: str, suffix: str) -> tuple[Path, IO[bytes]]:
    """An unused backup file name and its open .partial file (two backups may start in one second)."""
    for attempt in itertools.count(1):
        path = folder / f"{stem}{f'-{attempt}' if attempt > 1 else ''}{suffix}"
        if not path.exists():
            with suppress(FileExistsError):
                return path, _create_private(_partial(path))


def _write_manifest(path: Path, manifest: Manifest) -> None:
    target = manifest_path(path)
    partial = _partial(target)
    partial.unlink(missing_ok=True)
    try:
        with _create_private(partial) as out:
            out.write(manifest.to_json().encode())
            _sync(out)
        _publish(partial, target)
    finally:
        partial.unlink(missing_ok=True)


# ---------------------------------------------------------------- child processes


def _program(names: Iterable[str], purpose: str) -> str:
    names = tuple(names)
    found = find_program(*names)
    if found is None:
        raise BackupError(f"no {purpose} found: install {' or '.join(names)}")
    return found


def _client_version(program: str) -> str:
    try:
        output = subprocess.run(
            [program, "--version"], capture_output=True, text=True, timeout=30, env=child_environment()
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise BackupError(f"cannot run {program} --version: {exc}") from None
    return " ".join(output.strip().splitlines()[0].split()) if output.strip() else "unknown"


def _option_value(value: str) -> str:
    # Double-quoted and escaped; a raw newline would end the value and start another option.
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


@contextmanager
def client_options(settings: Settings, count: int = 1) -> Iterator[list[int]]:
    """count pipes, each holding a [client] option file with the credentials for one client to
    read (see defaults_file); yields their read ends, closed afterwards. Pass them to the
    client with pass_fds: the password is then never on disk, and no file outlives a kill."""
    text = (
        "\n".join(
            [
                "[client]",
                f"user={_option_value(settings.user)}",
                f"password={_option_value(settings.password)}",
                f"host={_option_value(settings.host)}",
                f"port={int(settings.port)}",
                "protocol=tcp",  # as PyMySQL: 'localhost' must not silently mean the default socket
            ]
        ).encode()
        + b"\n"
    )
    readers: list[int] = []
    try:
        for _ in range(count):
            try:
                readers.append(pipe_holding(text))
            except TooLong:
                raise BackupError(
                    "the user name and password are too long to pass to the command-line clients"
                ) from None
        yield readers
    finally:
        for reader in readers:
            os.close(reader)


def defaults_file(reader: int) -> str:
    """The clients' option naming a pipe of client_options. --defaults-file must come first; it
    makes them read no other option file, so a password in ~/.my.cnf cannot override ours."""
    return f"--defaults-file=/dev/fd/{reader}"


def _client_command(program: str, options: int, *arguments: str) -> list[str]:
    return [program, defaults_file(options), *arguments]


@dataclass
class _Child:
    name: str
    process: subprocess.Popen
    errors: IO[bytes]  # its stderr, read back when it fails


def _close_pipes(child: _Child) -> None:
    for stream in (child.process.stdin, child.process.stdout):
        if stream is not None:
            with suppress(OSError):
                stream.close()


@contextmanager
def _children() -> Iterator[list[_Child]]:
    """Children started in the block; any still running when it is left (by an error) are killed."""
    started: list[_Child] = []
    try:
        yield started
    finally:
        for child in started:
            if child.process.poll() is None:
                child.process.kill()
            _close_pipes(child)
            child.process.wait()
            child.errors.close()


def _dies_with(parent: int) -> Callable[[], None]:
    """preexec_fn: the child gets SIGKILL when this process dies (Linux PR_SET_PDEATHSIG), even by
    SIGKILL, so no dump, compressor or load outlives the migration lock."""

    def arm() -> None:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)

    return arm


def _start(
    children: list[_Child],
    command: list[str],
    stdin=subprocess.DEVNULL,
    stdout=subprocess.DEVNULL,
    pass_fds: tuple[int, ...] = (),
):
    errors = tempfile.TemporaryFile()
    try:
        process = subprocess.Popen(
            command,
            stdin=stdin,
            stdout=stdout,
            stderr=errors,
            env=child_environment(),
            preexec_fn=_dies_with(os.getpid()),
            pass_fds=pass_fds,
        )
    except OSError as exc:
        errors.close()
        raise BackupError(f"cannot run {Path(command[0]).name}: {exc.strerror}") from None
    children.append(_Child(Path(command[0]).name, process, errors))
    return process


def _first_error_line(child: _Child, secret: str) -> str:
    child.errors.seek(0)
    lines = [line.strip() for line in child.errors.read(1 << 16).decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line]
    line = next((line for line in lines if "warning" not in line.lower()), lines[0] if lines else "no message")
    return (line.replace(secret, "***") if secret else line)[:300]


def _finish(children: list[_Child], failure: str, secret: str = "") -> None:
    """Wait for every child; when one failed, raise BackupError quoting its first stderr line.

    A child killed by SIGPIPE only lost its reader: the one that failed on its own is named.
    """
    for child in children:
        _close_pipes(child)
    for child in children:
        child.process.wait()
    failed = [child for child in children if child.process.returncode != 0]
    if failed:
        child = next((child for child in failed if child.process.returncode != -signal.SIGPIPE), failed[0])
        raise BackupError(
            f"{failure}: {child.name} exited with code {child.process.returncode}: {_first_error_line(child, secret)}"
        )


def _decompress_command(compression: Compression, path: Path | None = None) -> list[str]:
    """The decompressor reading path, or its standard input without one."""
    return [_program([compression.name], "decompressor"), *compression.decompress, *([str(path)] if path else [])]


# ---------------------------------------------------------------- reading dumps


@dataclass
class _DumpScan:
    """One pass over a decompressed dump, in large chunks: its size, its first and its last bytes."""

    bytes: int = 0
    head: bytes = b""
    tail: bytes = b""

    def feed(self, chunk: bytes) -> None:
        if len(self.head) < HEADER_WINDOW:
            self.head += chunk[: HEADER_WINDOW - len(self.head)]
        self.bytes += len(chunk)
        self.tail = (self.tail + chunk[-TRAILER_WINDOW:])[-TRAILER_WINDOW:]


def _scan(stream: IO[bytes], scan: _DumpScan) -> None:
    while chunk := stream.read(CHUNK):
        scan.feed(chunk)


def _check_digest(path: Path, size: int, digest: str) -> None:
    try:
        actual = path.stat().st_size
    except FileNotFoundError:
        raise BackupError(f"backup file {path.name} is missing") from None
    if actual != size:
        state = "truncated" if actual < size else "longer than recorded"
        raise BackupError(f"backup {path.name} is {state}: {actual} bytes, its manifest says {size}")
    with path.open("rb") as source:
        if hashlib.file_digest(source, "sha256").hexdigest() != digest:
            raise BackupError(f"backup {path.name} is corrupt: digest mismatch, its sha256 differs from the manifest's")


def _check_trailer(path: Path, scan: _DumpScan) -> None:
    if TRAILER not in scan.tail:
        raise BackupError(f"backup {path.name} is incomplete: the dump does not end with '{TRAILER.decode()}'")


def _dump_header(scan: _DumpScan) -> tuple[str | None, str | None]:
    """(database, server version) as the dump client wrote them in its header; None when absent.

    mariadb-dump and mysqldump both begin with "-- Host: H    Database: NAME" (the name as
    given, in UTF-8) and "-- Server version<TAB>V".
    """
    database = server = None
    for line in scan.head.decode("utf-8", "replace").splitlines():
        if database is None and line.startswith(HOST_LINE) and DATABASE_FIELD in line:
            database = line.split(DATABASE_FIELD, 1)[1]
        elif server is None and line.startswith(SERVER_LINE):
            server = line[len(SERVER_LINE) :].strip().removeprefix(MARIADB_PREFIX)
    return database, server


def _check_header(path: Path, scan: _DumpScan, manifest: Manifest) -> None:
    """The dump's own header names the manifest's database and server: a manifest cannot be swapped."""
    database, server = _dump_header(scan)
    if database is None or server is None:
        raise BackupError(f"backup {path.name} has no dump header naming its database and server")
    if database != manifest.database:
        raise BackupError(
            f"backup {path.name} is a dump of database {database!r}, its manifest says "
            f"{manifest.database!r}: the manifest belongs to another backup or was edited"
        )
    dumped = parse_server_version(server)
    if (dumped.flavour, dumped.version) != (manifest.server_flavour, manifest.server_version):
        claimed = f"{SERVER_NAMES.get(manifest.server_flavour, manifest.server_flavour)} {manifest.server_version}"
        raise BackupError(
            f"backup {path.name} was dumped from {dumped}, its manifest says {claimed}: "
            "the manifest belongs to another backup or was edited"
        )


def _check_file(path: Path, size: int, digest: str, compression: Compression) -> _DumpScan:
    """Size, sha256, a complete decompression and the dump's trailer; return what the pass read."""
    _check_digest(path, size, digest)
    scan = _DumpScan()
    with _children() as children:
        process = _start(children, _decompress_command(compression, path), stdout=subprocess.PIPE)
        _scan(process.stdout, scan)
        _finish(children, f"backup {path.name} is corrupt")
    _check_trailer(path, scan)
    return scan


def verify_backup(path: str | Path, expected_database: str | None = None) -> Manifest:
    """Check a backup without touching any database; return its manifest or raise BackupError.

    Manifest present and readable, of expected_database when given, file size and sha256 as
    recorded, complete decompression, the dump client's closing line, and its header naming
    the manifest's database and server.
    """
    path = Path(path).absolute()
    manifest = read_manifest(path)
    if expected_database is not None and manifest.database != expected_database:
        raise BackupError(
            f"{path.name} is a backup of database {manifest.database!r}, not {expected_database!r}: "
            "restore it --into a database name explicitly"
        )
    compression = COMPRESSIONS.get(manifest.compression)
    if compression is None:
        raise BackupError(f"manifest of {path.name} names an unknown compression {manifest.compression!r}")
    scan = _check_file(path, manifest.bytes, manifest.sha256, compression)
    if scan.bytes != manifest.uncompressed_bytes:
        raise BackupError(
            f"backup {path.name} decompresses to {scan.bytes} bytes, its manifest says {manifest.uncompressed_bytes}"
        )
    _check_header(path, scan, manifest)
    return manifest


# ---------------------------------------------------------------- backup


def _base_tables(connection: Connection, database: str) -> set[str]:
    from sqlalchemy import text

    rows = connection.execute(
        text("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = :db AND TABLE_TYPE = 'BASE TABLE'"),
        {"db": database},
    )
    return {row[0] for row in rows}


def data_and_index_bytes(connection: Connection, database: str) -> tuple[int, int]:
    from sqlalchemy import text

    data, index = connection.execute(
        text(
            "SELECT COALESCE(SUM(DATA_LENGTH), 0), COALESCE(SUM(INDEX_LENGTH), 0) "
            "FROM information_schema.TABLES WHERE TABLE_SCHEMA = :db"
        ),
        {"db": database},
    ).one()
    return int(data), int(index)


def _bytes_written(pid: int) -> int | None:
    """What a process has written so far (Linux); None when unknown."""
    try:
        with open(f"/proc/{pid}/io") as io:
            return next(int(line.split()[1]) for line in io if line.startswith("wchar:"))
    except (OSError, StopIteration, ValueError):
        return None


def _report(progress: Progress, pid: int, estimate: int) -> None:
    written = _bytes_written(pid)
    if written is not None:
        progress(written, estimate)


def _stream_dump(
    settings: Settings,
    program: str,
    arguments: list[str],
    compression: Compression,
    out: IO[bytes],
    progress: Progress | None,
    estimate: int,
) -> tuple[int, str, _DumpScan]:
    """Run dump | compressor and copy the compressed stream to out; return its size, sha256 and scan.

    The stream also goes through a decompressor as it is written, so that its check (it
    decompresses, its size, its trailer) costs no time after the dump: the file is then
    known good once its digest on disk matches.
    """
    digest, size, shown, scan = hashlib.sha256(), 0, 0.0, _DumpScan()
    with client_options(settings) as [options], _children() as children:
        dump = _start(
            children, _client_command(program, options, *arguments), stdout=subprocess.PIPE, pass_fds=(options,)
        )
        compressor = _start(
            children,
            [_program([compression.name], "compressor"), *compression.compress],
            stdin=dump.stdout,
            stdout=subprocess.PIPE,
        )
        dump.stdout.close()  # the compressor owns the pipe: the dump sees it break if the compressor dies
        checker = _start(children, _decompress_command(compression), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        reader = threading.Thread(target=_scan, args=(checker.stdout, scan), daemon=True)
        reader.start()
        checking = True
        try:
            while chunk := compressor.stdout.read1(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                if checking:
                    try:
                        checker.stdin.write(chunk)
                    except BrokenPipeError:
                        checking = False  # the decompressor failed: _finish quotes its error
                if progress is not None and time.monotonic() - shown >= PROGRESS_INTERVAL:
                    _report(progress, dump.pid, estimate)
                    shown = time.monotonic()
            if progress is not None:
                _report(progress, dump.pid, estimate)  # an exited, unreaped child still has its counters
        finally:
            # Also on an error: the decompressor sees the end of its input and its reader ends
            # before the pipes are closed under it.
            with suppress(BrokenPipeError):
                checker.stdin.close()
            reader.join()
        _finish(children, f"backup of {settings.database!r} failed", settings.password)
    _sync(out)
    return size, digest.hexdigest(), scan


def _prepare_folder(folder: Path) -> None:
    """The backup folder, created if missing; refused unless this process may write in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackupError(f"cannot create the backup folder {folder}: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        reason = "a read-only file system" if os.statvfs(folder).f_flag & os.ST_RDONLY else "permission denied"
        raise BackupError(f"cannot write backups to {folder}: {reason}")


def backup(settings: Settings, progress: Progress | None = None) -> BackupResult:
    """Dump the configured database into backup_dir, verify it, write its manifest, rotate old ones.

    progress, when given, is called about twice a second with (bytes dumped, estimated total).
    """
    require_configured(settings)
    database = validate_identifier(settings.database)
    started, clock = datetime.now(UTC), time.monotonic()
    folder = settings.backup_dir
    with connect(settings) as connection, ThreadPoolExecutor(max_workers=1) as pool:
        _prepare_folder(folder)
        info = server_info(connection)
        revisions = migrate.current_heads(connection)
        data_bytes, index_bytes = data_and_index_bytes(connection, database)
        # Rows are counted in a snapshot taken just before the dump's own (writes in between may
        # differ). Counting a large table takes a while: it runs while the dump streams.
        connection.commit()
        connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        connection.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        every_table = _base_tables(connection, database)
        # The tool's history and holding tables are left out: a restore keeps the former and
        # must not bring back the holding tables of deploys settled since.
        left_out = {name for name in every_table if name in TOOL_TABLES and name != VERSION_TABLE}
        tables = every_table - left_out
        counting = pool.submit(row_counts, connection, tables)
        needed, free = int((data_bytes + index_bytes) * COMPRESSED_SHARE), shutil.disk_usage(folder).free
        if free < needed:
            raise BackupError(
                f"not enough disk space in {folder}: {format_size(free)} free, "
                f"a backup of {database!r} needs about {format_size(needed)}"
            )
        program = _program(DUMP_CLIENTS[info.flavour], "dump client")
        client_version = _client_version(program)
        arguments = list(DUMP_OPTIONS)
        if "mariadb" not in client_version.lower():
            arguments.append("--set-gtid-purged=OFF")  # Oracle's mysqldump: a restore target has GTIDs of its own
        arguments += [f"--ignore-table={database}.{table}" for table in sorted({*HISTORY_TABLES, *left_out})]
        arguments.append(database)
        compression = COMPRESSIONS["zstd" if find_program("zstd") else "gzip"]
        revision = "+".join(revisions) or "base"
        try:
            path, out = _create_backup_file(
                folder, f"{_file_stem(database)}-{started:%Y%m%dT%H%M%SZ}-{_file_stem(revision)}", compression.suffix
            )
        except OSError as exc:
            raise BackupError(f"cannot write backups to {folder}: {exc.strerror or exc}") from None
        try:
            with out:
                size, digest, scan = _stream_dump(settings, program, arguments, compression, out, progress, data_bytes)
            counts = counting.result()
            connection.rollback()  # the counting snapshot is no longer needed
            _publish(_partial(path), path)
            _check_digest(path, size, digest)
            _check_trailer(path, scan)
            manifest = Manifest(
                file=path.name,
                database=database,
                source=f"{settings.user}@{settings.address}",
                server_flavour=info.flavour,
                server_version=info.version,
                dump_client=Path(program).name,
                dump_client_version=client_version,
                revisions=tuple(revisions),
                tables=counts,
                bytes=size,
                uncompressed_bytes=scan.bytes,
                sha256=digest,
                compression=compression.name,
                started_at=started.isoformat(),
                finished_at=datetime.now(UTC).isoformat(),
                duration_seconds=round(time.monotonic() - clock, 3),
            )
            _write_manifest(path, manifest)
        except BaseException as exc:
            # A file without a manifest is never good: leave nothing behind.
            for leftover in (_partial(path), path, manifest_path(path)):
                leftover.unlink(missing_ok=True)
            if isinstance(exc, OSError):  # writing the file or its manifest: the folder is full, read-only, gone
                raise BackupError(f"backup of {database!r} failed writing to {folder}: {exc.strerror or exc}") from None
            raise
    return BackupResult(path, manifest, _rotate(settings))


def list_backups(settings: Settings) -> list[BackupEntry]:
    """Backups of the configured database in backup_dir, newest first, good or not.

    Good means: a readable manifest and a file of the recorded size (db.restore checks more).
    Files without a manifest are listed when their name is of this database.
    """
    folder = settings.backup_dir
    if not folder.is_dir():
        return []
    suffixes = tuple(compression.suffix for compression in COMPRESSIONS.values())
    named = re.compile(rf"{re.escape(_file_stem(settings.database))}-\d{{8}}T\d{{6}}Z-")
    candidates = {folder / (name[: -len(MANIFEST)] if name.endswith(MANIFEST) else name) for name in os.listdir(folder)}
    entries = []
    for path in candidates:
        if not path.name.endswith(suffixes):
            continue
        try:
            manifest, problem = read_manifest(path), ""
        except BackupError as exc:
            manifest, problem = None, str(exc)
        ours = manifest.database == settings.database if manifest else named.match(path.name)
        if not ours:
            continue
        size = path.stat().st_size if path.exists() else 0
        if manifest and not path.exists():
            problem = "the backup file is missing"
        elif manifest and size != manifest.bytes:
            problem = f"{size} bytes, its manifest says {manifest.bytes}"
        when = (
            manifest.started_at
            if manifest
            else datetime.fromtimestamp(
                (path if path.exists() else manifest_path(path)).stat().st_mtime, UTC
            ).isoformat()
        )
        entries.append(BackupEntry(path, manifest, when, size, problem))
    return sorted(entries, key=lambda entry: entry.when, reverse=True)


def _rotate(settings: Settings) -> list[Path]:
    """Delete the good backups of this database beyond the newest backup_keep; return them."""
    removed = []
    for entry in [entry for entry in list_backups(settings) if entry.good][settings.backup_keep :]:
        entry.path.unlink(missing_ok=True)
        manifest_path(entry.path).unlink(missing_ok=True)
        removed.append(entry.path)
    return removed


# ---------------------------------------------------------------- loading


def load_dump(settings: Settings, path: Path, compression_name: str) -> None:
    """Feed the whole dump from the decompressor straight to the command-line client (not through Python)."""
    with connect(settings) as connection:
        flavour = server_info(connection).flavour
    program = _program(LOAD_CLIENTS[flavour], "mysql client")
    with client_options(settings) as [options], _children() as children:
        source = _start(children, _decompress_command(COMPRESSIONS[compression_name], path), stdout=subprocess.PIPE)
        command = _client_command(
            program,
            options,
            "--default-character-set=utf8mb4",
            "--init-command=SET FOREIGN_KEY_CHECKS=0",
            settings.database,
        )
        _start(children, command, stdin=source.stdout, pass_fds=(options,))
        source.stdout.close()
        _finish(children, f"restore of {settings.database!r} failed", settings.password)
