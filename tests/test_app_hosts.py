"""Rolling restarts over SSH, against real sshd servers standing for application hosts.

Each host is an sshd on its own loopback address (127.0.0.x), with keys made in tmp_path; its
login environment (sshd's SetEnv) gives the service it starts its own address, pid file, log and
config file with the database password, as a host's own config.env would. The service listens
on the same APP_PORT on every host, as on real machines.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from backend.dbops.servers import pid_alive
from tests.command_line import assert_one_error_line
from tests.helpers import HEAD, app_pid, stop_process, wait_until

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(SSHD), reason="sshd is not installed (Debian's openssh-server)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the sshd hosts run as root, the user they log in"),
]


@dataclass
class Host:
    address: str  # 127.0.0.x
    ssh_port: int
    folder: Path
    process: subprocess.Popen

    @property
    def name(self) -> str:
        return f"{self.address}:{self.ssh_port}"

    @property
    def pid(self) -> int | None:
        return app_pid(self.folder / "app.pid")


def _free_port(*addresses: str) -> int:
    """A port free on the first address (and, as far as one can tell, on the others)."""
    while True:
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port = probe.getsockname()[1]
        try:
            for address in addresses[1:]:
                with socket.socket() as other:
                    other.bind((address, port))
            return port
        except OSError:
            continue


def _listening(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _keygen(path: Path) -> tuple[str, str]:
    """A new key pair at path; (type, public key)."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    key_type, key = Path(f"{path}.pub").read_text().split()[:2]
    return key_type, key


@pytest.fixture
def hosts(tmp_path, settings, created_database, request):
    """Three sshd 'hosts'; yields (hosts, env for the CLI). A host's password config is its own file."""
    count = getattr(request, "param", 3)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
    client_key = tmp_path / "id_client"
    key_type, key = _keygen(client_key)
    (tmp_path / "authorized_keys").write_text(f"{key_type} {key}\n")
    # Addresses chosen per test, so that tests running at once on this machine do not meet.
    base = 10 + os.getpid() % 200
    addresses = [f"127.0.{base}.{index + 2}" for index in range(count)]
    app_port = _free_port(*addresses)
    quoted = settings.password.replace("\\", "\\\\").replace("'", "\\'")
    started, known = [], []
    for index, address in enumerate(addresses):
        folder = tmp_path / f"host{index + 1}"
        folder.mkdir()
        (folder / "config.env").write_text(f"MYSQL_PASSWORD='{quoted}'\n")
        host_type, host_key = _keygen(folder / "host_key")
        ssh_port = _free_port(address)
        environment = {
            "DB_CONFIG_FILE": folder / "config.env",
            "MYSQL_HOST": settings.host,
            "MYSQL_PORT": settings.port,
            "MYSQL_USER": settings.user,
            "MYSQL_DATABASE": settings.database,
            "APP_HOST": address,
            "APP_PORT": app_port,
            "APP_PID_FILE": folder / "app.pid",
            "APP_LOG_FILE": folder / "app.log",
            "PYTHON": sys.executable,
        }
        set_env = " ".join(f'"{name}={value}"' for name, value in environment.items())
        (folder / "sshd_config").write_text(
            f"Port {ssh_port}\nListenAddress {address}\nHostKey {folder / 'host_key'}\n"
            f"PidFile {folder / 'sshd.pid'}\nAuthorizedKeysFile {tmp_path / 'authorized_keys'}\n"
            "StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            f"PermitRootLogin prohibit-password\nLogLevel ERROR\nSetEnv {set_env}\n"
        )
        process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(folder / "sshd_config")], stderr=open(folder / "sshd.log", "wb")
        )
        started.append(Host(address, ssh_port, folder, process))
        known.append(f"[{address}]:{ssh_port} {host_type} {host_key}\n")
    try:
        for host in started:
            wait_until(partial(_listening, host.address, host.ssh_port), f"sshd on {host.name}")
        (tmp_path / "known_hosts").write_text("".join(known))
        yield (
            started,
            {
                "APP_HOSTS": ",".join(host.name for host in started),
                "APP_PORT": str(app_port),
                "SSH_IDENTITY_FILE": str(client_key),
                "SSH_KNOWN_HOSTS": str(tmp_path / "known_hosts"),
                "HEALTH_RETRIES": "4",
                "HEALTH_TIMEOUT": "2",
            },
        )
    finally:
        for host in started:
            stop_process(host.pid)
            host.process.terminate()
            host.process.wait(timeout=10)


def test_roll_restarts_every_host_then_stops_at_the_first_that_fails(hosts, invoke, tmp_path):
    started, env = hosts
    result = invoke("db.upgrade", env=env)
    assert result.returncode == 0, result.output
    result = invoke("app.restart", env=env)
    assert result.returncode == 0, result.output
    assert "restarted 3 host(s), 1 at a time" in result.stdout
    first = [host.pid for host in started]
    assert all(first) and len(set(first)) == 3

    status = invoke("app.status", env=env)
    assert status.returncode == 0, status.output
    for host, pid in zip(started, first, strict=True):
        assert f"✅ {host.name}: revision {HEAD}, pid {pid}, up " in status.stdout

    # The second host's port is taken by another program: its new service cannot listen.
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the health checks' TIME_WAIT
    stop_process(started[1].pid)
    squatter.bind((started[1].address, int(env["APP_PORT"])))
    squatter.listen()
    try:
        result = invoke("app.restart", env=env)
        line = assert_one_error_line(result)
        assert f"rolling restart stopped at {started[1].name}: exit code 1" in line
        assert "already in use" in line
        assert line.endswith(f"not restarted: {started[2].name}")
        assert started[0].pid not in (None, first[0])  # restarted
        assert started[2].pid == first[2] and pid_alive(first[2])  # left on the code it runs
        status = invoke("app.status", env=env)
        assert status.returncode == 1
        assert f"❌ {started[1].name}: " in status.stdout
        assert f"1 of 3 host(s) not healthy: {started[1].name}" in status.stderr
    finally:
        squatter.close()

    # --hosts restarts only those named.
    result = invoke("app.restart", "--hosts", started[1].name, env=env)
    assert result.returncode == 0, result.output
    assert started[2].pid == first[2]


@pytest.mark.parametrize("hosts", [2], indirect=True)
def test_deploy_rolls_in_batches_and_records_each_host(hosts, invoke, tmp_path):
    started, env = hosts
    env = {**env, "APP_HOSTS_BATCH": "2"}
    report = tmp_path / "deploy.json"
    result = invoke("db.deploy", "--yes", "--report", str(report), env=env)
    assert result.returncode == 0, result.output
    restart = next(step for step in json.loads(report.read_text())["steps"] if step["name"] == "restart")
    assert restart["detail"] == "restarted 2 host(s), 2 at a time"
    assert [host["host"] for host in restart["hosts"]] == [host.name for host in started]
    for outcome in restart["hosts"]:
        assert outcome["status"] == "restarted"
        assert outcome["command_seconds"] > 0 and outcome["health_seconds"] >= 0
        assert f"revision {HEAD}" in outcome["detail"]


@pytest.mark.parametrize("hosts", [2], indirect=True)
def test_a_host_that_stays_unhealthy_fails_the_deploy_and_names_it(hosts, invoke, tmp_path):
    started, env = hosts
    # The first host's service cannot reach the database: /health answers 503.
    (started[0].folder / "config.env").write_text("MYSQL_PASSWORD='wrong password'\n")
    report = tmp_path / "deploy.json"
    result = invoke("db.deploy", "--yes", "--report", str(report), env=env)
    line = assert_one_error_line(result)
    assert f"restart failed: rolling restart stopped at {started[0].name}: health check of http://" in line
    assert f"not restarted: {started[1].name}" in line
    assert "the database is at" in line
    assert started[1].pid is None  # never started
    restart = json.loads(report.read_text())["steps"][-1]
    assert [host["status"] for host in restart["hosts"]] == ["failed", "not restarted"]


@pytest.mark.parametrize("hosts", [1], indirect=True)
def test_an_unknown_host_key_is_refused(hosts, invoke, tmp_path):
    started, env = hosts
    (tmp_path / "empty_known_hosts").write_text("")
    result = invoke("app.restart", env={**env, "SSH_KNOWN_HOSTS": str(tmp_path / "empty_known_hosts")})
    line = assert_one_error_line(result)
    assert f"{started[0].name}: its host key is not in {tmp_path / 'empty_known_hosts'}" in line
    assert started[0].pid is None


def test_bad_app_hosts_is_one_line(invoke):
    line = assert_one_error_line(invoke("app.status", env={"APP_HOSTS": "web1;reboot"}))
    assert "APP_HOSTS: 'web1;reboot' is not [user@]host[:port]" in line
