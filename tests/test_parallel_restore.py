"""The parallel restore (parallel_load.py), against the real server.

The restored database must equal its source table by table (CHECKSUM TABLE) and row by row,
triggers must not fire during the load, and views, routines and triggers must come back; a
backup of an earlier version (pzstd's many frames) must restore the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import replace

import pytest

from backend.dbops import admin, migrate
from backend.dbops.backup import backup
from backend.dbops.backup_files import manifest_path
from backend.dbops.backup_verify import verify_backup
from backend.dbops.clients import find_client
from backend.dbops.parallel_load import load_parallel
from backend.dbops.restore import LOAD_SESSIONS, restore
from backend.dbops.tool_tables import TOOL_TABLES, VERSION_TABLE
from tests.helpers import checksums, query, run_sql

MESSAGES = 6000  # about 12 MB of dump: a dozen INSERT statements to spread over the sessions


@pytest.fixture
def source(settings, mysql_server, tmp_path):
    """A database at head with enough rows for several data statements, a trigger that would
    write a row per message if it fired during a load, a view and a procedure."""
    admin.create_database(settings)
    migrate.upgrade(settings)
    run_sql(
        mysql_server,
        settings.database,
        "INSERT INTO users (username, password_hash) VALUES ('amy', 'h1'), ('bo', 'h2')",
        "INSERT INTO chat_sessions (id, user_id, title) VALUES ('s1', 1, 'first'), ('s2', 2, 'second')",
        many=(
            "INSERT INTO chat_messages (session_id, user_id, role, content) VALUES (%s, %s, %s, %s)",
            [
                (f"s{1 + i % 2}", 1 + i % 2, "user", f"{i} it's ;\n(a),(b) \\ " + os.urandom(900).hex())
                for i in range(MESSAGES)
            ],
        ),
    )
    run_sql(
        mysql_server,
        settings.database,
        "CREATE TABLE message_log (id BIGINT AUTO_INCREMENT PRIMARY KEY, message_id BIGINT NOT NULL)",
        "INSERT INTO message_log (message_id) VALUES (1), (2)",
        "CREATE TRIGGER log_message AFTER INSERT ON chat_messages FOR EACH ROW "
        "INSERT INTO message_log (message_id) VALUES (NEW.id)",
        "CREATE VIEW message_counts AS SELECT session_id, COUNT(*) AS messages FROM chat_messages GROUP BY session_id",
        "CREATE PROCEDURE count_messages(OUT total BIGINT)\nBEGIN\n  SELECT COUNT(*) INTO total FROM chat_messages;\nEND",
    )
    return replace(settings, backup_dir=tmp_path / "backups")


@pytest.fixture
def target(mysql_server, database_name):
    name = f"{database_name}_restored"
    yield name
    run_sql(mysql_server, None, f"DROP DATABASE IF EXISTS `{name}`")


def all_rows(server, database: str, names: list[str]) -> dict[str, list[tuple]]:
    return {name: query(server, f"SELECT * FROM `{name}` ORDER BY 1", database=database) for name in names}


def routines(server, database: str) -> list[tuple]:
    return sorted(
        query(
            server,
            "SELECT 'trigger', TRIGGER_NAME, ACTION_STATEMENT FROM information_schema.TRIGGERS "
            "WHERE TRIGGER_SCHEMA = %s UNION ALL SELECT 'view', TABLE_NAME, VIEW_DEFINITION "
            "FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s UNION ALL SELECT 'routine', ROUTINE_NAME, "
            "ROUTINE_DEFINITION FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s",
            (database, database, database),
        )
    )


def tables(server, database: str) -> list[str]:
    """Base tables a backup holds: the tool's own left out, but for alembic_version."""
    rows = query(
        server,
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE'",
        (database,),
    )
    return sorted(name for (name,) in rows if name not in TOOL_TABLES or name == VERSION_TABLE)


def assert_same(server, source: str, restored: str) -> None:
    names = tables(server, source)
    assert "chat_messages" in names and tables(server, restored) == names
    # The keys added after the rows: the same definitions, in the same order.
    for name in names:
        assert query(server, f"SHOW CREATE TABLE `{name}`", database=restored) == query(
            server, f"SHOW CREATE TABLE `{name}`", database=source
        ), name
    assert checksums(server, restored, names) == checksums(server, source, names)
    assert all_rows(server, restored, names) == all_rows(server, source, names)
    assert [row[:2] for row in routines(server, restored)] == [row[:2] for row in routines(server, source)]
    assert query(server, "SELECT * FROM message_counts ORDER BY 1", database=restored) == query(
        server, "SELECT * FROM message_counts ORDER BY 1", database=source
    )


def test_parallel_restore_equals_the_source(source, mysql_server, target):
    path = backup(source).path
    result = restore(source, path, into=target)
    assert result.tables == result.manifest.tables
    assert_same(mysql_server, source.database, target)
    # The trigger came back after the rows: it did not fire during the load, and it works.
    assert query(mysql_server, "SELECT COUNT(*) FROM message_log", database=target) == [(2,)]
    run_sql(
        mysql_server,
        target,
        "INSERT INTO chat_messages (session_id, user_id, role, content) VALUES ('s1', 1, 'user', 'x')",
    )
    assert query(mysql_server, "SELECT COUNT(*) FROM message_log", database=target) == [(3,)]


def test_the_rows_are_spread_over_the_sessions(source, mysql_server, target):
    path = backup(source).path
    target_settings = replace(source, database=target)
    admin.create_database(target_settings)
    seen: list[tuple[int, int]] = []
    loaded = load_parallel(
        target_settings,
        find_client(["mariadb", "mysql"], "mysql client"),
        ["zstd", "-q", "-dc", str(path)],
        LOAD_SESSIONS,
        progress=lambda done, total: seen.append((done, total)),
        total=json.loads(manifest_path(path).read_text())["uncompressed_bytes"],
    )
    assert b"-- Dump completed" in loaded.tail
    assert len(loaded.statements) == LOAD_SESSIONS and all(count > 0 for count in loaded.statements), loaded
    assert seen[-1][0] == seen[-1][1]  # the progress ends at the dump's size
    assert_same(mysql_server, source.database, target)


SKIPPABLE_FRAME = b"\x50\x2a\x4d\x18"  # how a file of pzstd's starts: a skippable frame naming the next one's size


@pytest.mark.skipif(shutil.which("pzstd") is None, reason="pzstd is not installed (zstd package)")
def test_a_backup_of_pzstd_frames_restores_the_same(source, mysql_server, target):
    """Backups written by the previous version (pzstd: many independent frames, each after a
    skippable one) verify and restore as one frame does."""
    path = backup(source).path
    dump = subprocess.run(["zstd", "-q", "-dc", str(path)], capture_output=True, check=True).stdout
    frames = subprocess.run(["pzstd", "-q", "-1", "-p", "2", "-c"], input=dump, capture_output=True, check=True).stdout
    assert frames.startswith(SKIPPABLE_FRAME) and not path.read_bytes().startswith(SKIPPABLE_FRAME)
    path.write_bytes(frames)
    manifest = json.loads(manifest_path(path).read_text())
    manifest.update(bytes=len(frames), sha256=hashlib.sha256(frames).hexdigest())
    manifest_path(path).write_text(json.dumps(manifest))
    verify_backup(path)
    restore(source, path, into=target)
    assert_same(mysql_server, source.database, target)
