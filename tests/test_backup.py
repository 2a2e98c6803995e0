"""Backups and restores against the real server, with the real dump client and zstd."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from backend.dbops import admin, migrate
from backend.dbops.backup import backup
from backend.dbops.backup_files import list_backups, manifest_path
from backend.dbops.backup_verify import verify_backup
from backend.dbops.errors import BackupError
from backend.dbops.restore import restore
from backend.dbops.servers import find_program
from backend.dbops.tool_tables import HISTORY_TABLES
from tests.command_line import assert_one_error_line
from tests.helpers import APP_TABLES, HEAD, checksums, descendants, run_sql, tables

# Quotes, parentheses, a row separator, backslashes and a newline inside strings: the row
# counting over the dump must not be fooled by any of them.
AWKWARD = 'it\'s (a),(b) \\ "q" ),( 😀\nline two; -- not a comment'
SEEDED_ROWS = {"users": 3, "chat_sessions": 2, "chat_messages": 5, "alembic_version": 1}


@pytest.fixture
def seeded(settings, mysql_server, tmp_path):
    """The test's database at head with a few rows; settings pointing BACKUP_DIR at a tmp folder."""
    admin.create_database(settings)
    migrate.upgrade(settings)
    run_sql(
        mysql_server,
        settings.database,
        "INSERT INTO users (username, password_hash, email) VALUES ('amy', 'h1', 'a@x'), ('bo', 'h2', NULL), "
        "('cy', 'h3', 'c@x')",
        "INSERT INTO chat_sessions (id, user_id, title) VALUES ('s1', 1, 'first'), ('s2', 2, 'second')",
        many=(
            "INSERT INTO chat_messages (session_id, user_id, role, content) VALUES (%s, %s, %s, %s)",
            [
                ("s1", 1, "user", AWKWARD),
                ("s1", 1, "assistant", "fine"),
                ("s2", 2, "user", "x" * 3000),
                ("s2", 2, "assistant", ""),
                ("s1", 3, "system", "\\"),
            ],
        ),
    )
    return replace(settings, backup_dir=tmp_path / "backups")


@pytest.fixture
def bulky(seeded, mysql_server):
    """Enough rows of long text for a dump that runs a while (about 16 MB)."""
    rows = [("s1", 1, "user", os.urandom(2000).hex()) for _ in range(4000)]
    run_sql(
        mysql_server,
        seeded.database,
        many=("INSERT INTO chat_messages (session_id, user_id, role, content) VALUES (%s, %s, %s, %s)", rows),
    )
    run_sql(mysql_server, seeded.database, "ANALYZE TABLE chat_messages")
    return seeded


@pytest.fixture
def other_database(mysql_server, database_name):
    name = f"{database_name}_other"
    yield name
    run_sql(mysql_server, None, f"DROP DATABASE IF EXISTS `{name}`")


def backup_env(settings, **extra) -> dict[str, str]:
    return {"BACKUP_DIR": str(settings.backup_dir), **extra}


def test_tasks_are_listed_and_explained(invoke):
    listed = invoke("--list").stdout
    for name in ("backup", "backups", "restore"):
        assert re.search(rf"^\s+db\.{name}\s+\S", listed, re.M), name
        result = invoke("--help", f"db.{name}")
        assert result.returncode == 0, result.output
        options = re.findall(r"^\s+(-\w, )?--[\w-]+(?:=\w+)?\s*(.*)$", result.stdout, re.M)
        assert all(text.strip() for _, text in options), result.stdout


def test_backup_writes_a_verified_file_and_a_manifest(invoke, seeded, mysql_server, tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    result = invoke("db.backup", env=backup_env(seeded, TMPDIR=str(temp)))
    assert result.returncode == 0, result.output
    assert result.stdout.startswith("✅") and "\r" not in result.stdout  # no progress line without a terminal
    assert seeded.password not in result.output
    assert list(temp.iterdir()) == []  # the option file and its folder are gone

    [path] = seeded.backup_dir.glob("*.sql.zst")
    assert re.fullmatch(rf"{seeded.database}-\d{{8}}T\d{{6}}Z-{HEAD}\.sql\.zst", path.name)
    assert path.name in result.stdout and "8 table(s)" in result.stdout
    text = manifest_path(path).read_text()
    assert seeded.password not in text
    for file in (path, manifest_path(path)):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert sorted(p.name for p in seeded.backup_dir.iterdir()) == [path.name, manifest_path(path).name]

    manifest = json.loads(text)
    assert manifest["file"] == path.name and manifest["database"] == seeded.database
    assert manifest["server_flavour"] in ("mariadb", "mysql") and manifest["server_version"][0].isdigit()
    assert manifest["dump_client"] in ("mariadb-dump", "mysqldump") and "Ver" in manifest["dump_client_version"]
    assert manifest["revisions"] == [HEAD]
    assert manifest["tables"] == {**dict.fromkeys([*APP_TABLES, "alembic_version"], 0), **SEEDED_ROWS}
    assert not set(manifest["tables"]) & set(HISTORY_TABLES)
    assert manifest["bytes"] == path.stat().st_size
    assert manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert manifest["compression"] == "zstd"
    assert manifest["source"] == f"{seeded.user}@{seeded.host}:{seeded.port}"
    started, finished = (datetime.fromisoformat(manifest[key]) for key in ("started_at", "finished_at"))
    assert started.utcoffset() == timedelta(0) and started <= finished
    assert 0 < manifest["duration_seconds"] < 120
    dump = subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout
    assert manifest["uncompressed_bytes"] == len(dump)
    assert dump.rstrip().splitlines()[-1].startswith(b"-- Dump completed")


def test_a_backup_process_does_not_load_sqlalchemy(invoke_process, seeded):
    """Its import and unloading would add a third of a second to every backup (see connect_session)."""
    result = invoke_process("db.backup", env=backup_env(seeded, PYTHONPROFILEIMPORTTIME="1"))
    assert result.returncode == 0, result.output
    assert "| backend.dbops.backup" in result.stderr  # the import profile is there
    assert "sqlalchemy" not in result.stderr and "alembic" not in result.stderr
    [path] = seeded.backup_dir.glob("*.sql.zst")
    verify_backup(path, seeded.database)


def test_backup_then_restore_brings_everything_back(invoke, seeded, mysql_server):
    before, names = (
        checksums(mysql_server, seeded.database, tables(mysql_server, seeded.database)),
        tables(mysql_server, seeded.database),
    )
    path = backup(seeded).path
    run_sql(
        mysql_server,
        seeded.database,
        "DROP TABLE user_feedback",
        "INSERT INTO users (username, password_hash) VALUES ('late', 'h')",
        "DELETE FROM chat_messages WHERE role = 'user'",
        "UPDATE chat_sessions SET title = 'changed'",
        "INSERT INTO alembic_journal (revision, direction, checksum, status, host, pid, os_user, started_at) "
        "VALUES ('r', 'upgrade', 'c', 'applied', 'h', 1, 'u', NOW())",
    )
    assert checksums(mysql_server, seeded.database, tables(mysql_server, seeded.database)) != before

    result = invoke("db.restore", str(path), "--yes", env=backup_env(seeded))
    assert result.returncode == 0, result.output
    assert "verified" in result.stdout and f"restored {seeded.database}: 8 table(s), 11 rows" in result.stdout
    assert seeded.password not in result.output
    assert tables(mysql_server, seeded.database) == names
    assert checksums(mysql_server, seeded.database, tables(mysql_server, seeded.database)) == before
    # The history tables were neither dumped nor dropped: the journal row written after the backup stays.
    assert run_sql(mysql_server, seeded.database, "SELECT COUNT(*) FROM alembic_journal WHERE revision = 'r'") == (
        (1,),
    )
    assert run_sql(mysql_server, seeded.database, "SELECT content FROM chat_messages WHERE id = 1") == ((AWKWARD,),)


def test_restore_into_another_database_leaves_the_original_untouched(invoke, seeded, mysql_server, other_database):
    path = backup(seeded).path
    run_sql(mysql_server, seeded.database, "DELETE FROM chat_messages")
    original = checksums(mysql_server, seeded.database, tables(mysql_server, seeded.database))

    result = invoke("db.restore", str(path), "--into", other_database, "--yes", env=backup_env(seeded))
    assert result.returncode == 0, result.output
    assert f"restored {other_database}" in result.stdout
    assert checksums(mysql_server, seeded.database, tables(mysql_server, seeded.database)) == original
    copy = checksums(mysql_server, other_database, tables(mysql_server, other_database))
    assert copy["chat_messages"] != original["chat_messages"]
    assert run_sql(mysql_server, other_database, "SELECT COUNT(*) FROM chat_messages") == ((5,),)


def test_backups_lists_newest_first_and_rotation_keeps_the_newest(invoke, seeded):
    keep_two = replace(seeded, backup_keep=2)
    first = backup(keep_two)
    orphan = seeded.backup_dir / f"{seeded.database}-20200101T000000Z-base.sql.zst"
    orphan.write_bytes(b"left by a crash")
    foreign = seeded.backup_dir / "someone-else.txt"
    foreign.write_text("not ours")
    second, third = backup(keep_two), backup(keep_two)
    assert first.rotated == second.rotated == [] and third.rotated == [first.path]
    assert not first.path.exists() and not manifest_path(first.path).exists()
    assert orphan.exists() and foreign.exists()  # files without a manifest are never touched
    assert len({second.path, third.path}) == 2

    entries = list_backups(seeded)
    assert [entry.path for entry in entries] == [third.path, second.path, orphan]
    assert [entry.good for entry in entries] == [True, True, False]

    listed = invoke("db.backups", env=backup_env(seeded))
    assert listed.returncode == 0, listed.output
    lines = listed.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("✅") and third.path.name in lines[0] and HEAD in lines[0]
    assert second.path.name in lines[1]
    assert lines[2].startswith("⚠️") and orphan.name in lines[2] and "no manifest" in lines[2]
    empty = invoke("db.backups", env={"BACKUP_DIR": str(seeded.backup_dir / "none")})
    assert empty.returncode == 0 and "no backups" in empty.stdout


def test_backups_verify_checks_each_file_through(invoke, seeded):
    """The manifest and the file agree (size, sha256) but the stream inside is cut: only a full
    decompression finds it, and --verify says which backup and exits 1."""
    good, cut = backup(seeded).path, backup(seeded).path
    dump = subprocess.run(["zstd", "-q", "-dc", str(cut)], capture_output=True, check=True).stdout
    data = subprocess.run(["zstd", "-q", "-c"], input=dump[: len(dump) // 2], capture_output=True, check=True).stdout
    cut.write_bytes(data)
    manifest = json.loads(manifest_path(cut).read_text())
    manifest.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    manifest_path(cut).write_text(json.dumps(manifest))

    listed = invoke("db.backups", env=backup_env(seeded))
    assert listed.returncode == 0 and listed.stdout.count("✅") == 2, listed.output
    verified = invoke("db.backups", "--verify", env=backup_env(seeded))
    assert verified.returncode == 1, verified.output
    [cut_line] = [line for line in verified.stdout.splitlines() if cut.name in line]
    [good_line] = [line for line in verified.stdout.splitlines() if good.name in line]
    assert cut_line.startswith("⚠️") and "is incomplete: the dump does not end with '-- Dump completed'" in cut_line
    assert good_line.startswith("✅")
    cut.unlink()
    manifest_path(cut).unlink()
    assert invoke("db.backups", "--verify", env=backup_env(seeded)).returncode == 0


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_manifest(path: Path, **changes) -> None:
    manifest = json.loads(manifest_path(path).read_text())
    manifest.update(changes)
    manifest_path(path).write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "damage, expected",
    [
        (_truncate, "is truncated"),
        (_flip_middle_byte, "digest mismatch"),
        (lambda path: _edit_manifest(path, sha256="0" * 64), "digest mismatch"),
        (lambda path: _edit_manifest(path, uncompressed_bytes=12345), "decompresses to"),
        (lambda path: manifest_path(path).unlink(), "has no manifest"),
        (lambda path: manifest_path(path).write_text("{not json"), "is unreadable"),
    ],
    ids=["truncated", "corrupt-byte", "wrong-sha256", "wrong-size", "missing-manifest", "bad-manifest"],
)
def test_damaged_backups_are_refused(invoke, seeded, mysql_server, damage, expected):
    path = backup(seeded).path
    run_sql(mysql_server, seeded.database, "DELETE FROM chat_messages")
    before, names = (
        checksums(mysql_server, seeded.database, tables(mysql_server, seeded.database)),
        tables(mysql_server, seeded.database),
    )
    damage(path)
    line = assert_one_error_line(invoke("db.restore", str(path), "--yes", env=backup_env(seeded)))
    assert expected in line and path.name in line
    assert checksums(mysql_server, seeded.database, tables(mysql_server, seeded.database)) == before
    assert tables(mysql_server, seeded.database) == names


def test_a_backup_of_another_database_is_refused(invoke, seeded, mysql_server, other_database):
    other = replace(seeded, database=other_database)
    admin.create_database(other)
    migrate.upgrade(other)
    path = backup(other).path
    before = checksums(mysql_server, seeded.database, tables(mysql_server, seeded.database))
    line = assert_one_error_line(invoke("db.restore", str(path), "--yes", env=backup_env(seeded)))
    assert f"is a backup of database {other_database!r}, not {seeded.database!r}" in line
    assert checksums(mysql_server, seeded.database, tables(mysql_server, seeded.database)) == before


SERVER_NAMES = {"mariadb": "MariaDB", "mysql": "MySQL"}


@pytest.mark.parametrize("edited", ["database", "server_version", "server_flavour"])
def test_a_manifest_that_disagrees_with_the_dump_header_is_refused(
    invoke, seeded, mysql_server, other_database, edited
):
    """A manifest edited to name another database (here: a backup of another database made to look
    like one of the configured database) or another server is refused by the dump's own header."""
    if edited == "database":
        other = replace(seeded, database=other_database)
        admin.create_database(other)
        migrate.upgrade(other)
        path = backup(other).path
    else:
        path = backup(seeded).path
    manifest = json.loads(manifest_path(path).read_text())
    server = f"{SERVER_NAMES[manifest['server_flavour']]} {manifest['server_version']}"
    claimed = {
        "database": {"database": seeded.database},
        "server_version": {"server_version": "5.0.1"},
        "server_flavour": {"server_flavour": "mysql" if manifest["server_flavour"] == "mariadb" else "mariadb"},
    }[edited]
    _edit_manifest(path, **claimed)
    run_sql(mysql_server, seeded.database, "DELETE FROM chat_messages")
    before, names = (
        checksums(mysql_server, seeded.database, tables(mysql_server, seeded.database)),
        tables(mysql_server, seeded.database),
    )
    line = assert_one_error_line(invoke("db.restore", str(path), "--yes", env=backup_env(seeded)))
    if edited == "database":
        expected = f"{path.name} is a dump of database {other_database!r}, its manifest says {seeded.database!r}"
    else:
        edited_manifest = {**manifest, **claimed}
        expected = (
            f"{path.name} was dumped from {server}, its manifest says "
            f"{SERVER_NAMES[edited_manifest['server_flavour']]} {edited_manifest['server_version']}"
        )
    assert expected in line, line
    assert checksums(mysql_server, seeded.database, tables(mysql_server, seeded.database)) == before
    assert tables(mysql_server, seeded.database) == names


def test_verify_reads_the_whole_stream(seeded, tmp_path):
    """A manifest that matches the bytes is not enough: the file must decompress and end like a dump."""
    path = backup(seeded).path
    manifest = json.loads(manifest_path(path).read_text())

    def rewrite(data: bytes) -> None:
        path.write_bytes(data)
        manifest.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        manifest_path(path).write_text(json.dumps(manifest))

    dump = subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout
    rewrite(subprocess.run(["zstd", "-q", "-c"], input=dump[: len(dump) // 2], capture_output=True).stdout)
    with pytest.raises(BackupError, match="is incomplete: the dump does not end with '-- Dump completed'"):
        verify_backup(path)
    rewrite(path.read_bytes()[:-8])
    with pytest.raises(BackupError, match=r"is corrupt: zstd exited with code \d+: "):
        verify_backup(path)


def test_an_unreachable_server_leaves_nothing(invoke, seeded):
    line = assert_one_error_line(invoke("db.backup", env=backup_env(seeded, MYSQL_PORT="1")))
    assert "cannot reach the MySQL server" in line
    assert not seeded.backup_dir.exists() or list(seeded.backup_dir.iterdir()) == []


def test_a_failing_dump_leaves_nothing(invoke, seeded, mysql_server, tmp_path):
    # A view over a dropped table makes the dump client itself fail halfway.
    run_sql(
        mysql_server,
        seeded.database,
        "CREATE TABLE doomed (id INT)",
        "CREATE VIEW broken AS SELECT id FROM doomed",
        "DROP TABLE doomed",
    )
    temp = tmp_path / "tmp"
    temp.mkdir()
    result = invoke("db.backup", env=backup_env(seeded, TMPDIR=str(temp)))
    line = assert_one_error_line(result)
    assert re.search(r"backup of '.*' failed: (mariadb-dump|mysqldump) exited with code \d+: .*broken", line), line
    assert seeded.password not in result.output
    assert list(seeded.backup_dir.iterdir()) == []
    assert list(temp.iterdir()) == []


def test_not_enough_disk_space_is_refused_before_dumping(seeded, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=10**9, used=10**9, free=0))
    with pytest.raises(BackupError, match="not enough disk space"):
        backup(seeded)
    assert list(seeded.backup_dir.iterdir()) == []


def test_restore_on_production_needs_both_flags(invoke, seeded, mysql_server):
    path = backup(seeded).path
    run_sql(mysql_server, seeded.database, "DELETE FROM chat_messages")
    production = backup_env(seeded, APP_ENV="production")
    for flags in ((), ("--yes",), ("--allow-production",)):
        line = assert_one_error_line(invoke("db.restore", str(path), *flags, env=production))
        assert "refused on the protected production environment" in line
        assert run_sql(mysql_server, seeded.database, "SELECT COUNT(*) FROM chat_messages") == ((0,),)
    result = invoke("db.restore", str(path), "--yes", "--allow-production", env=production)
    assert result.returncode == 0, result.output
    assert run_sql(mysql_server, seeded.database, "SELECT COUNT(*) FROM chat_messages") == ((5,),)


def test_restore_needs_confirmation_without_a_terminal(invoke, seeded, mysql_server):
    path = backup(seeded).path
    assert "needs confirmation" in assert_one_error_line(invoke("db.restore", str(path), env=backup_env(seeded)))


def test_restore_function_checks_the_target(seeded, mysql_server, other_database):
    path = backup(seeded).path
    result = restore(seeded, path, into=other_database)
    assert result.database == other_database and result.tables == result.manifest.tables
    assert checksums(mysql_server, other_database, tables(mysql_server, other_database)) == checksums(
        mysql_server, seeded.database, tables(mysql_server, seeded.database)
    )
    with pytest.raises(BackupError, match="is a backup of database"):
        restore(replace(seeded, database=other_database), path)


def test_the_password_never_reaches_a_command_line_the_environment_or_a_file(bulky, monkeypatch, tmp_path):
    # Even when the caller's environment carries it, the children must not.
    monkeypatch.setenv("MYSQL_PWD", bulky.password)
    monkeypatch.setenv("MYSQL_PASSWORD", bulky.password)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    secret = bulky.password.encode()
    seen: dict[int, bytes] = {}
    leaks: list[str] = []

    def sample(done: int, total: int) -> None:
        # The processes this test started (the machine is shared: other users' are none of its business).
        for pid in descendants(os.getpid()):
            proc = Path(f"/proc/{pid}")
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                if secret in b" ".join(argv):
                    leaks.append(f"cmdline of {pid}")
                option = next((arg for arg in argv if arg.startswith(b"--defaults-file=")), None)
                if option is None or pid in seen:
                    continue
                environ = (proc / "environ").read_bytes()
            except OSError:
                continue  # gone meanwhile
            assert argv.index(option) == 1  # the first argument
            if secret in environ or b"MYSQL_PWD=" in environ or b"MYSQL_PASSWORD=" in environ:
                leaks.append(f"environment of {pid}")
            seen[pid] = option
        leaks.extend(str(path) for path in temporary.rglob("*"))  # nothing named on disk, not even for a while

    result = backup(bulky, progress=sample)
    assert seen, "no dump client was running while the progress was reported"
    # The options come from a pipe the client inherited: nothing on disk holds the password.
    assert all(re.fullmatch(rb"--defaults-file=/dev/fd/\d+", option) for option in seen.values()), seen
    assert leaks == []
    assert result.manifest.tables["chat_messages"] == 4005


def test_progress_reports_growing_byte_counts(bulky):
    calls: list[tuple[int, int]] = []
    result = backup(bulky, progress=lambda done, total: calls.append((done, total)))
    assert len(calls) >= 2, calls
    done = [call[0] for call in calls]
    assert done == sorted(done) and done[0] < done[-1]
    assert done[-1] >= result.manifest.uncompressed_bytes  # wchar counts the dump's stderr too
    assert all(total > 8_000_000 for _, total in calls)  # from information_schema data_length


def test_hostile_database_name(settings, mysql_server, tmp_path):
    name = f"we`ird.{uuid.uuid4().hex[:6]}; x/y"
    hostile = replace(settings, database=name, backup_dir=tmp_path / "backups")
    try:
        admin.create_database(hostile)
        migrate.upgrade(hostile)
        run_sql(mysql_server, name, "INSERT INTO users (username, password_hash) VALUES ('amy', 'h')")
        result = backup(hostile)
        assert result.path.parent == hostile.backup_dir and result.manifest.database == name
        assert result.manifest.tables["users"] == 1
        run_sql(mysql_server, name, "DELETE FROM users")
        assert restore(hostile, result.path).tables["users"] == 1
        assert [entry.path for entry in list_backups(hostile)] == [result.path]
    finally:
        run_sql(mysql_server, None, f"DROP DATABASE IF EXISTS `{name.replace('`', '``')}`")


def test_a_gzip_backup_checks_the_stream_as_it_writes_it(seeded, monkeypatch):
    """Without zstd the stream is relayed through gzip and a second decompressor: a dump that does
    not end as a dump ends is never called good (the check runs during the dump)."""
    import backend.dbops.backup as backup_module
    import backend.dbops.backup_verify as backup_verify

    monkeypatch.setattr(backup_module, "find_program", lambda name: None if name == "zstd" else find_program(name))
    good = backup(seeded).path
    assert good.name.endswith(".sql.gz") and verify_backup(good).uncompressed_bytes > 0
    monkeypatch.setattr(backup_verify, "TRAILER", b"-- a line no dump ends with")
    with pytest.raises(BackupError, match="is incomplete: the dump does not end with '-- a line no dump ends with'"):
        backup(seeded)
    assert sorted(seeded.backup_dir.iterdir()) == [good, manifest_path(good)]


def test_restore_keeps_the_replaced_tables_until_settled(invoke, seeded, mysql_server):
    path = backup(seeded).path
    at_backup = checksums(mysql_server, seeded.database, tables(mysql_server, seeded.database))
    run_sql(mysql_server, seeded.database, "UPDATE users SET nickname = 'after the backup'")
    replaced = checksums(mysql_server, seeded.database, tables(mysql_server, seeded.database))
    result = invoke("db.restore", str(path), "--yes", env=backup_env(seeded))
    assert result.returncode == 0, result.output
    assert "the replaced tables are kept as alembic_hold_" in result.stdout
    assert checksums(mysql_server, seeded.database, tables(mysql_server, seeded.database)) == at_backup
    held = {
        name: run_sql(mysql_server, seeded.database, f"CHECKSUM TABLE `{name}`")[0][1]
        for (name,) in run_sql(
            mysql_server,
            seeded.database,
            "SELECT TABLE_NAME FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE 'alembic\\\\_hold\\\\_%'",
        )
    }
    # Every replaced table, as it was (alembic_version is the backup's own, replaced in place).
    assert sorted(held.values()) == sorted(value for name, value in replaced.items() if name != "alembic_version")
    check = invoke("db.check", env=backup_env(seeded))
    assert check.returncode == 0 and "holding table(s)" in check.stdout, check.output
    assert "needs confirmation" in assert_one_error_line(invoke("db.settle", env=backup_env(seeded)))
    settled = invoke("db.settle", "--yes", env=backup_env(seeded))
    assert settled.returncode == 0 and f"dropped {len(held)} holding table(s)" in settled.stdout, settled.output
    assert "holding" not in invoke("db.check", env=backup_env(seeded)).stdout
    assert checksums(mysql_server, seeded.database, tables(mysql_server, seeded.database)) == at_backup


@pytest.mark.parametrize("schema", ["mysql", "sys", "information_schema", "PERFORMANCE_SCHEMA"])
def test_restore_into_a_system_schema_is_refused(invoke, seeded, schema):
    path = backup(seeded).path
    line = assert_one_error_line(invoke("db.restore", str(path), "--into", schema, "--yes", env=backup_env(seeded)))
    assert "is a system schema of the server" in line


def test_restore_into_a_database_with_tables_needs_replace(invoke, seeded, mysql_server, other_database):
    path = backup(seeded).path
    run_sql(
        mysql_server,
        None,
        f"CREATE DATABASE `{other_database}`",
        f"CREATE TABLE `{other_database}`.precious (id INT PRIMARY KEY)",
        f"INSERT INTO `{other_database}`.precious VALUES (7)",
    )
    line = assert_one_error_line(
        invoke("db.restore", str(path), "--into", other_database, "--yes", env=backup_env(seeded))
    )
    assert "exists and holds 1 table(s): pass --replace" in line
    assert run_sql(mysql_server, other_database, "SELECT id FROM precious") == ((7,),)
    result = invoke("db.restore", str(path), "--into", other_database, "--replace", "--yes", env=backup_env(seeded))
    assert result.returncode == 0, result.output
    [(held,)] = run_sql(
        mysql_server,
        other_database,
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE "
        "TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE '%precious'",
    )
    assert run_sql(mysql_server, other_database, f"SELECT id FROM `{held}`") == ((7,),)


def test_the_dump_writes_into_a_widened_pipe(bulky):
    """A 1 MiB pipe from the dump client to zstd, not Linux's 64 KiB: fewer wake-ups on two busy cores."""
    import fcntl

    from backend.dbops.clients import PIPE_BYTES

    sizes: list[int] = []

    def sample(done: int, total: int) -> None:
        for pid in descendants(os.getpid()):
            try:
                if Path(f"/proc/{pid}/exe").resolve().name not in ("mariadb-dump", "mysqldump"):
                    continue
                end = os.open(f"/proc/{pid}/fd/1", os.O_WRONLY | os.O_NONBLOCK)  # the same pipe, opened again
            except OSError:
                continue  # gone meanwhile
            try:
                sizes.append(fcntl.fcntl(end, fcntl.F_GETPIPE_SZ))
            finally:
                os.close(end)

    backup(bulky, progress=sample)
    assert sizes and set(sizes) == {PIPE_BYTES}, sizes
