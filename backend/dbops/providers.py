"""The providers that can serve a server target (targets.py), tried in order until one does:

  url     a server the user runs, named by an environment variable per target
          (MATRIX_URL_MYSQL_9_7=mysql://user:pass@host:port); when set, it alone decides;
  local   a mariadbd/mysqld binary of this machine reporting exactly that version;
  chroot  a Debian suite shipping that version, in its Debian root (debian_roots.py), built
          the first time (root only);
  docker  the target's image through testcontainers, when a Docker engine answers.

`acquire()` yields a ServerHandle for a throwaway server reachable over TCP with a user and
password, and removes that server afterwards, also when the caller fails or is interrupted.
A target no provider can serve raises ServerUnavailable with one reason per provider tried.
What takes minutes (building a Debian root, starting a container) is told as it goes, line by
line, to the `say` callable the caller passes (nothing by default).

Environment variables are read from the `environ` argument (os.environ by default).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .debian_roots import Say, chroot_root, environ_or_os, provision, provisioned, silent
from .errors import DbOpsError, ProviderSkipped, ServerUnavailable
from .servers import (
    ServerInstance,
    create_user,
    find_local_binary,
    find_program,
    kill_processes_in_root,
    start_instance,
    stop_instance,
)
from .targets import Target, get_target

if TYPE_CHECKING:
    from ..config import Settings

MATRIX_USER = "matrix"
DOCKER_TIMEOUT = 3.0


@dataclass
class ServerHandle:
    """A server ready for the matrix: reachable over TCP with user and password."""

    target: str
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    flavour: str = ""
    version: str = ""
    provider: str = ""
    startup_seconds: float = 0.0
    # Time spent building the target's Debian root in this call (0 when reused).
    provision_seconds: float = 0.0
    instance: ServerInstance | None = None

    def settings(self, database: str = "", **changes) -> Settings:
        from dataclasses import replace

        from ..config import Settings

        return replace(
            Settings(),
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=database,
            **changes,
        )

    def describe(self) -> str:
        name = "MariaDB" if self.flavour == "mariadb" else "MySQL"
        return (
            f"{name} {self.version} on {self.host}:{self.port} ({self.provider}, ready in {self.startup_seconds:.1f} s)"
        )


Provider = Callable[[Target, Path | None, Mapping[str, str], Say], AbstractContextManager[ServerHandle]]


# ---------------------------------------------------------------- url


def parse_server_url(url: str, variable: str = "the URL") -> tuple[str, int, str, str]:
    """(host, port, user, password) of mysql://user:pass@host:port (also mariadb://, mysql+pymysql://)."""
    from urllib.parse import unquote, urlsplit

    try:
        parts = urlsplit(url.strip())
        port = parts.port or 3306
    except ValueError:
        raise DbOpsError(f"{variable} is not a mysql://user:password@host:port URL") from None
    if parts.scheme.split("+")[0] not in ("mysql", "mariadb") or not parts.hostname:
        raise DbOpsError(f"{variable} is not a mysql://user:password@host:port URL")
    return parts.hostname, port, unquote(parts.username or "root"), unquote(parts.password or "")


def _server_version(host: str, port: int, user: str, password: str) -> tuple[str, str]:
    import pymysql

    from .connection import parse_server_version

    try:
        connection = pymysql.connect(host=host, port=port, user=user, password=password, connect_timeout=5)
    except pymysql.err.Error as exc:
        code = exc.args[0] if exc.args else "?"
        raise ProviderSkipped(f"cannot connect to {host}:{port} (error {code})") from None
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT VERSION()")
            row = cursor.fetchone()
            if row is None:
                raise RuntimeError("SELECT VERSION() returned no row")
            info = parse_server_version(row[0])
    finally:
        connection.close()
    return info.flavour, info.version


@contextmanager
def _url_provider(
    target: Target, work_dir: Path | None, environ: Mapping[str, str], say: Say
) -> Iterator[ServerHandle]:
    url = environ.get(target.url_variable, "").strip()
    if not url:
        raise ProviderSkipped(f"{target.url_variable} is not set")
    started = time.monotonic()
    host, port, user, password = parse_server_url(url, target.url_variable)
    flavour, version = _server_version(host, port, user, password)
    if not target.matches(flavour, version):
        raise ProviderSkipped(f"{target.url_variable} points at {flavour} {version}, not {target.label}")
    yield ServerHandle(target.id, host, port, user, password, flavour, version, "url", time.monotonic() - started)


def _stop_quietly(instance: ServerInstance | None, folder: Path, chroot: str = "") -> None:
    """Stop the instance, and whatever still works in its folder (an install cut short)."""
    if instance is not None:
        stop_instance(instance)
    if chroot and Path(chroot).is_dir():
        inside = "/" + str(folder.relative_to(chroot)) + "/"
        kill_processes_in_root(chroot, inside)
    elif not chroot:
        kill_processes_in_root("/", str(folder) + "/")


@contextmanager
def _throwaway(
    target: Target, provider: str, folder: Path, binary: str, chroot: str = "", provision_seconds: float = 0.0
) -> Iterator[ServerHandle]:
    """A server in folder on a free port, with a password user; stopped and removed afterwards."""
    started = time.monotonic()
    instance = None
    try:
        instance = start_instance(folder, binary=binary, chroot=chroot or None)
        if not target.matches(instance.flavour, instance.version):
            raise ProviderSkipped(f"{binary} reports {instance.flavour} {instance.version}, not {target.label}")
        password = create_user(instance, MATRIX_USER)
        yield ServerHandle(
            target.id,
            instance.host,
            instance.port,
            MATRIX_USER,
            password,
            instance.flavour,
            instance.version,
            provider,
            time.monotonic() - started,
            provision_seconds,
            instance,
        )
    finally:
        _stop_quietly(instance, folder, chroot)
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _local_provider(
    target: Target, work_dir: Path | None, environ: Mapping[str, str], say: Say
) -> Iterator[ServerHandle]:
    binary = find_local_binary(target)
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{target.id}-", dir=work_dir))
    with _throwaway(target, "local", folder, binary) as handle:
        yield handle


def _chroot_ready(target: Target, environ: Mapping[str, str], say: Say) -> tuple[Path, float]:
    """The target's root, built now if needed; (root, seconds spent building it now).
    provision() says why it cannot be (no Debian suite ships the target, not root)."""
    marker = provision(target.id, environ, say)
    return chroot_root(target, environ), 0.0 if marker["reused"] else marker["seconds"]


@contextmanager
def _chroot_provider(
    target: Target, work_dir: Path | None, environ: Mapping[str, str], say: Say
) -> Iterator[ServerHandle]:
    root, provision_seconds = _chroot_ready(target, environ, say)
    # The data folder lives inside the root, where the server can see it.
    folder = Path(tempfile.mkdtemp(prefix="matrix-", dir=root / "tmp"))
    with _throwaway(target, "chroot", folder, target.debian_recipe().binary, str(root), provision_seconds) as handle:
        yield handle


# ---------------------------------------------------------------- Docker


def docker_engine_problem(environ: Mapping[str, str]) -> str | None:
    """Why no Docker engine answers, or None when one does."""
    import socket

    host = environ.get("DOCKER_HOST", "")
    if host and not host.startswith("unix://"):
        docker = find_program("docker")
        if docker is None:
            return f"DOCKER_HOST is {host} but there is no docker client to ask it"
        try:
            result = subprocess.run(
                [docker, "version", "--format", "{{.Server.Version}}"],
                capture_output=True,
                timeout=DOCKER_TIMEOUT,
                env=dict(environ),
            )
        except (OSError, subprocess.SubprocessError):
            return f"no Docker engine answers at {host}"
        return None if result.returncode == 0 else f"no Docker engine answers at {host}"
    path = host.removeprefix("unix://") or "/var/run/docker.sock"
    if not Path(path).exists():
        return f"no Docker engine ({path} does not exist)"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(DOCKER_TIMEOUT)
            probe.connect(path)
            probe.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            answer = probe.recv(256)
    except OSError:
        return f"no Docker engine answers on {path}"
    return None if b" 200 " in answer.split(b"\r\n", 1)[0] + b" " else f"no Docker engine answers on {path}"


@contextmanager
def _docker_provider(
    target: Target, work_dir: Path | None, environ: Mapping[str, str], say: Say
) -> Iterator[ServerHandle]:
    if not target.docker_image:
        raise ProviderSkipped(f"no Docker image for {target.label}")
    problem = docker_engine_problem(environ)
    if problem:
        raise ProviderSkipped(problem)
    try:
        from testcontainers.mysql import MySqlContainer
    except ImportError:
        raise ProviderSkipped("testcontainers is not installed (pip install 'testcontainers[mysql]')") from None
    import secrets

    started = time.monotonic()
    password = secrets.token_urlsafe(18)
    container = MySqlContainer(target.docker_image, username="root", root_password=password, password=password)
    say(f"{target.id}: starting a {target.docker_image} container (pulled first when new: minutes)")
    try:
        try:
            container.start()
        except Exception as exc:
            raise ProviderSkipped(f"{target.docker_image} did not start: {' '.join(str(exc).split())[:200]}") from None
        host, port = container.get_container_host_ip(), int(container.get_exposed_port(3306))
        flavour, version = _server_version(host, port, "root", password)
        if not target.matches(flavour, version):
            raise ProviderSkipped(f"{target.docker_image} runs {flavour} {version}, not {target.label}")
        yield ServerHandle(
            target.id, host, port, "root", password, flavour, version, "docker", time.monotonic() - started
        )
    finally:
        try:
            container.stop()
        except Exception:
            pass  # never started, or already gone


# ---------------------------------------------------------------- acquire

PROVIDERS: dict[str, Provider] = {
    "url": _url_provider,
    "local": _local_provider,
    "chroot": _chroot_provider,
    "docker": _docker_provider,
}


@contextmanager
def acquire(
    target_id: str,
    work_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    providers: tuple[str, ...] | None = None,
    say: Say = silent,
) -> Iterator[ServerHandle]:
    """A throwaway server of target_id from the first provider that can serve it.

    The server is stopped and its folder removed when the block ends, however it ends.
    Raises UnknownTarget, or ServerUnavailable with the reason of every provider tried.
    work_dir: where a local server's temporary folder goes (a chroot server's is always
    inside its root); providers limits the ones tried (names from PROVIDERS, in their order);
    say is told, line by line, how a long preparation goes (a root being built).
    """
    target = get_target(target_id)
    env = environ_or_os(environ)
    names = [name for name in PROVIDERS if providers is None or name in providers]
    if "url" in names and env.get(target.url_variable, "").strip():
        names = ["url"]  # the user named the server: no other may stand in for it
    reasons: list[tuple[str, str]] = []
    with ExitStack() as stack:
        for name in names:
            try:
                handle = stack.enter_context(PROVIDERS[name](target, work_dir, env, say))
            except DbOpsError as exc:
                reasons.append((name, str(exc)))
                continue
            except Exception as exc:
                # Not foreseen, but still this provider's reason: the next one may serve.
                reasons.append((name, " ".join(f"unexpected {type(exc).__name__}: {exc}".split())[:300]))
                continue
            yield handle
            return
    raise ServerUnavailable(target.id, reasons)


def describe_providers(target_id: str, environ: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """What each provider would do for target_id, without starting anything: (provider, verdict)."""
    target = get_target(target_id)
    env = environ_or_os(environ)
    verdicts = []
    url = env.get(target.url_variable, "").strip()
    verdicts.append(("url", f"{target.url_variable} is set" if url else f"{target.url_variable} is not set"))
    try:
        verdicts.append(("local", f"serves with {find_local_binary(target)}"))
    except ProviderSkipped as exc:
        verdicts.append(("local", str(exc)))
    if target.debian is None:
        verdicts.append(("chroot", f"no Debian suite ships {target.label}"))
    else:
        marker = provisioned(target, env)
        where = chroot_root(target, env)
        verdicts.append(
            (
                "chroot",
                f"{target.debian.suite} root ready at {where} ({marker['version']})"
                if marker
                else f"{target.debian.suite} root not built yet ({where})",
            )
        )
    if target.docker_image:
        verdicts.append(("docker", docker_engine_problem(env) or f"Docker engine answers: {target.docker_image}"))
    else:
        verdicts.append(("docker", f"no Docker image for {target.label}"))
    return verdicts


# ---------------------------------------------------------------- long-lived servers (the sandbox)


def start_server(
    target_id: str,
    folder: Path,
    port: int | None = None,
    environ: Mapping[str, str] | None = None,
    say: Say = silent,
) -> tuple[ServerInstance, str]:
    """Start target_id's server to outlive this process (the sandbox); return (instance, provider).

    A local binary keeps its data in folder; a chroot server in a folder inside its root
    named after folder, so a later call with the same folder finds the same data. The
    caller stops it with servers.stop_instance. A root built now is told to say as it goes.
    """
    target = get_target(target_id)
    env = environ_or_os(environ)
    reasons: list[tuple[str, str]] = []
    try:
        return start_instance(folder, port=port, binary=find_local_binary(target)), "local"
    except DbOpsError as exc:
        reasons.append(("local", str(exc)))
    try:
        root, _ = _chroot_ready(target, env, say)
        return start_instance(
            persistent_folder(root, folder), port=port, binary=target.debian_recipe().binary, chroot=root
        ), "chroot"
    except DbOpsError as exc:
        reasons.append(("chroot", str(exc)))
    reasons.append(("url/docker", "a server outside this machine's processes cannot be a sandbox"))
    raise ServerUnavailable(target.id, reasons)


def persistent_folder(root: Path, folder: Path) -> Path:
    import hashlib

    digest = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:12]
    return root / "tmp" / f"sandbox-{digest}"
