"""The password under a whole deploy (backup, upgrade, verify, restart), a restore and a failed deploy.

A watcher thread samples, as fast as it can, every process below the `invoke` process:
its command line and the environment it was given must not hold the password. The dump
client, the restart command and the restore's client are each held (by a lock the test
holds) until the watcher has seen them, so each is seen for sure however loaded the machine.
Afterwards the password is looked for in everything the commands left: their output (a
traceback included, with DB_DEBUG=1), the JSON reports, the backup manifests, and the tool's
tables. Every backup file is 0600, and every client read its options from an inherited pipe
(/dev/fd/N): no file ever held the password.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import stat
import subprocess
import tempfile
import threading
import uuid
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import quote

import pytest

from backend.config import Settings
from backend.dbops import admin
from backend.dbops.clients import _option_value
from tests.command_line import Spawned, run_invoke
from tests.faults.helpers import F1, PARK_SEQUENCE, clean_env, dump_parked, held_connection, park_dump, prepare
from tests.helpers import cmdline, descendants, query, statements_running, versions_with, wait_until

pytestmark = pytest.mark.faults("secrets")


class Watcher:
    """Samples the command line and environment of every process below one pid until stopped."""

    def __init__(self, root: subprocess.Popen, secrets: list[bytes]) -> None:
        self.root, self.secrets = root.pid, secrets
        # From the command it runs, not from /proc: Popen returns once the exec has begun, when
        # /proc/PID/cmdline may not show the new command yet. Spawned gives Popen a list.
        assert isinstance(root.args, list)
        self.root_argv = [os.fsencode(argument) for argument in root.args] + [b""]
        self.leaks: list[str] = []
        self.programs: set[str] = set()
        self.option_files: set[str] = set()  # what --defaults-file named, per client seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in descendants(self.root):
                self._sample(pid)

    def _sample(self, pid: int) -> None:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            return  # ended meanwhile
        if not argv or not argv[0] or argv == self.root_argv:
            return  # a zombie, or a child between fork and exec: still a copy of its parent
        program = os.path.basename(argv[0].decode(errors="replace"))
        self.programs.add(program)
        for secret in self.secrets:
            if secret in b" ".join(argv):
                self.leaks.append(f"command line of {program}: {cmdline(pid)}")
            if secret in environ:
                self.leaks.append(f"environment of {program}")
        for variable in (b"MYSQL_PWD=", b"MYSQL_PASSWORD="):
            if any(entry.startswith(variable) for entry in environ.split(b"\0")):
                self.leaks.append(f"{variable.decode()} in the environment of {program}")
        for argument in argv:
            if argument.startswith(b"--defaults-file="):
                self.option_files.add(f"{pid}:{argument.split(b'=', 1)[1].decode()}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def watched(env: dict[str, str], secrets: list[bytes], *args: str, hold=None) -> tuple[Spawned, Watcher]:
    """Run invoke ARGS under a watcher; hold(spawned, watcher) keeps a step waiting until it is seen."""
    spawned = Spawned(env, *args)
    watcher = Watcher(spawned.process, secrets)
    try:
        if hold is not None:
            hold(spawned, watcher)
        spawned.finish()
    finally:
        watcher.stop()
    return spawned, watcher


def leaks_in(text: str, secrets: list[bytes], where: str) -> list[str]:
    return [where for secret in secrets if secret.decode() in text]


@pytest.fixture
def secret_database(mysql_server, reference, tmp_path):
    """A seeded database at HEAD with the fault revisions pending (F1 then the next one)."""
    versions_env = versions_with(tmp_path, "faults")
    name = f"secret_{uuid.uuid4().hex[:10]}"
    settings = Settings(
        host=mysql_server.host,
        port=mysql_server.port,
        user=mysql_server.user,
        password=mysql_server.password,
        database=name,
        versions_dir=Path(versions_env["MIGRATIONS_DIR"]),
    )
    prepare(mysql_server, settings)
    yield name, versions_env
    admin.drop_database(settings)


def test_the_password_shows_nowhere(secret_database, mysql_server, cli_env, reference, fault_cases, tmp_path):
    name, versions_env = secret_database
    password = mysql_server.password
    assert password, "the test server's user must have a password"
    secrets = [password.encode(), quote(password, safe="").encode()]
    reports = tmp_path / "reports"
    reports.mkdir()
    # The restart waits for a file lock the test holds until the watcher has seen it.
    gate = tmp_path / "restart.gate"
    gate.touch()
    env = {
        **clean_env({**cli_env, "MYSQL_DATABASE": name}, reference, tmp_path),
        **versions_env,
        # The caller's MYSQL_PWD must not reach any child.
        "RESTART_COMMAND": f"flock {gate} true",
        "MYSQL_PWD": password,
        "DEPLOY_FULL_BACKUP": "1",  # the deploy runs the dump client too
    }
    before_temporary = set(Path(tempfile.gettempdir()).glob("dbops-*"))
    runs: list[tuple[str, Spawned, Watcher]] = []

    def hold_dump_and_restart(spawned: Spawned, watcher: Watcher) -> None:
        with open(gate) as restart_gate:
            fcntl.flock(restart_gate, fcntl.LOCK_EX)
            with ExitStack() as stack:
                park_dump(stack, mysql_server, name)
                wait_until(lambda: dump_parked(mysql_server), "the dump to reach the parked sequence")
                wait_until(lambda: watcher.option_files, "the watcher to see the dump client")
            query(mysql_server, f"DROP SEQUENCE IF EXISTS {PARK_SEQUENCE}", database=name)
            wait_until(
                lambda: "flock" in watcher.programs or spawned.process.poll() is not None,
                "the watcher to see the restart command",
            )

    def hold_restore(spawned: Spawned, watcher: Watcher) -> None:
        # alembic_version is the tool's: the restore leaves it in place, and its client waits
        # to replace it (the test's READ lock lets the tool read it meanwhile).
        with held_connection(mysql_server, name, "LOCK TABLES alembic_version READ"):
            wait_until(
                lambda: (
                    statements_running(mysql_server, "alembic_version", "metadata lock")
                    or spawned.process.poll() is not None
                ),
                "the restore's client to reach alembic_version",
            )
            wait_until(
                lambda: {"mariadb", "mysql"} & watcher.programs or spawned.process.poll() is not None,
                "the watcher to see the restore's client",
            )

    with fault_cases.case():
        deploy, watcher = watched(
            env, secrets, "db.deploy", "--to", F1, "--report", str(reports / "deploy.json"), hold=hold_dump_and_restart
        )
        assert deploy.process.returncode == 0, deploy.output
        assert {"mariadb-dump", "mysqldump"} & watcher.programs and "flock" in watcher.programs, watcher.programs
        runs.append(("deploy", deploy, watcher))

    backups = [path for path in (tmp_path / "backups").glob("*.sql.*") if not path.name.endswith(".json")]
    assert len(backups) == 1, list((tmp_path / "backups").iterdir())

    with fault_cases.case():
        restore, watcher = watched(env, secrets, "db.restore", str(backups[0]), "--yes", hold=hold_restore)
        assert restore.process.returncode == 0, restore.output
        assert {"mariadb", "mysql"} & watcher.programs, watcher.programs
        runs.append(("restore", restore, watcher))

    # The restore brought back the database as it was before the deploy, at HEAD. Now a deploy
    # that fails halfway and rolls back, then failures with the traceback asked for.
    failing_env = {**env, **versions_with(tmp_path / "failing", "halfway")}
    with fault_cases.case():
        failing, watcher = watched(failing_env, secrets, "db.deploy", "--report", str(reports / "failed.json"))
        assert failing.process.returncode == 1 and "rolled back" in failing.output, failing.output
        runs.append(("failed deploy", failing, watcher))
    for label, extra, args in (
        ("unreachable server", {"MYSQL_PORT": "1"}, ["db.check"]),
        ("failed upgrade", {}, ["db.upgrade"]),
    ):
        with fault_cases.case():
            spawned, watcher = watched({**failing_env, **extra, "DB_DEBUG": "1"}, secrets, *args)
            assert spawned.process.returncode != 0 and "Traceback" in spawned.output, spawned.output
            runs.append((label, spawned, watcher))

    with fault_cases.case():
        leaks = [leak for _, _, watcher in runs for leak in watcher.leaks]
        for label, spawned, _ in runs:
            leaks += leaks_in(spawned.output, secrets, f"output of the {label}")
        assert leaks == []

    with fault_cases.case():
        leaks = []
        for report in reports.iterdir():
            assert json.loads(report.read_text())["status"], report
            leaks += leaks_in(report.read_text(), secrets, f"report {report.name}")
        for path in (tmp_path / "backups").iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
            if path.name.endswith(".json"):
                leaks += leaks_in(path.read_text(), secrets, f"manifest {path.name}")
        for table in ("alembic_deploys", "alembic_journal", "alembic_lock"):
            rows = query(mysql_server, f"SELECT * FROM {table}", database=name)
            leaks += leaks_in(repr(rows), secrets, f"table {table}")
        assert leaks == []

    with fault_cases.case():
        option_files = {name for _, _, watcher in runs for name in watcher.option_files}
        assert len(option_files) >= 2  # the dump's and the restore's
        assert all(re.fullmatch(r"\d+:/dev/fd/\d+", name) for name in option_files), option_files
        assert set(Path(tempfile.gettempdir()).glob("dbops-*")) == before_temporary


def _holding(folder: Path, password: str) -> list[str]:
    """Files below folder holding the password, as it is or as an option file writes it."""
    secrets = [password.encode(), _option_value(password).encode()]
    found = []
    for path in folder.rglob("*"):
        try:
            if path.is_file() and any(secret in path.read_bytes() for secret in secrets):
                found.append(str(path.relative_to(folder)))
        except OSError:
            found.append(f"{path.relative_to(folder)} (unreadable)")
    return found


@pytest.mark.parametrize("command", ["backup", "restore"])
def test_sigkill_leaves_no_password_on_disk(command, secret_database, mysql_server, cli_env, reference, tmp_path):
    """SIGKILL of the tool while its dump or load client runs: no file anywhere in its temporary
    folder holds the password (the clients read it from a pipe), nor does any command line."""
    name, versions_env = secret_database
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {
        **clean_env({**cli_env, "MYSQL_DATABASE": name}, reference, tmp_path),
        **versions_env,
        "TMPDIR": str(temporary),
    }
    with ExitStack() as stack:
        if command == "backup":
            park_dump(stack, mysql_server, name)
            spawned = Spawned(env, "db.backup")
            wait_until(lambda: dump_parked(mysql_server), "the dump to reach the parked sequence")
        else:
            made = run_invoke(env, "db.backup")
            assert made.returncode == 0, made.output
            [backup_file] = [path for path in (tmp_path / "backups").glob("*.sql.*") if path.suffix != ".json"]
            # The dump's first statement replaces alembic_version, which the restore leaves in place
            # until then: a read lock on it holds the load client there.
            stack.enter_context(held_connection(mysql_server, name, "LOCK TABLES alembic_version READ"))
            spawned = Spawned(env, "db.restore", str(backup_file), "--yes")
            wait_until(
                lambda: statements_running(mysql_server, "DROP TABLE IF EXISTS `alembic_version`", "metadata lock"),
                "the load client to wait for alembic_version",
            )
        command_lines = {pid: cmdline(pid) for pid in descendants(spawned.pid)}
        spawned.sigkill()
        assert spawned.reap_orphans() == []  # the clients die with the tool
    clients = {"mariadb-dump", "mysqldump"} if command == "backup" else {"mariadb", "mysql"}
    assert {Path(line.split(" ", 1)[0]).name for line in command_lines.values()} & clients, command_lines
    assert [line for line in command_lines.values() if mysql_server.password in line] == []
    assert _holding(temporary, mysql_server.password) == []
    assert list(temporary.iterdir()) == []  # nothing else either
