"""Server targets and their providers: the table, URLs, local binaries, Debian chroots, Docker."""

from __future__ import annotations

import os
import re
import socket
import threading
from pathlib import Path
from urllib.parse import quote

import pymysql
import pytest

from backend.dbops import debian_roots, providers, sandbox, targets
from backend.dbops.errors import (
    DbOpsError,
    ProviderSkipped,
    ProvisionError,
    SandboxError,
    ServerUnavailable,
    UnknownTarget,
)
from backend.dbops.providers import acquire, parse_server_url
from backend.dbops.servers import find_local_binary, pid_alive, processes_in_root
from backend.dbops.targets import TARGETS, required_targets

# No Docker engine, whatever the machine has: the Docker provider then always says why.
NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


def local_target(target_id: str) -> bool:
    try:
        find_local_binary(TARGETS[target_id])
        return True
    except ProviderSkipped:
        return False


needs_local_10_11 = pytest.mark.skipif(not local_target("mariadb-10.11"), reason="no local MariaDB 10.11 binary")


def chroot_ready(target_id: str) -> bool:
    return os.geteuid() == 0 and debian_roots.provisioned(TARGETS[target_id]) is not None


def needs_chroot(target_id: str):
    return pytest.mark.skipif(
        not chroot_ready(target_id),
        reason=f"needs root and the {target_id} root built (invoke sandbox.provision {target_id})",
    )


# ---------------------------------------------------------------- the table


def test_the_target_table():
    assert list(TARGETS) == [
        "mysql-9.7",
        "mysql-8.4",
        "mysql-8.0",
        "mariadb-11.8",
        "mariadb-10.11",
        "mariadb-10.5",
        "mysql-5.7",
    ]
    recipes = {tid: (t.debian.suite, t.debian.packages) for tid, t in TARGETS.items() if t.debian}
    assert recipes["mariadb-10.5"] == ("bullseye", ("mariadb-server-core-10.5",))
    assert recipes["mariadb-11.8"] == ("trixie", ("mariadb-server",))
    assert recipes["mysql-9.7"] == ("sid", ("mysql-server-core",))
    for tid in ("mysql-8.4", "mysql-8.0", "mysql-5.7"):
        assert TARGETS[tid].debian is None and TARGETS[tid].docker_image == f"mysql:{tid.split('-')[1]}"
    assert TARGETS["mysql-9.7"].url_variable == "MATRIX_URL_MYSQL_9_7"
    assert TARGETS["mariadb-10.11"].url_variable == "MATRIX_URL_MARIADB_10_11"
    target = TARGETS["mariadb-10.11"]
    assert target.matches("mariadb", "10.11.19") and target.matches("mariadb", "10.11")
    assert not target.matches("mariadb", "10.1.48") and not target.matches("mysql", "10.11.19")
    assert not TARGETS["mariadb-10.5"].matches("mariadb", "10.50.1")


def test_unknown_target_is_a_clear_error():
    with pytest.raises(UnknownTarget, match=r"unknown server 'postgres-16': choose from mysql-9\.7, .*mysql-5\.7"):
        with acquire("postgres-16"):
            pass


def test_required_targets():
    assert required_targets("") == frozenset()
    assert required_targets(None) == frozenset()
    assert required_targets("all") == frozenset(TARGETS)
    assert required_targets(" mariadb-10.5 , mysql-9.7,") == {"mariadb-10.5", "mysql-9.7"}
    with pytest.raises(UnknownTarget, match="mysql-9.9"):
        required_targets("mariadb-10.5,mysql-9.9")
    assert required_targets("MariaDB") == {"mariadb-11.8", "mariadb-10.11", "mariadb-10.5"}


def test_targets_are_chosen_by_id_tag_or_all_in_the_table_order():
    assert targets.select_targets(["all"]) == list(TARGETS)
    assert targets.select_targets(["mysql-5.7", "mariadb", "mariadb-10.5"]) == [
        "mariadb-11.8",
        "mariadb-10.11",
        "mariadb-10.5",
        "mysql-5.7",
    ]
    assert targets.select_targets(["mysql"]) == ["mysql-9.7", "mysql-8.4", "mysql-8.0", "mysql-5.7"]
    assert targets.select_targets([]) == []
    assert targets.select_targets(["debian"]) == ["mysql-9.7", "mariadb-11.8", "mariadb-10.11", "mariadb-10.5"]
    assert TARGETS["mysql-9.7"].tags == ("mysql", "debian") and TARGETS["mysql-8.0"].tags == ("mysql",)
    with pytest.raises(UnknownTarget, match="unknown server 'maria'"):
        targets.select_targets(["maria"])


# ---------------------------------------------------------------- the url provider


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://root:secret@db.internal:3307", ("db.internal", 3307, "root", "secret")),
        ("mysql+pymysql://u:p%40ss%3Bw@127.0.0.1", ("127.0.0.1", 3306, "u", "p@ss;w")),
        ("mariadb://app@localhost:3306/ignored", ("localhost", 3306, "app", "")),
        ("mysql://127.0.0.1:13306", ("127.0.0.1", 13306, "root", "")),
    ],
)
def test_server_url_parsing(url, expected):
    assert parse_server_url(url) == expected


@pytest.mark.parametrize("url", ["postgresql://u:p@h:5432", "mysql://", "mysql://u:p@h:notaport", "h:3306"])
def test_malformed_server_urls_are_refused_without_echoing_them(url):
    with pytest.raises(DbOpsError, match="MATRIX_URL_X is not a mysql://") as error:
        parse_server_url(url, "MATRIX_URL_X")
    assert "p@h" not in str(error.value)


def _server_url(mysql_server) -> str:
    return (
        f"mysql://{quote(mysql_server.user, safe='')}:{quote(mysql_server.password, safe='')}"
        f"@{mysql_server.host}:{mysql_server.port}"
    )


def _version(mysql_server) -> tuple[str, str]:
    connection = mysql_server.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT VERSION()")
            full = cursor.fetchone()[0]
    finally:
        connection.close()
    from backend.dbops.connection import parse_server_version

    info = parse_server_version(full)
    return info.flavour, info.version


def test_a_url_serves_its_target_and_alone_decides(mysql_server):
    flavour, version = _version(mysql_server)
    served = next((t for t in TARGETS.values() if t.matches(flavour, version)), None)
    if served is None:
        pytest.skip(f"the test server ({flavour} {version}) is not a matrix target")
    url = _server_url(mysql_server)
    with acquire(served.id, environ={served.url_variable: url, **NO_DOCKER}) as handle:
        assert (handle.provider, handle.host, handle.port) == ("url", mysql_server.host, mysql_server.port)
        assert handle.password == mysql_server.password and handle.password not in repr(handle)
        assert handle.version == version

    other = next(t for t in TARGETS.values() if not t.matches(flavour, version))
    with pytest.raises(ServerUnavailable) as error:
        with acquire(other.id, environ={other.url_variable: url, **NO_DOCKER}):
            pass
    # Only the URL was tried: no other server may stand in for the one the user named.
    assert [provider for provider, _ in error.value.reasons] == ["url"]
    assert f"points at {flavour} {version}, not {other.label}" in str(error.value)
    assert mysql_server.password not in str(error.value)


def test_an_unreachable_url_is_a_reason_without_secrets():
    from backend.dbops.servers import free_port

    env = {"MATRIX_URL_MYSQL_9_7": f"mysql://u:topsecret@127.0.0.1:{free_port()}", **NO_DOCKER}
    with pytest.raises(ServerUnavailable, match=r"url: cannot connect to 127\.0\.0\.1:\d+") as error:
        with acquire("mysql-9.7", environ=env):
            pass
    assert "topsecret" not in str(error.value) and "\n" not in str(error.value)


# ---------------------------------------------------------------- local binaries


@needs_local_10_11
def test_the_local_provider_serves_mariadb_10_11_and_removes_it(tmp_path):
    with acquire("mariadb-10.11", work_dir=tmp_path, environ=NO_DOCKER) as handle:
        assert handle.provider == "local" and handle.flavour == "mariadb" and handle.version.startswith("10.11.")
        assert 0 < handle.startup_seconds < 60
        instance = handle.instance
        assert instance is not None and instance.is_running() and instance.base_dir.parent == tmp_path
        # Reachable over TCP with the user and its password, as the Alembic code connects.
        connection = pymysql.connect(host=handle.host, port=handle.port, user=handle.user, password=handle.password)
        with connection.cursor() as cursor:
            cursor.execute("CREATE DATABASE matrix_probe")
        connection.close()
    assert not pid_alive(instance.pid)
    assert not instance.base_dir.exists()


@needs_local_10_11
def test_the_server_is_removed_also_when_the_body_raises(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with acquire("mariadb-10.11", work_dir=tmp_path, environ=NO_DOCKER) as handle:
            instance = handle.instance
            raise RuntimeError("boom")
    assert instance is not None and not pid_alive(instance.pid)
    assert not instance.base_dir.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_target_nobody_serves_names_every_provider_tried():
    with pytest.raises(ServerUnavailable) as error:
        with acquire("mysql-5.7", environ=NO_DOCKER):
            pass
    reasons = dict(error.value.reasons)
    assert list(reasons) == ["url", "local", "chroot", "docker"]
    assert reasons["url"] == "MATRIX_URL_MYSQL_5_7 is not set"
    assert reasons["local"].startswith("no local MySQL 5.7 binary (found:")
    assert reasons["chroot"] == "no Debian suite ships MySQL 5.7"
    assert reasons["docker"] == "no Docker engine (/nonexistent/docker.sock does not exist)"
    assert error.value.lines()[0] == "url: MATRIX_URL_MYSQL_5_7 is not set"
    assert "\n" not in str(error.value)


def test_providers_can_be_limited():
    with pytest.raises(ServerUnavailable) as error:
        with acquire("mariadb-10.11", environ={}, providers=("docker",)):
            pass
    assert [provider for provider, _ in error.value.reasons] == ["docker"]


# ---------------------------------------------------------------- Docker


def test_docker_engine_detection(tmp_path):
    assert (
        providers.docker_engine_problem({"DOCKER_HOST": "unix:///nonexistent/d.sock"})
        == "no Docker engine (/nonexistent/d.sock does not exist)"
    )
    path = tmp_path / "d.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def answer():
        connection, _ = listener.accept()
        connection.recv(256)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
        connection.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        assert providers.docker_engine_problem({"DOCKER_HOST": f"unix://{path}"}) is None
    finally:
        thread.join(5)
        listener.close()
    # A socket file nobody listens on.
    assert "no Docker engine answers" in (providers.docker_engine_problem({"DOCKER_HOST": f"unix://{path}"}) or "")


# ---------------------------------------------------------------- provisioning (without the network)


@pytest.fixture
def fake_build(monkeypatch, tmp_path):
    """provision() with debootstrap and apt-get replaced by a stub that writes a few files."""
    calls = []

    def build(target, debootstrap, root, log, progress):
        calls.append(target.id)
        (root / "usr/sbin").mkdir(parents=True)
        (root / "tmp").mkdir()
        (root / "usr/sbin/mariadbd").write_text("stub")

    monkeypatch.setattr(debian_roots, "_build_root", build)
    monkeypatch.setattr(debian_roots, "server_flavour", lambda binary, chroot=None: ("mariadb", "10.5.23"))
    monkeypatch.setattr(debian_roots, "find_program", lambda *names: "/usr/sbin/debootstrap")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    return {"calls": calls, "env": {"SERVER_CACHE_DIR": str(tmp_path / "cache")}, "cache": tmp_path / "cache"}


def test_provisioning_happens_once_and_is_marked_last(fake_build):
    env, cache = fake_build["env"], fake_build["cache"]
    said: list[str] = []
    first = debian_roots.provision("mariadb-10.5", env, said.append)
    assert first["reused"] is False and first["version"] == "10.5.23" and fake_build["calls"] == ["mariadb-10.5"]
    assert (cache / "mariadb-10.5" / "provisioned.json").is_file()
    assert debian_roots.chroot_root(TARGETS["mariadb-10.5"], env) == cache / "mariadb-10.5" / "root"
    assert said[0] == (
        f"mariadb-10.5 root: building Debian bullseye with mariadb-server-core-10.5 (once, in "
        f"{cache / 'mariadb-10.5'}; log provision.log there)"
    )
    assert said[-1].startswith("mariadb-10.5 root: built in 0:0") and said[-1].endswith("MB), mariadb 10.5.23")
    said.clear()
    again = debian_roots.provision("mariadb-10.5", env, said.append)
    assert again["reused"] is True and fake_build["calls"] == ["mariadb-10.5"]
    assert said == []  # a root built before is not worth a word


def test_roots_are_prepared_for_the_targets_no_local_binary_serves(fake_build, monkeypatch):
    def local(target):
        if target.id == "mariadb-10.11":
            return "/usr/sbin/mariadbd"
        raise ProviderSkipped(f"no local {target.label} binary")

    monkeypatch.setattr(debian_roots, "find_local_binary", local)
    prepared = debian_roots.prepare_roots(["mariadb-10.11", "mariadb-10.5", "mysql-8.0"], fake_build["env"])
    assert [item.target for item in prepared] == ["mariadb-10.11", "mariadb-10.5", "mysql-8.0"]
    assert prepared[0].local_binary == "/usr/sbin/mariadbd" and prepared[0].marker is None
    assert prepared[1].marker is not None and prepared[1].marker["version"] == "10.5.23" and not prepared[1].error
    assert prepared[2].error == "no Debian suite ships MySQL 8.0" and prepared[2].marker is None
    assert fake_build["calls"] == ["mariadb-10.5"]


def test_a_long_build_step_says_how_it_goes_until_it_ends(tmp_path):
    """Each step says when it starts, then every interval its time and the log's last line."""
    log_path, released = tmp_path / "provision.log", tmp_path / "released"
    said: list[str] = []

    def say(line: str) -> None:
        said.append(line)
        if line.endswith("elapsed: Get:2 drawn"):
            released.touch()  # the step has been seen going on, with its last drawn line: let it end

    progress = debian_roots._BuildProgress(TARGETS["mariadb-10.5"], log_path, say, interval=0.2)
    step = [
        "sh",
        "-c",
        f"echo 'I: Retrieving libc6'; printf 'Get:1 half\\rGet:2 drawn\\n'; "
        f"while [ ! -e {released} ]; do sleep 0.05; done; echo done",
    ]
    with open(log_path, "wb") as log:
        debian_roots._run_logged(step, log, "debootstrap", 120, progress)
    assert said[0] == "mariadb-10.5 root: debootstrap (at 0:00)"
    assert re.fullmatch(r"mariadb-10\.5 root: debootstrap, \d+:\d\d elapsed: Get:2 drawn", said[-1]), said
    assert log_path.read_text().endswith("done\n")

    failing = ["sh", "-c", "echo 'E: Unable to locate package'; exit 100"]
    with (
        open(log_path, "ab") as log,
        pytest.raises(ProvisionError, match="apt-get install failed with exit code 100"),
    ):
        debian_roots._run_logged(failing, log, "apt-get install", 120, progress)


def test_a_half_provisioned_root_is_removed_and_built_again(fake_build):
    env, cache = fake_build["env"], fake_build["cache"]
    half = cache / "mariadb-10.5" / "root" / "var"
    half.mkdir(parents=True)
    (half / "leftover").write_text("interrupted")
    debian_roots.provision("mariadb-10.5", env)
    assert fake_build["calls"] == ["mariadb-10.5"]
    assert not (half / "leftover").exists()


def test_two_processes_do_not_provision_the_same_target_at_once(fake_build, monkeypatch):
    env = fake_build["env"]
    build = debian_roots._build_root
    inside = []
    waiting = threading.Event()
    said: list[str] = []

    def say(line: str) -> None:
        said.append(line)
        if "another process is building it, waiting" in line:
            waiting.set()

    def slow_build(*args):
        inside.append(1)
        assert len(inside) == 1, "two builds at once"
        # The build goes on until the other caller has met the lock and said that it waits.
        assert waiting.wait(60), "the second caller never waited for the lock"
        build(*args)
        inside.pop()

    monkeypatch.setattr(debian_roots, "_build_root", slow_build)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(debian_roots.provision("mariadb-10.5", env, say)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert sorted(result["reused"] for result in results) == [False, True]
    assert fake_build["calls"] == ["mariadb-10.5"]
    lock = fake_build["cache"] / "mariadb-10.5.lock"
    assert f"mariadb-10.5 root: another process is building it, waiting (0:00 so far; {lock})" in said


def test_a_failed_build_leaves_no_marker(fake_build, monkeypatch):
    env, cache = fake_build["env"], fake_build["cache"]

    def broken(target, debootstrap, root, log, progress):
        root.mkdir(parents=True)
        log.write(b"E: Unable to locate package mariadb-server-core-10.5\n")
        raise ProvisionError("apt-get install failed with exit code 100")

    monkeypatch.setattr(debian_roots, "_build_root", broken)
    with pytest.raises(ProvisionError, match="bullseye root failed: apt-get install failed.*Unable to locate"):
        debian_roots.provision("mariadb-10.5", env)
    assert not (cache / "mariadb-10.5" / "provisioned.json").exists()


def test_provisioning_needs_a_recipe():
    with pytest.raises(ProviderSkipped, match="no Debian suite ships MySQL 8.0"):
        debian_roots.provision("mysql-8.0")


def test_a_changed_recipe_makes_the_root_stale(fake_build, monkeypatch):
    env = fake_build["env"]
    debian_roots.provision("mariadb-10.5", env)
    target = TARGETS["mariadb-10.5"]
    assert target.debian is not None
    changed = targets.Target(
        target.id,
        target.flavour,
        target.version,
        targets.DebianRecipe("bullseye", ("mariadb-server-10.5",), target.debian.binary),
    )
    monkeypatch.setitem(TARGETS, "mariadb-10.5", changed)
    assert debian_roots.provisioned(changed, env) is None


# ---------------------------------------------------------------- Debian chroots (built once, root only)


@pytest.mark.slow
@pytest.mark.parametrize("target_id", ["mariadb-10.5", "mariadb-11.8", "mysql-9.7"])
def test_a_chroot_server_runs_and_is_removed(target_id):
    if not chroot_ready(target_id):
        pytest.skip(f"needs root and the {target_id} root built")
    root = debian_roots.chroot_root(TARGETS[target_id])
    with acquire(target_id, environ=NO_DOCKER, providers=("chroot",)) as handle:
        assert handle.provider == "chroot" and TARGETS[target_id].matches(handle.flavour, handle.version)
        instance = handle.instance
        assert instance is not None and instance.chroot == str(root) and instance.base_dir.parent == root / "tmp"
        connection = pymysql.connect(host=handle.host, port=handle.port, user=handle.user, password=handle.password)
        with connection.cursor() as cursor:
            cursor.execute("SELECT VERSION()")
            ((version,),) = cursor.fetchall()
            assert version.startswith(TARGETS[target_id].version)
        connection.close()
    assert not pid_alive(instance.pid)
    assert not instance.base_dir.exists()
    assert processes_in_root(root, instance.inside(instance.base_dir) + "/") == []


# ---------------------------------------------------------------- the sandbox on a chosen server


@needs_local_10_11
def test_sandbox_up_on_a_chosen_local_server(tmp_path):
    folder = tmp_path / "sandbox"
    state, started = sandbox.up(folder, server="mariadb-10.11")
    try:
        instance = state.instance
        assert started and state.running and state.server == "mariadb-10.11" and instance is not None
        assert instance.version.startswith("10.11.") and not instance.chroot
        with pytest.raises(SandboxError, match="the sandbox runs mariadb-10.11: stop it"):
            sandbox.up(folder, server="mariadb-10.5")
        assert sandbox.up(folder)[1] is False  # no server named: the running one is fine
    finally:
        sandbox.down(folder)
    assert not pid_alive(instance.pid) and not folder.exists()


def test_sandbox_up_refuses_an_unknown_server_before_starting(tmp_path):
    with pytest.raises(UnknownTarget):
        sandbox.up(tmp_path / "sandbox", server="mysql-4.0")
    with pytest.raises(SandboxError, match="either a server or a binary"):
        sandbox.up(tmp_path / "sandbox", server="mariadb-10.11", binary="/usr/sbin/mariadbd")
    assert not (tmp_path / "sandbox").exists()


@pytest.mark.slow
@needs_chroot("mariadb-10.5")
def test_sandbox_up_on_a_chroot_server_outlives_the_call_until_down(tmp_path):
    folder = tmp_path / "sandbox"
    state, _ = sandbox.up(folder, server="mariadb-10.5")
    try:
        instance = state.instance
        assert instance is not None and instance.chroot and instance.version.startswith("10.5.")
        assert Path(instance.base_dir).is_relative_to(instance.chroot)
        assert sandbox.status(folder).running
        assert "(Debian chroot)" in sandbox.status(folder).describe()
    finally:
        sandbox.down(folder)
    assert not pid_alive(instance.pid)
    assert not instance.base_dir.exists() and not folder.exists()
