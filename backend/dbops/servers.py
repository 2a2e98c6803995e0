"""Throwaway MySQL/MariaDB server instances from the binaries installed on this machine.

Used by the sandbox (`invoke sandbox.up`), the test fixtures and the server matrix:
initialise a data folder, start the server on a free port bound to 127.0.0.1, wait until
it answers, stop it. A server may also run inside a Debian chroot (see debian_roots.py): its
binary and data folder are then paths inside that root, reached from here through it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import search_path
from .errors import ProviderSkipped, SandboxError

if TYPE_CHECKING:
    from .targets import Target

SEARCH_PATH = ("/usr/sbin", "/usr/local/sbin", "/usr/local/mysql/bin", "/usr/bin")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def find_program(*names: str) -> str | None:
    search = os.pathsep.join([search_path(), *SEARCH_PATH])
    for name in names:
        found = shutil.which(name, path=search)
        if found:
            return found
    return None


def find_server_binary() -> str:
    binary = find_program("mariadbd", "mysqld")
    if binary is None:
        raise SandboxError(
            "no MySQL or MariaDB server binary found: install one (apt-get install mariadb-server) "
            "or point MYSQL_* at an existing server"
        )
    return binary


def in_root(command: list[str], chroot: str | Path | None) -> list[str]:
    """The command as run inside chroot (unchanged without one)."""
    return ["chroot", str(chroot), *command] if chroot else command


# A clean environment for programs inside a chroot: the host's PATH and locale may not exist there.
CHROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "HOME": "/root"}


def server_flavour(binary: str, chroot: str | Path | None = None) -> tuple[str, str]:
    """("mariadb" | "mysql", version) as the binary reports it."""
    try:
        output = subprocess.run(
            in_root([binary, "--version"], chroot),
            capture_output=True,
            text=True,
            timeout=30,
            env=CHROOT_ENV if chroot else None,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxError(f"cannot run {binary} --version: {exc}") from None
    flavour = "mariadb" if "mariadb" in output.lower() else "mysql"
    version = next((word for word in output.split() if word[:1].isdigit() and "." in word), "unknown")
    return flavour, version.split("-")[0]


def local_binaries() -> list[tuple[str, str, str]]:
    """(path, flavour, version) of each distinct server binary on PATH and in the usual folders."""
    search = os.pathsep.join([search_path(), *SEARCH_PATH])
    found, seen = [], set()
    for name in ("mariadbd", "mysqld"):
        for folder in search.split(os.pathsep):
            path = Path(folder or ".") / name
            if not (path.is_file() and os.access(path, os.X_OK)):
                continue
            real = os.path.realpath(path)
            if real in seen:
                continue
            seen.add(real)
            try:
                flavour, version = server_flavour(str(path))
            except SandboxError:
                continue
            found.append((str(path), flavour, version))
    return found


def find_local_binary(target: Target) -> str:
    """A local binary that reports exactly the target's version."""
    binaries = local_binaries()
    for path, flavour, version in binaries:
        if target.matches(flavour, version):
            return path
    have = ", ".join(f"{flavour} {version}" for _, flavour, version in binaries) or "none"
    raise ProviderSkipped(f"no local {target.label} binary (found: {have})")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


@dataclass
class ServerInstance:
    """A running throwaway server. Root has no password and is reachable on the socket."""

    base_dir: Path
    binary: str
    flavour: str
    version: str
    port: int
    pid: int = 0
    host: str = "127.0.0.1"
    # Host path of the Debian root the server runs in; empty for a server of this machine.
    chroot: str = ""

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_path(self) -> Path:
        return self.base_dir / "mysqld.sock"

    @property
    def tmp_dir(self) -> Path:
        return self.base_dir / "tmp"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "server.log"

    def inside(self, path: Path) -> str:
        """path as the server sees it (relative to its chroot, if any)."""
        if not self.chroot:
            return str(path)
        return "/" + str(Path(path).relative_to(self.chroot))

    def to_dict(self) -> dict:
        state = asdict(self)
        state["base_dir"] = str(self.base_dir)
        return state

    @classmethod
    def from_dict(cls, state: dict) -> ServerInstance:
        fields = {key: state[key] for key in cls.__dataclass_fields__ if key in state}
        fields["base_dir"] = Path(fields["base_dir"])
        return cls(**fields)

    def is_running(self) -> bool:
        return bool(self.pid) and pid_alive(self.pid)

    def root_connection(self):
        import pymysql

        return pymysql.connect(
            unix_socket=str(self.socket_path), user="root", password="", connect_timeout=5, autocommit=True
        )

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text[-lines:])


def _user_args() -> list[str]:
    # Both servers refuse to run as root unless told so explicitly.
    return ["--user=root"] if os.geteuid() == 0 else []


def _find_installer(instance: ServerInstance) -> str | None:
    names = ("mariadb-install-db", "mysql_install_db")
    if not instance.chroot:
        return find_program(*names)
    for folder in ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/scripts"):
        for name in names:
            if (Path(instance.chroot + folder) / name).exists():
                return f"{folder}/{name}"
    return None


def _initialise(instance: ServerInstance) -> None:
    instance.data_dir.mkdir(parents=True, exist_ok=True)
    instance.tmp_dir.mkdir(parents=True, exist_ok=True)
    # A private temporary folder: bootstraps running side by side in /tmp collide on temporary tables.
    tmpdir = f"--tmpdir={instance.inside(instance.tmp_dir)}"
    if instance.flavour == "mariadb":
        installer = _find_installer(instance)
        if installer is None:
            raise SandboxError("mariadb-install-db not found: install mariadb-server")
        command = [
            installer,
            "--no-defaults",
            f"--datadir={instance.inside(instance.data_dir)}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            tmpdir,
            *_user_args(),
        ]
        if instance.chroot:
            # Inside a chroot the host name does not resolve, which it refuses without --force.
            command.append("--force")
    else:
        command = [
            instance.binary,
            "--no-defaults",
            "--initialize-insecure",
            f"--datadir={instance.inside(instance.data_dir)}",
            tmpdir,
            *_user_args(),
        ]
    with open(instance.base_dir / "install.log", "wb") as log:
        result = subprocess.run(
            in_root(command, instance.chroot),
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=300,
            env=CHROOT_ENV if instance.chroot else None,
        )
    if result.returncode != 0:
        lines = (instance.base_dir / "install.log").read_text(errors="replace").strip().splitlines()
        errors = [line.strip() for line in lines if "ERROR" in line] or lines[-3:]
        raise SandboxError(f"initialising {instance.data_dir} failed: {' | '.join(errors[:3])}")


def _server_command(instance: ServerInstance, extra_args: tuple[str, ...] = ()) -> list[str]:
    instance.tmp_dir.mkdir(parents=True, exist_ok=True)
    command = [
        instance.binary,
        "--no-defaults",
        f"--datadir={instance.inside(instance.data_dir)}",
        f"--port={instance.port}",
        "--bind-address=127.0.0.1",
        f"--socket={instance.inside(instance.socket_path)}",
        f"--pid-file={instance.inside(instance.base_dir / 'mysqld.pid')}",
        f"--log-error={instance.inside(instance.log_path)}",
        # A private temporary folder: a shared /tmp may be cleaned under a running server.
        f"--tmpdir={instance.inside(instance.tmp_dir)}",
        "--skip-name-resolve",
        "--innodb-buffer-pool-size=128M",
        "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_unicode_ci",
        *_user_args(),
        *extra_args,
    ]
    if instance.flavour == "mysql":
        command += ["--mysqlx=OFF", "--secure-file-priv="]
    return in_root(command, instance.chroot)


def _wait_until_ready(instance: ServerInstance, process: subprocess.Popen, timeout: float) -> None:
    import pymysql

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SandboxError(f"the server exited while starting: {instance.log_tail()}")
        try:
            instance.root_connection().close()
            return
        except pymysql.err.Error:
            time.sleep(0.1)
    stop_instance(instance)
    raise SandboxError(f"the server did not answer within {timeout:.0f} s: {instance.log_tail()}")


def start_instance(
    base_dir: Path,
    port: int | None = None,
    binary: str | None = None,
    chroot: str | Path | None = None,
    extra_args: tuple[str, ...] = (),
) -> ServerInstance:
    """Initialise base_dir/data when empty and start a server; return once it answers.

    With chroot, binary is a path inside that root and base_dir a host path below it;
    extra_args are more server options (e.g. --log-bin for a benchmark).
    """
    if chroot and not binary:
        raise SandboxError("a server in a chroot needs the path of its binary")
    binary = binary or find_server_binary()
    chroot = str(Path(chroot).resolve()) if chroot else ""
    flavour, version = server_flavour(binary, chroot)
    base_dir = Path(base_dir).resolve()
    if chroot and not base_dir.is_relative_to(chroot):
        raise SandboxError(f"{base_dir} is not inside the chroot {chroot}")
    base_dir.mkdir(parents=True, exist_ok=True)
    instance = ServerInstance(
        base_dir=base_dir, binary=binary, flavour=flavour, version=version, port=port or free_port(), chroot=chroot
    )
    if len(str(instance.socket_path)) > 100:
        raise SandboxError(f"folder path too long for a Unix socket: {base_dir}")
    if not (instance.data_dir / "mysql").is_dir():
        _initialise(instance)
    with open(os.devnull, "rb") as stdin, open(base_dir / "server.out", "ab") as out:
        # A session of its own: the server outlives the command that started it
        # and a Ctrl-C in that terminal does not reach it.
        process = subprocess.Popen(
            _server_command(instance, extra_args),
            stdin=stdin,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=CHROOT_ENV if chroot else None,
        )
    instance.pid = process.pid
    try:
        _wait_until_ready(instance, process, START_TIMEOUT)
    except BaseException:
        stop_instance(instance, timeout=5.0)  # exited, timed out or interrupted: leave nothing running
        raise
    return instance


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
            if finished:
                return True
        except ChildProcessError:
            # Not our child (started by an earlier command): poll instead.
            if not pid_alive(pid):
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM, then SIGKILL after timeout."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if _wait_gone(pid, timeout):
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    _wait_gone(pid, 5.0)


def processes_in_root(chroot: str | Path, mentioning: str = "") -> list[int]:
    """Pids whose root folder is chroot (and whose command line contains mentioning)."""
    root = os.path.realpath(chroot)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if os.readlink(entry / "root") != root:
                continue
            if mentioning and mentioning not in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace"
            ):
                continue
        except OSError:
            continue  # gone meanwhile, or not ours to inspect
        found.append(int(entry.name))
    return found


def kill_processes_in_root(chroot: str | Path, mentioning: str = "") -> None:
    """SIGKILL the processes processes_in_root finds (those gone meanwhile do not matter)."""
    for pid in processes_in_root(chroot, mentioning):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def stop_instance(instance: ServerInstance, timeout: float = STOP_TIMEOUT) -> None:
    """Stop the server (SIGTERM, then SIGKILL after timeout).

    For a chroot server also any process left in that root working on this instance's
    folder (e.g. an install script): other instances may share the root, so not all of them.
    """
    if instance.pid:
        _terminate(instance.pid, timeout)
    if instance.chroot and Path(instance.chroot).is_dir():
        for pid in processes_in_root(instance.chroot, instance.inside(instance.base_dir) + "/"):
            _terminate(pid, 5.0)


def create_user(instance: ServerInstance, user: str, password: str | None = None) -> str:
    """Create a user allowed everything from 127.0.0.1; return its password."""
    password = password or secrets.token_urlsafe(18)
    connection = instance.root_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute("CREATE USER IF NOT EXISTS %s@'%%' IDENTIFIED BY %s", (user, password))
            cursor.execute("ALTER USER %s@'%%' IDENTIFIED BY %s", (user, password))
            cursor.execute("GRANT ALL PRIVILEGES ON *.* TO %s@'%%' WITH GRANT OPTION", (user,))
    finally:
        connection.close()
    return password
