"""Damaged backups: `invoke db.restore` refuses them before touching any database.

The database has changed since the backup, so a restore that ran at all would show in its
CHECKSUM TABLE values; they, the schema, the tables and the lock must stay as they were.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from backend.config import Settings
from backend.dbops import admin, migrate
from backend.dbops.backup import backup
from backend.dbops.backup_files import manifest_path
from tests.command_line import assert_one_error_line, run_invoke
from tests.faults.helpers import db_state, prepare, server_env
from tests.helpers import lock_holder, query, schema_names, tables

pytestmark = pytest.mark.faults("bad files")


def _rewrite_manifest(path: Path, **changes) -> None:
    manifest = json.loads(manifest_path(path).read_text())
    manifest.update(changes)
    manifest_path(path).write_text(json.dumps(manifest))


def truncated(path: Path, other: Path) -> str:
    path.write_bytes(path.read_bytes()[:-100])
    return "is truncated"


def truncated_with_matching_manifest(path: Path, other: Path) -> str:
    # Cut in half and the manifest made to agree: only reading the stream finds it.
    data = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(data)
    _rewrite_manifest(path, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    return "is corrupt"


def corrupt(path: Path, other: Path) -> str:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x5A
    path.write_bytes(bytes(data))
    return "digest mismatch"


def wrong_digest(path: Path, other: Path) -> str:
    _rewrite_manifest(path, sha256=hashlib.sha256(b"something else").hexdigest())
    return "digest mismatch"


def wrong_database(path: Path, other: Path) -> str:
    # The other database's backup under this one's file names.
    path.write_bytes(other.read_bytes())
    manifest_path(path).write_text(manifest_path(other).read_text())
    return "is a backup of database"


def manifest_names_this_database(path: Path, other: Path) -> str:
    # The other database's dump under this one's file name, its own manifest edited to name this
    # database (size and digest still right): only the dump's header tells.
    database = json.loads(manifest_path(path).read_text())["database"]
    path.write_bytes(other.read_bytes())
    manifest_path(path).write_text(manifest_path(other).read_text())
    _rewrite_manifest(path, database=database)
    return "is a dump of database"


def not_a_dump(path: Path, other: Path) -> str:
    data = subprocess.run(["zstd", "-q", "-c"], input=b"DROP TABLE users;\n", capture_output=True, check=True).stdout
    path.write_bytes(data)
    _rewrite_manifest(path, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    return "is incomplete"


DAMAGE = [
    truncated,
    truncated_with_matching_manifest,
    corrupt,
    wrong_digest,
    wrong_database,
    manifest_names_this_database,
    not_a_dump,
]


@dataclass(frozen=True)
class Pristine:
    database: str
    env: dict
    backup: Path  # of database
    other: Path  # of another database


@pytest.fixture(scope="module")
def pristine(mysql_server, reference, tmp_path_factory) -> Iterator[Pristine]:
    """A seeded database with a backup, a backup of another database, then rows deleted since.

    Shared by the module: each test damages copies of the files, and a refused restore changes nothing.
    """
    folder = tmp_path_factory.mktemp("bad_files")
    name = f"bad_{uuid.uuid4().hex[:10]}"
    seeded = Settings(
        host=mysql_server.host,
        port=mysql_server.port,
        user=mysql_server.user,
        password=mysql_server.password,
        database=name,
        backup_dir=folder / "backups",
        versions_dir=Path(reference.versions_env["MIGRATIONS_DIR"]),
    )
    other = replace(seeded, database=f"{name}_other", backup_dir=folder / "other")
    try:
        prepare(mysql_server, seeded)
        path = backup(seeded).path
        admin.create_database(other)
        migrate.upgrade(other, "e9e7d98878ca")
        other_path = backup(other).path
        admin.drop_database(other)
        query(mysql_server, "DELETE FROM chat_messages WHERE id > 20", database=name)
        yield Pristine(name, server_env(mysql_server, name, reference, folder), path, other_path)
    finally:
        admin.drop_database(other)
        admin.drop_database(seeded)


def _copy(path: Path, folder: Path) -> Path:
    folder.mkdir()
    for source in (path, manifest_path(path)):
        (folder / source.name).write_bytes(source.read_bytes())
        (folder / source.name).chmod(0o600)
    return folder / path.name


@pytest.mark.parametrize("damage", DAMAGE, ids=[damage.__name__.replace("_", "-") for damage in DAMAGE])
def test_damaged_backup_is_refused_before_anything_changes(damage, pristine, mysql_server, tmp_path):
    database = pristine.database
    path = _copy(pristine.backup, tmp_path / "backups")
    expected = damage(path, pristine.other)
    before, names = db_state(mysql_server, database), tables(mysql_server, database)
    schemas = schema_names(mysql_server)
    targets = [()] + ([] if damage is wrong_database else [("--into", f"{database}_into")])
    for into in targets:  # in place, and into another database (never created)
        result = run_invoke({**pristine.env, "BACKUP_DIR": str(path.parent)}, "db.restore", str(path), *into, "--yes")
        line = assert_one_error_line(result)
        assert expected in line and path.name in line, line
        assert "verified" not in result.stdout  # refused before the confirmation, let alone the load
        assert db_state(mysql_server, database) == before
        assert tables(mysql_server, database) == names
        assert schema_names(mysql_server) == schemas
        assert lock_holder(mysql_server, database) is None
