"""Taking a backup: a streamed, compressed dump of the configured database with its manifest.

dump client -> zstd -T2 -> <file>.partial, as in the raw pipe, the file hashed and flushed to
disk while it grows, then renamed. Both exit statuses say the dump is whole (the dump client
exits 0 only once it has written its trailer) and zstd's closing line gives the exact byte
counts in and out; the full check (decompressing it, the dump's header and trailer) is
`db.backups --verify`'s, and runs before every restore. Without zstd: dump client -> gzip ->
this process (sha256, byte count) -> <file>.partial, the same stream going through a
decompressor that checks it as it is written. Files, manifests and rotation are in
backup_files.py, verification in backup_verify.py, the clients in clients.py.

Row counts are taken with SELECT COUNT(*) in a snapshot opened just before the dump's own,
while the dump streams, for tables of up to COUNT_LIMIT rows (larger ones are recorded as not
counted: see _small_tables); a restore compares the loaded tables with them and warns on a
difference (writes between the two snapshots). Restores themselves are in restore.py.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ..config import Settings
from .backup_files import (
    COMPRESSIONS,
    Compression,
    Manifest,
    create_backup_file,
    decompress_command,
    file_stem,
    format_size,
    manifest_path,
    partial_path,
    publish,
    rotate,
    sync_file,
    write_manifest,
)
from .backup_verify import CHUNK, DumpScan, check_size, check_trailer, scan_stream
from .clients import (
    Child,
    child_processes,
    client_command,
    client_options,
    find_client,
    finish_children,
    program_version,
    start_child,
    widen_pipe,
)
from .connection import connect_session, parse_server_version
from .errors import BackupError
from .identifiers import validate_identifier
from .schema import row_counts
from .servers import find_program
from .tool_tables import HISTORY_TABLES, TOOL_TABLES, VERSION_TABLE

if TYPE_CHECKING:
    from .undo.session import Session

Progress = Callable[[int, int], None]  # (bytes dumped so far, estimated total)

PROGRESS_INTERVAL = 0.5
# zstd -T2 writes the file (flags in backup_files.COMPRESSIONS). pzstd, whose independent frames
# would let the trailer be read from the last ones, keeps the dump waiting more: 0.3-0.8 s more
# per 4M-message dump here.
SYNC_EVERY = 64 << 20  # bytes of backup file written between two fdatasync calls while the dump runs
FULL_DISK_BYTES = 4 << 20  # free space under which a failed compressor is taken to have run out of room
COUNT_LIMIT = 200_000  # rows (the server's estimate) up to which a table is counted for the manifest
COMPRESSED_SHARE = 0.5  # a compressed dump takes at most this share of data + index length
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


@dataclass(frozen=True)
class BackupResult:
    path: Path
    manifest: Manifest
    rotated: list[Path]  # older backups deleted to keep backup_keep

    def lines(self) -> list[str]:
        """What was written (size, tables, revision, time), then the old backups removed."""
        manifest = self.manifest
        return [
            f"✅ {self.path}: {format_size(manifest.bytes)}, {len(manifest.tables)} table(s) "
            f"at {manifest.revision}, {manifest.duration_seconds:.1f} s",
            *(f"   removed old backup {path.name}" for path in self.rotated),
        ]


def _base_tables(session: Session) -> set[str]:
    return {
        name
        for (name,) in session.rows(
            "SELECT TABLE_NAME FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE'"
        )
    }


def _revisions(session: Session) -> tuple[str, ...]:
    """What alembic_version holds, read in the backup's snapshot (what alembic's MigrationContext
    reads, without importing alembic's runtime: a good part of a second on a busy machine)."""
    return tuple(row[0] for row in session.rows(f"SELECT version_num FROM {VERSION_TABLE} ORDER BY 1"))


def _small_tables(session: Session, tables: set[str]) -> set[str]:
    """The tables whose rows are counted exactly for the manifest: those of at most COUNT_LIMIT rows
    by the server's estimate. A larger table's count would cost a scan of it beside the dump
    (a second of server time per few million rows on two cores) for a comparison that only
    ever shows writes made between two snapshots: its count is left out (null)."""
    estimates = dict(
        session.rows("SELECT TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()")
    )
    return {name for name in tables if (estimates.get(name) or 0) <= COUNT_LIMIT}


def data_and_index_bytes(session: Session) -> tuple[int, int]:
    """The data and index length of the session's database, by the server's estimate."""
    data, index = session.rows(
        "SELECT COALESCE(SUM(DATA_LENGTH), 0), COALESCE(SUM(INDEX_LENGTH), 0) "
        "FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
    )[0]
    return int(data), int(index)


def _bytes_written(pid: int) -> int | None:
    """What a process has written so far (Linux); None when unknown."""
    try:
        with open(f"/proc/{pid}/io") as io:
            return next(int(line.split()[1]) for line in io if line.startswith("wchar:"))
    except (OSError, StopIteration, ValueError):
        return None


# zstd 1.5 -vv: "(N B => M B, /*stdout*\\)"; zstd 1.4: "(N => M bytes, /*stdout*\\)"; -v rounds in 1.5.
_ZSTD_COUNTS = re.compile(r"\(\s*(\d+)(?: B)? =>\s*(\d+) (?:B|bytes),")


def _compressor_counts(compressor: Child) -> tuple[int, int]:
    """(bytes read, bytes written), from zstd's closing line."""
    compressor.errors.seek(0)
    text = compressor.errors.read().decode("utf-8", "replace").replace("\r", "\n")
    found = _ZSTD_COUNTS.findall(text)
    if not found:
        line = next((line for line in reversed(text.splitlines()) if line.strip()), "no output")
        raise BackupError(f"cannot read the dump's size from zstd: {line.strip()}")
    read, written = found[-1]
    return int(read), int(written)


class _Follower(threading.Thread):
    """Hashes a file while a child appends to it, and flushes it to disk every SYNC_EVERY bytes:
    when the dump ends, the sha256 and the fsync are all but done, as they are in no raw pipe."""

    def __init__(self, out: IO[bytes], partial: Path) -> None:
        super().__init__(name="backup-follower", daemon=True)
        self.out, self.partial = out, partial
        self.digest, self.size = hashlib.sha256(), 0
        self.written = threading.Event()  # the writer has exited: what is in the file is all
        self.error: OSError | None = None

    def run(self) -> None:
        synced = 0
        try:
            with self.partial.open("rb", buffering=0) as source:
                while True:
                    last = self.written.is_set()  # before the read: nothing comes after it then
                    chunk = source.read(CHUNK)
                    if chunk:
                        self.digest.update(chunk)
                        self.size += len(chunk)
                        if self.size - synced >= SYNC_EVERY:
                            os.fdatasync(self.out.fileno())
                            synced = self.size
                    elif last:
                        return
                    else:
                        self.written.wait(PROGRESS_INTERVAL / 10)
        except OSError as exc:
            self.error = exc

    def result(self) -> tuple[int, str]:
        """Once the thread has ended: the file's size and sha256."""
        if self.error is not None:
            raise self.error
        return self.size, self.digest.hexdigest()


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
    partial: Path,
) -> tuple[int, str, DumpScan]:
    """Run dump | compressor into out; return the file's size, sha256 and what is known of the dump.

    zstd writes the file itself, as in the raw pipe, a thread hashing it as it grows, and its
    closing line gives the dump's size. gzip's stream is relayed by this process, hashing it, and
    a second decompressor checks it as it is written (it decompresses, its size, its trailer).
    """
    digest, size, shown, scan = hashlib.sha256(), 0, 0.0, DumpScan()
    with client_options(settings) as [options], child_processes() as children:
        dump = start_child(
            children, client_command(program, options, *arguments), stdout=subprocess.PIPE, pass_fds=(options,)
        )
        widen_pipe(dump.stdout)
        compress = [find_client([compression.name], "compressor"), *compression.compress]
        if compression.name == "zstd":
            follower = _Follower(out, partial)
            start_child(children, compress, stdin=dump.stdout, stdout=out)
            dump.stdout.close()  # the compressor owns the pipe: the dump sees it break if the chain dies
            follower.start()
            try:
                if progress is not None:
                    _report(progress, dump.pid, estimate)
                while True:
                    # Wait for the dump's exit without reaping it, so that its counters can still be read.
                    waited = _wait_unreaped(dump.pid, PROGRESS_INTERVAL if progress is not None else None)
                    if progress is not None:
                        _report(progress, dump.pid, estimate)
                    if waited:
                        break
                try:
                    finish_children(children, f"backup of {settings.database!r} failed", settings.password)
                except BackupError:
                    _raise_if_out_of_room(children[1].process.returncode, partial.parent)
                    raise
            finally:
                follower.written.set()
                follower.join()
            size, hexdigest = follower.result()
            scan.size, written = _compressor_counts(children[1])
            if written != size:
                raise BackupError(
                    f"backup {partial.name} is incomplete: zstd wrote {written} bytes, the file holds {size}"
                )
            sync_file(out)
            return size, hexdigest, scan
        compressor = start_child(children, compress, stdin=dump.stdout, stdout=subprocess.PIPE)
        dump.stdout.close()
        checker = start_child(children, decompress_command(compression), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        reader = threading.Thread(target=scan_stream, args=(checker.stdout, scan), daemon=True)
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
                        checking = False  # the decompressor failed: finish_children quotes its error
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
        finish_children(children, f"backup of {settings.database!r} failed", settings.password)
    check_trailer(partial, scan)
    sync_file(out)
    return size, digest.hexdigest(), scan


def _raise_if_out_of_room(returncode: int | None, folder: Path) -> None:
    """The compressor wrote the file: when it failed for want of room, say so as a write here would
    (OSError, which backup() turns into a line naming the folder)."""
    if returncode == -signal.SIGXFSZ:  # over the file size limit (subprocess restores its default action)
        raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))
    if returncode:
        room = os.statvfs(folder)
        if room.f_bavail * room.f_frsize < FULL_DISK_BYTES:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _wait_unreaped(pid: int, timeout: float | None) -> bool:
    """Whether the child exited (left unreaped) within timeout seconds (None: wait for it)."""
    if timeout is None:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        return True
    deadline = time.monotonic() + timeout
    while True:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


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
    database = validate_identifier(settings.database)
    started, clock = datetime.now(UTC), time.monotonic()
    folder = settings.backup_dir
    with connect_session(settings) as session, ThreadPoolExecutor(max_workers=1) as pool:
        _prepare_folder(folder)
        info = parse_server_version(session.value("SELECT VERSION()"))
        data_bytes, index_bytes = data_and_index_bytes(session)
        # Rows are counted in a snapshot taken just before the dump's own (writes in between may
        # differ). Counting a large table takes a while: it runs while the dump streams.
        session.commit()
        session.run("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        session.run("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        every_table = _base_tables(session)
        revisions = _revisions(session) if VERSION_TABLE in every_table else ()
        # The tool's history and holding tables are left out: a restore keeps the former and
        # must not bring back the holding tables of deploys settled since.
        left_out = {name for name in every_table if name in TOOL_TABLES and name != VERSION_TABLE}
        tables = every_table - left_out
        counted = _small_tables(session, tables)
        counting = pool.submit(row_counts, session, counted)
        needed, free = int((data_bytes + index_bytes) * COMPRESSED_SHARE), shutil.disk_usage(folder).free
        if free < needed:
            raise BackupError(
                f"not enough disk space in {folder}: {format_size(free)} free, "
                f"a backup of {database!r} needs about {format_size(needed)}"
            )
        program = find_client(DUMP_CLIENTS[info.flavour], "dump client")
        client_version = program_version(program)
        arguments = list(DUMP_OPTIONS)
        if "mariadb" not in client_version.lower():
            arguments.append("--set-gtid-purged=OFF")  # Oracle's mysqldump: a restore target has GTIDs of its own
        arguments += [f"--ignore-table={database}.{table}" for table in sorted({*HISTORY_TABLES, *left_out})]
        arguments.append(database)
        compression = COMPRESSIONS["zstd" if find_program("zstd") else "gzip"]
        revision = "+".join(revisions) or "base"
        try:
            path, out = create_backup_file(
                folder, f"{file_stem(database)}-{started:%Y%m%dT%H%M%SZ}-{file_stem(revision)}", compression.suffix
            )
        except OSError as exc:
            raise BackupError(f"cannot write backups to {folder}: {exc.strerror or exc}") from None
        try:
            with out:
                size, digest, scan = _stream_dump(
                    settings, program, arguments, compression, out, progress, data_bytes, partial_path(path)
                )
            counts: dict[str, int | None] = {name: None for name in tables - counted}
            counts.update(counting.result())
            counts = dict(sorted(counts.items()))
            session.rollback()  # the counting snapshot is no longer needed
            publish(partial_path(path), path)
            check_size(path, size)  # hashed as it was written: once is enough
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
                uncompressed_bytes=scan.size,
                sha256=digest,
                compression=compression.name,
                started_at=started.isoformat(),
                finished_at=datetime.now(UTC).isoformat(),
                duration_seconds=round(time.monotonic() - clock, 3),
            )
            write_manifest(path, manifest)
        except BaseException as exc:
            # A file without a manifest is never good: leave nothing behind.
            for leftover in (partial_path(path), path, manifest_path(path)):
                leftover.unlink(missing_ok=True)
            if isinstance(exc, OSError):  # writing the file or its manifest: the folder is full, read-only, gone
                raise BackupError(f"backup of {database!r} failed writing to {folder}: {exc.strerror or exc}") from None
            raise
    return BackupResult(path, manifest, rotate(settings))
