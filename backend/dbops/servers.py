"""Throwaway MySQL/MariaDB server instances from the binaries installed on this machine.

Used by the sandbox (`invoke sandbox.up`) and by the test fixtures: initialise a data
folder, start the server on a free port bound to 127.0.0.1, wait until it answers, stop it.
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

from .errors import SandboxError

SEARCH_PATH = ("/usr/sbin", "/usr/local/sbin", "/usr/local/mysql/bin", "/usr/bin")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def find_program(*names: str) -> str | None:
    search = os.pathsep.join([os.environ.get("PATH", ""), *SEARCH_PATH])
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


def server_flavour(binary: str) -> tuple[str, str]:
    """("mariadb" | "mysql", version) as the binary reports it."""
    try:
        output = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxError(f"cannot run {binary} --version: {exc}") from None
    flavour = "mariadb" if "mariadb" in output.lower() else "mysql"
    version = next((word for word in output.split() if word[:1].isdigit() and "." in word), "unknown")
    return flavour, version.split("-")[0]


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

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_path(self) -> Path:
        return self.base_dir / "mysqld.sock"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "server.log"

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


def _initialise(instance: ServerInstance) -> None:
    instance.data_dir.mkdir(parents=True, exist_ok=True)
    if instance.flavour == "mariadb":
        installer = find_program("mariadb-install-db", "mysql_install_db")
        if installer is None:
            raise SandboxError("mariadb-install-db not found: install mariadb-server")
        command = [
            installer,
            "--no-defaults",
            f"--datadir={instance.data_dir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *_user_args(),
        ]
    else:
        command = [
            instance.binary,
            "--no-defaults",
            "--initialize-insecure",
            f"--datadir={instance.data_dir}",
            *_user_args(),
        ]
    with open(instance.base_dir / "install.log", "wb") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=300)
    if result.returncode != 0:
        tail = (instance.base_dir / "install.log").read_text(errors="replace").strip().splitlines()[-3:]
        raise SandboxError(f"initialising {instance.data_dir} failed: {' | '.join(tail)}")


def _server_command(instance: ServerInstance) -> list[str]:
    command = [
        instance.binary,
        "--no-defaults",
        f"--datadir={instance.data_dir}",
        f"--port={instance.port}",
        "--bind-address=127.0.0.1",
        f"--socket={instance.socket_path}",
        f"--pid-file={instance.base_dir / 'mysqld.pid'}",
        f"--log-error={instance.log_path}",
        "--skip-name-resolve",
        "--innodb-buffer-pool-size=128M",
        "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_unicode_ci",
        *_user_args(),
    ]
    if instance.flavour == "mysql":
        command += ["--mysqlx=OFF", "--secure-file-priv="]
    return command


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


def start_instance(base_dir: Path, port: int | None = None, binary: str | None = None) -> ServerInstance:
    """Initialise base_dir/data when empty and start a server; return once it answers."""
    binary = binary or find_server_binary()
    flavour, version = server_flavour(binary)
    base_dir = Path(base_dir).resolve()
    base_dir.mkdir(parents=True, exist_ok=True)
    instance = ServerInstance(base_dir=base_dir, binary=binary, flavour=flavour, version=version, port=port or free_port())
    if len(str(instance.socket_path)) > 100:
        raise SandboxError(f"folder path too long for a Unix socket: {base_dir}")
    if not (instance.data_dir / "mysql").is_dir():
        _initialise(instance)
    with open(os.devnull, "rb") as stdin, open(base_dir / "server.out", "ab") as out:
        # A session of its own: the server outlives the command that started it
        # and a Ctrl-C in that terminal does not reach it.
        process = subprocess.Popen(
            _server_command(instance), stdin=stdin, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    instance.pid = process.pid
    _wait_until_ready(instance, process, START_TIMEOUT)
    return instance


def stop_instance(instance: ServerInstance, timeout: float = STOP_TIMEOUT) -> None:
    """Stop the server (SIGTERM, then SIGKILL after timeout)."""
    if not instance.pid:
        return
    try:
        os.kill(instance.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(instance.pid, os.WNOHANG)
            if finished:
                return
        except ChildProcessError:
            # Not our child (started by an earlier command): poll instead.
            if not pid_alive(instance.pid):
                return
        time.sleep(0.1)
    try:
        os.kill(instance.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


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
