"""Verifying a backup without touching any database: manifest, size, sha256, a complete
decompression, the dump's closing line and its header naming the manifest's database and server."""

from __future__ import annotations

import hashlib
import subprocess
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from .backup_files import COMPRESSIONS, BackupEntry, Compression, Manifest, decompress_command, read_manifest
from .clients import child_processes, finish_children, start_child
from .connection import parse_server_version
from .errors import BackupError

CHUNK = 1 << 20
TRAILER = b"-- Dump completed"
TRAILER_WINDOW = 4096
HEADER_WINDOW = 4096  # the dump client's header comment lies in its first few lines
HOST_LINE = "-- Host: "
DATABASE_FIELD = "    Database: "
SERVER_LINE = "-- Server version"


# MariaDB announces itself as 5.5.5-<version> to clients that do not strip the prefix.
MARIADB_PREFIX = "5.5.5-"
SERVER_NAMES = {"mariadb": "MariaDB", "mysql": "MySQL"}


@dataclass
class DumpScan:
    """One pass over a decompressed dump, in large chunks: its size, its first and its last bytes."""

    size: int = 0
    head: bytes = b""
    tail: bytes = b""

    def feed(self, chunk: bytes) -> None:
        if len(self.head) < HEADER_WINDOW:
            self.head += chunk[: HEADER_WINDOW - len(self.head)]
        self.size += len(chunk)
        self.tail = (self.tail + chunk[-TRAILER_WINDOW:])[-TRAILER_WINDOW:]


def scan_stream(stream: IO[bytes], scan: DumpScan) -> None:
    while chunk := stream.read(CHUNK):
        scan.feed(chunk)


def check_size(path: Path, size: int) -> None:
    try:
        actual = path.stat().st_size
    except FileNotFoundError:
        raise BackupError(f"backup file {path.name} is missing") from None
    if actual != size:
        state = "truncated" if actual < size else "longer than recorded"
        raise BackupError(f"backup {path.name} is {state}: {actual} bytes, its manifest says {size}")


def check_digest(path: Path, size: int, digest: str) -> None:
    check_size(path, size)
    with path.open("rb") as source:
        if hashlib.file_digest(source, "sha256").hexdigest() != digest:
            raise BackupError(f"backup {path.name} is corrupt: digest mismatch, its sha256 differs from the manifest's")


def check_trailer(path: Path, scan: DumpScan) -> None:
    if TRAILER not in scan.tail:
        raise BackupError(f"backup {path.name} is incomplete: the dump does not end with '{TRAILER.decode()}'")


def _dump_header(scan: DumpScan) -> tuple[str | None, str | None]:
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


def _check_header(path: Path, scan: DumpScan, manifest: Manifest) -> None:
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


def _check_file(path: Path, size: int, digest: str, compression: Compression) -> DumpScan:
    """Size, sha256, a complete decompression and the dump's trailer; return what the pass read.

    The hash and the decompression run side by side (two cores): a digest mismatch is reported
    first, as the more precise of the two answers."""
    check_size(path, size)
    digest_error: list[BackupError] = []

    def hash_file() -> None:
        try:
            check_digest(path, size, digest)
        except BackupError as exc:
            digest_error.append(exc)

    hashing = threading.Thread(target=hash_file, daemon=True)
    hashing.start()
    scan = DumpScan()
    try:
        with child_processes() as children:
            process = start_child(children, decompress_command(compression, path), stdout=subprocess.PIPE)
            scan_stream(process.stdout, scan)
            finish_children(children, f"backup {path.name} is corrupt")
    finally:
        hashing.join()
        if digest_error:
            raise digest_error[0]
    check_trailer(path, scan)
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
    if scan.size != manifest.uncompressed_bytes:
        raise BackupError(
            f"backup {path.name} decompresses to {scan.size} bytes, its manifest says {manifest.uncompressed_bytes}"
        )
    _check_header(path, scan, manifest)
    return manifest


def verify_entries(entries: list[BackupEntry], database: str) -> list[BackupEntry]:
    """The listed backups, each good one checked through (verify_backup): a failure becomes its problem."""
    checked = []
    for entry in entries:
        if entry.good:
            try:
                verify_backup(entry.path, database)
            except BackupError as exc:
                entry = replace(entry, problem=str(exc))
        checked.append(entry)
    return checked
