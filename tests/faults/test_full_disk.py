"""The backup target fills up while the dump is written.

As root the test mounts a small tmpfs as BACKUP_DIR (unmounted afterwards); otherwise a file
size limit (RLIMIT_FSIZE) on the command stands in for it. Its size lets the free-space
estimate pass but not the dump itself: random bytes do not compress.
"""

from __future__ import annotations

import os
import resource
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.command_line import Spawned, assert_one_error_line, run_invoke
from tests.faults.helpers import F1, clean_env, db_state, fault_settings, prepare, unfinished_journal
from tests.helpers import query

pytestmark = pytest.mark.faults("full disk")

ROWS, ROW_BYTES = 800, 3000


@contextmanager
def small_disk(folder: Path, size: int) -> Iterator[object]:
    """folder holding at most about size bytes; yields a preexec_fn for the command (None with a tmpfs)."""
    folder.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
            capture_output=True,
        ).returncode
        == 0
    )
    try:
        if mounted:
            yield None
        else:
            yield lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def incompressible(settings, mysql_server, reference):
    """The seeded database plus a table of random bytes; returns (bytes of them, what the backup estimates)."""
    prepare(mysql_server, fault_settings(settings, reference.versions_env))
    query(
        mysql_server,
        "CREATE TABLE fault_blobs (id INT PRIMARY KEY, payload BLOB) ENGINE=InnoDB",
        database=settings.database,
    )
    connection = mysql_server.connect(settings.database)
    with connection.cursor() as cursor:
        cursor.executemany("INSERT INTO fault_blobs VALUES (%s, %s)", [(i, os.urandom(ROW_BYTES)) for i in range(ROWS)])
        cursor.execute("ANALYZE TABLE fault_blobs")
        cursor.fetchall()
        cursor.execute(
            "SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
            (settings.database,),
        )
        on_disk = int(cursor.fetchone()[0])
    connection.close()
    estimate = on_disk // 2  # backup.COMPRESSED_SHARE
    raw = ROWS * ROW_BYTES
    assert estimate < raw, (estimate, raw)
    return raw, estimate


def _fails_for_lack_of_room(incompressible, cli_env, reference, tmp_path: Path, *args: str):
    """Run invoke ARGS with the backup folder too small for the dump: (result, its error line, env).

    The one line names the folder and the cause; the partial file and the option file are gone.
    """
    raw, estimate = incompressible
    temp = tmp_path / "tmp"
    temp.mkdir()
    folder = tmp_path / "small"
    with small_disk(folder, (estimate + raw) // 2) as limit:
        env = clean_env(cli_env, reference, tmp_path, BACKUP_DIR=str(folder), TMPDIR=str(temp), DEPLOY_FULL_BACKUP="1")
        result = Spawned(env, *args, preexec_fn=limit).result()
        line = assert_one_error_line(result)
        assert "no space left" in line.lower() or "file too large" in line.lower(), line
        assert "unexpected" not in line and str(folder) in line, line
        assert list(folder.iterdir()) == []  # the partial file is gone
        assert list(temp.iterdir()) == []  # and the option file with the password
    return result, line, env


def test_backup_into_a_full_disk(incompressible, settings, cli_env, mysql_server, reference, tmp_path):
    before = db_state(mysql_server, settings.database)
    _, line, _ = _fails_for_lack_of_room(incompressible, cli_env, reference, tmp_path, "db.backup")
    assert "backup of" in line, line
    assert db_state(mysql_server, settings.database) == before


def test_deploy_stops_when_its_backup_does_not_fit(
    incompressible, settings, cli_env, mysql_server, reference, tmp_path
):
    before = db_state(mysql_server, settings.database)
    result, line, env = _fails_for_lack_of_room(incompressible, cli_env, reference, tmp_path, "db.deploy", "--to", F1)
    assert "backup failed" in line and "unchanged" in line, line
    assert "▶ upgrade" not in result.stdout
    assert db_state(mysql_server, settings.database) == before  # nothing upgraded
    assert unfinished_journal(mysql_server, settings.database) == []
    assert run_invoke(env, "db.deploy", "--to", F1).returncode == 0  # with room again, it goes through
