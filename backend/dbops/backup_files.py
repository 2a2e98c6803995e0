"""Backup files on disk: their names, compressions and manifests, written atomically and privately,
listed and rotated.

A backup is good only once its manifest exists: the manifest is written after the file passed
verification, so a file without one is the remains of a failed run.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from ..config import Settings
from .clients import find_client
from .errors import BackupError

PARTIAL = ".partial"
MANIFEST = ".json"


@dataclass(frozen=True)
class Compression:
    name: str  # also the program
    suffix: str
    compress: tuple[str, ...]
    decompress: tuple[str, ...]


COMPRESSIONS = {
    # -vv: zstd's closing line gives the exact byte counts in and out (backup.py reads them).
    "zstd": Compression("zstd", ".sql.zst", ("-vv", "-1", "-T2", "-c"), ("-q", "-dc")),
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
    tables: dict[str, int | None]  # rows counted as the dump began; None: a large table, not counted
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

    def verified_line(self) -> str:
        """What a person sees before a restore: the backup passed verification, and what it holds."""
        return (
            f"✅ {self.file} verified: {self.database} at {self.revision}, "
            f"{len(self.tables)} table(s), taken {self.started_at[:19].replace('T', ' ')} UTC"
        )


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

    def line(self) -> str:
        """`db.backups`'s line: good or not, when, revision, size, file, and why not."""
        revision = self.manifest.revision if self.manifest else "?"
        problem = f"  ({self.problem})" if self.problem else ""
        return (
            f"{'✅' if self.good else '⚠️ '} {self.when[:19].replace('T', ' ')}  {revision:<12}  "
            f"{format_size(self.size):>10}  {self.path.name}{problem}"
        )


def format_size(count: float) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    index = 0
    while count >= 1024 and index < len(units) - 1:
        count, index = count / 1024, index + 1
    return f"{count:.0f} {units[index]}" if index == 0 else f"{count:.1f} {units[index]}"


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + MANIFEST)


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL)


def read_manifest(path: Path) -> Manifest:
    source = manifest_path(path)
    try:
        return Manifest.from_json(source.read_text())
    except FileNotFoundError:
        raise BackupError(f"{path.name} has no manifest {source.name}: an interrupted or failed backup") from None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise BackupError(f"manifest {source.name} is unreadable ({type(exc).__name__})") from None


def create_private(path: Path) -> IO[bytes]:
    """A new file only the owner can read (0600 whatever the umask); fails if it exists."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(descriptor, 0o600)
    return os.fdopen(descriptor, "wb")


def sync_file(out: IO[bytes]) -> None:
    out.flush()
    os.fsync(out.fileno())


def publish(partial: Path, path: Path) -> None:
    """Rename into place, then fsync the folder so that the rename survives a crash."""
    os.replace(partial, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def file_stem(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_+-]", "_", value)


def create_backup_file(folder: Path, stem: str, suffix: str) -> tuple[Path, IO[bytes]]:
    """An unused backup file name and its open .partial file (two backups may start in one second)."""
    attempt = 1
    while True:
        path = folder / f"{stem}{f'-{attempt}' if attempt > 1 else ''}{suffix}"
        if not path.exists():
            with suppress(FileExistsError):
                return path, create_private(partial_path(path))
        attempt += 1


def write_manifest(path: Path, manifest: Manifest) -> None:
    target = manifest_path(path)
    partial = partial_path(target)
    partial.unlink(missing_ok=True)
    try:
        with create_private(partial) as out:
            out.write(manifest.to_json().encode())
            sync_file(out)
        publish(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def decompress_command(compression: Compression, path: Path | None = None) -> list[str]:
    """The decompressor reading path, or its standard input without one."""
    return [find_client([compression.name], "decompressor"), *compression.decompress, *([str(path)] if path else [])]


def list_backups(settings: Settings) -> list[BackupEntry]:
    """Backups of the configured database in backup_dir, newest first, good or not.

    Good means: a readable manifest and a file of the recorded size (db.restore checks more).
    Files without a manifest are listed when their name is of this database.
    """
    folder = settings.backup_dir
    if not folder.is_dir():
        return []
    suffixes = tuple(compression.suffix for compression in COMPRESSIONS.values())
    named = re.compile(rf"{re.escape(file_stem(settings.database))}-\d{{8}}T\d{{6}}Z-")
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


def rotate(settings: Settings) -> list[Path]:
    """Delete the good backups of this database beyond the newest backup_keep; return them."""
    removed = []
    for entry in [entry for entry in list_backups(settings) if entry.good][settings.backup_keep :]:
        entry.path.unlink(missing_ok=True)
        manifest_path(entry.path).unlink(missing_ok=True)
        removed.append(entry.path)
    return removed
