"""Server targets of the version matrix, and the providers that can serve them.

One table (TARGETS) names every server version the project is tested on. For a target,
providers are tried in order until one serves it:

  url     a server the user runs, named by an environment variable per target
          (MATRIX_URL_MYSQL_9_7=mysql://user:pass@host:port); when set, it alone decides;
  local   a mariadbd/mysqld binary of this machine reporting exactly that version;
  chroot  a Debian suite shipping that version, provisioned once with debootstrap into a
          cache folder (SERVER_CACHE_DIR, default /var/cache/emotional-chat-servers), run
          with chroot (root only);
  docker  the target's image through testcontainers, when a Docker engine answers.

`acquire()` yields a ServerHandle for a throwaway server reachable over TCP with a user and
password, and removes that server afterwards, also when the caller fails or is interrupted.
A target no provider can serve raises ServerUnavailable with one reason per provider tried.
What takes minutes (building a Debian root, starting a container) is told as it goes, line by
line, to the `say` callable the caller passes (nothing by default).

Environment variables are read from the `environ` argument (os.environ by default).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import search_path
from .errors import DbOpsError, SandboxError
from .servers import (
    CHROOT_ENV,
    SEARCH_PATH,
    ServerInstance,
    create_user,
    find_program,
    in_root,
    processes_in_root,
    server_flavour,
    start_instance,
    stop_instance,
)

if TYPE_CHECKING:
    from ..config import Settings

DEFAULT_CACHE_DIR = Path("/var/cache/emotional-chat-servers")
CACHE_DIR_VARIABLE = "SERVER_CACHE_DIR"
MATRIX_USER = "matrix"
PROVISION_MARKER = "provisioned.json"
PROVISION_TIMEOUT = 1800.0
DOCKER_TIMEOUT = 3.0
# How often a long step (a root being built, or waited for) says that it is still going.
PROGRESS_INTERVAL = 15.0

Say = Callable[[str], None]


def _silent(line: str) -> None:
    """The default `say`: tells nothing."""


# ---------------------------------------------------------------- the targets


@dataclass(frozen=True)
class DebianRecipe:
    """A Debian suite whose packages ship the target's server."""

    suite: str
    packages: tuple[str, ...]
    binary: str  # the server, as a path inside the root

    def as_dict(self) -> dict:
        return {"suite": self.suite, "packages": list(self.packages), "binary": self.binary}


@dataclass(frozen=True)
class Target:
    id: str
    flavour: str  # "mariadb" or "mysql"
    version: str  # major.minor; the server's version must start with it
    debian: DebianRecipe | None = None
    docker_image: str | None = None

    @property
    def url_variable(self) -> str:
        return "MATRIX_URL_" + re.sub(r"[^A-Z0-9]", "_", self.id.upper())

    @property
    def label(self) -> str:
        return f"{'MariaDB' if self.flavour == 'mariadb' else 'MySQL'} {self.version}"

    @property
    def tags(self) -> tuple[str, ...]:
        """The groups that select it with its id: its flavour, and debian when a Debian suite ships it."""
        return (self.flavour, "debian") if self.debian else (self.flavour,)

    def matches(self, flavour: str, version: str) -> bool:
        return flavour == self.flavour and (version == self.version or version.startswith(self.version + "."))


TARGETS: dict[str, Target] = {
    target.id: target
    for target in (
        Target(
            "mysql-9.7", "mysql", "9.7", DebianRecipe("sid", ("mysql-server-core",), "/usr/sbin/mysqld"), "mysql:9.7"
        ),
        Target("mysql-8.4", "mysql", "8.4", docker_image="mysql:8.4"),
        Target("mysql-8.0", "mysql", "8.0", docker_image="mysql:8.0"),
        Target(
            "mariadb-11.8",
            "mariadb",
            "11.8",
            DebianRecipe("trixie", ("mariadb-server",), "/usr/sbin/mariadbd"),
            "mariadb:11.8",
        ),
        Target(
            "mariadb-10.11",
            "mariadb",
            "10.11",
            DebianRecipe("bookworm", ("mariadb-server",), "/usr/sbin/mariadbd"),
            "mariadb:10.11",
        ),
        Target(
            "mariadb-10.5",
            "mariadb",
            "10.5",
            DebianRecipe("bullseye", ("mariadb-server-core-10.5",), "/usr/sbin/mariadbd"),
            "mariadb:10.5",
        ),
        Target("mysql-5.7", "mysql", "5.7", docker_image="mysql:5.7"),
    )
}


class UnknownTarget(DbOpsError):
    pass


class ProviderSkipped(DbOpsError):
    """This provider cannot serve the target; the message says why."""


class ProvisionError(DbOpsError):
    """Building a Debian root for a target failed."""


class ServerUnavailable(DbOpsError):
    """No provider could serve the target; `reasons` holds (provider, reason) per provider tried."""

    def __init__(self, target_id: str, reasons: list[tuple[str, str]]) -> None:
        self.target_id = target_id
        self.reasons = list(reasons)
        super().__init__(f"no provider can serve {target_id}: " + "; ".join(self.lines()))

    def lines(self) -> list[str]:
        return [f"{provider}: {reason}" for provider, reason in self.reasons]


def get_target(target_id: str) -> Target:
    try:
        return TARGETS[target_id]
    except KeyError:
        raise UnknownTarget(f"unknown server {target_id!r}: choose from {', '.join(TARGETS)}") from None


def select_targets(names: Iterable[str]) -> list[str]:
    """Target ids chosen by names, in the order of TARGETS: an id, a tag (mariadb, mysql, debian) or all."""
    chosen: set[str] = set()
    for name in names:
        word = name.strip().lower()
        tagged = {target.id for target in TARGETS.values() if word in target.tags}
        if word == "all":
            chosen.update(TARGETS)
        elif tagged:
            chosen.update(tagged)
        else:
            chosen.add(get_target(name.strip()).id)
    return [target for target in TARGETS if target in chosen]


def required_targets(value: str | None) -> frozenset[str]:
    """Target ids named by MATRIX_REQUIRED (ids, tags or all, separated by commas)."""
    return frozenset(select_targets(part for part in (value or "").split(",") if part.strip()))


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


# ---------------------------------------------------------------- handles


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
            info = parse_server_version(cursor.fetchone()[0])
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


# ---------------------------------------------------------------- local binaries


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
    binaries = local_binaries()
    for path, flavour, version in binaries:
        if target.matches(flavour, version):
            return path
    have = ", ".join(f"{flavour} {version}" for _, flavour, version in binaries) or "none"
    raise ProviderSkipped(f"no local {target.label} binary (found: {have})")


def _stop_quietly(instance: ServerInstance | None, folder: Path, chroot: str = "") -> None:
    """Stop the instance, and whatever still works in its folder (an install cut short)."""
    if instance is not None:
        stop_instance(instance)
    if chroot and Path(chroot).is_dir():
        inside = "/" + str(folder.relative_to(chroot)) + "/"
        for pid in processes_in_root(chroot, inside):
            _kill(pid)
    elif not chroot:
        for pid in processes_in_root("/", str(folder) + "/"):
            _kill(pid)


def _kill(pid: int) -> None:
    import signal

    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


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


# ---------------------------------------------------------------- Debian chroots


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    return Path(_environ(environ).get(CACHE_DIR_VARIABLE) or DEFAULT_CACHE_DIR)


def chroot_root(target: Target, environ: Mapping[str, str] | None = None) -> Path:
    return cache_dir(environ) / target.id / "root"


def provisioned(target: Target, environ: Mapping[str, str] | None = None) -> dict | None:
    """The marker of a finished provisioning of target's root (None when missing or stale)."""
    if target.debian is None:
        return None
    folder = cache_dir(environ) / target.id
    try:
        marker = json.loads((folder / PROVISION_MARKER).read_text())
    except (OSError, ValueError):
        return None
    # A changed recipe makes the old root stale.
    return marker if marker.get("recipe") == target.debian.as_dict() and (folder / "root").is_dir() else None


@contextmanager
def _file_lock(path: Path, timeout: float, purpose: str, waiting: Callable[[float], None]) -> Iterator[None]:
    """Hold an exclusive lock on path; waiting(seconds so far) is called at once and then every
    PROGRESS_INTERVAL seconds while another process holds it."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        started = time.monotonic()
        told = None
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                now = time.monotonic()
                if now - started > timeout:
                    raise ProvisionError(f"{purpose}: another process holds {path} for over {timeout:.0f} s") from None
                if told is None or now - told >= PROGRESS_INTERVAL:
                    waiting(now - started)
                    told = now
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _mounts_below(root: Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    # Field 5 is the mount point, with spaces escaped as \040.
    points = [line.split()[4].replace("\\040", " ") for line in lines]
    return sorted((point for point in points if point.startswith(prefix)), key=len, reverse=True)


def remove_root(root: Path) -> None:
    """Remove a (half-built) root; never through a mount still inside it (e.g. the host's /proc)."""
    for point in _mounts_below(root):
        subprocess.run(["umount", "-l", point], capture_output=True, timeout=60)
    left = _mounts_below(root)
    if left:
        raise ProvisionError(f"cannot remove {root}: {left[0]} is still mounted")
    shutil.rmtree(root, ignore_errors=True)
    if root.exists():
        raise ProvisionError(f"cannot remove {root}")


def _minutes(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


class _BuildProgress:
    """Tells how a root's build goes: each step as it starts, then every `interval` seconds the
    step, the time since the build began and the last line of its log."""

    def __init__(self, target: Target, log_path: Path, say: Say, interval: float = PROGRESS_INTERVAL) -> None:
        self.prefix = f"{target.id} root"
        self.log_path, self.say, self.interval = log_path, say, interval
        self.started = time.monotonic()

    def elapsed(self) -> str:
        return _minutes(time.monotonic() - self.started)

    def step(self, name: str) -> None:
        self.say(f"{self.prefix}: {name} (at {self.elapsed()})")

    def still(self, name: str) -> None:
        last = _log_tail(self.log_path, 1, 100)
        self.say(f"{self.prefix}: {name}, {self.elapsed()} elapsed" + (f": {last}" if last else ""))


def _run_logged(
    command: list[str], log, step: str, timeout: float, progress: _BuildProgress, env: dict | None = None
) -> None:
    progress.step(step)
    log.write(f"$ {' '.join(command)}\n".encode())
    log.flush()
    deadline = time.monotonic() + timeout
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProvisionError(f"{step} took over {timeout:.0f} s")
            try:
                code = process.wait(timeout=min(progress.interval, left))
                break
            except subprocess.TimeoutExpired:
                progress.still(step)
    finally:
        if process.poll() is None:  # over time, or interrupted: the step goes with us
            process.kill()
            process.wait()
    if code != 0:
        raise ProvisionError(f"{step} failed with exit code {code}")


def _log_tail(path: Path, lines: int = 3, width: int = 0) -> str:
    """The last lines of a log as one line (each cut to width characters when width is given)."""
    try:
        with open(path, "rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - 8192))
            text = log.read().decode(errors="replace")
    except OSError:
        return ""
    # Progress meters redraw their line with carriage returns: the last drawing counts.
    found = [line.rsplit("\r", 1)[-1].strip() for line in text.splitlines()]
    found = [line for line in found if line][-lines:]
    if width:
        found = [line if len(line) <= width else line[: width - 1] + "…" for line in found]
    return " | ".join(found)


def provision(target_id: str, environ: Mapping[str, str] | None = None, say: Say = _silent) -> dict:
    """Build the target's Debian root once (debootstrap + apt-get) and return its marker.

    Runs under a file lock, so two processes never build the same root at once; the
    marker is written last, so a root without one (an interrupted build) is removed and
    built again. The marker holds the server version and the build time in seconds.
    A build (minutes) or a wait for another process's build is told to say as it goes.
    """
    target = get_target(target_id)
    if target.debian is None:
        raise ProviderSkipped(f"no Debian suite ships {target.label}")
    if os.geteuid() != 0:
        raise ProviderSkipped("needs root (debootstrap and chroot)")
    marker = provisioned(target, environ)
    if marker:
        return {**marker, "reused": True}
    try:
        return _provision_locked(target, environ, say)
    except OSError as exc:
        raise ProvisionError(f"provisioning {target.id} failed: {' '.join(str(exc).split())}") from None


@dataclass(frozen=True)
class Prepared:
    """How a target can be served after prepare_roots: by a local binary, or by its built root."""

    target: str
    local_binary: str = ""
    marker: dict | None = None  # provision()'s marker of the root
    error: str = ""  # why its root could not be built


def prepare_roots(
    target_ids: Iterable[str], environ: Mapping[str, str] | None = None, say: Say = _silent
) -> list[Prepared]:
    """Build the Debian roots of the targets no local binary serves, side by side (the builds wait on
    the network and dpkg more than on the CPU); never raises for one target's failure."""
    from concurrent.futures import ThreadPoolExecutor

    def prepare(target_id: str) -> Prepared:
        try:
            return Prepared(target_id, local_binary=find_local_binary(get_target(target_id)))
        except ProviderSkipped:
            pass
        try:
            return Prepared(target_id, marker=provision(target_id, environ, say))
        except DbOpsError as exc:
            return Prepared(target_id, error=str(exc))

    names = list(target_ids)
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        return list(pool.map(prepare, names))


def _provision_locked(target: Target, environ: Mapping[str, str] | None, say: Say) -> dict:
    folder = cache_dir(environ) / target.id
    lock = cache_dir(environ) / f"{target.id}.lock"

    def waiting(seconds: float) -> None:
        say(f"{target.id} root: another process is building it, waiting ({_minutes(seconds)} so far; {lock})")

    with _file_lock(lock, PROVISION_TIMEOUT, f"provisioning {target.id}", waiting):
        marker = provisioned(target, environ)  # another process may have finished meanwhile
        if marker:
            return {**marker, "reused": True}
        debootstrap = find_program("debootstrap")
        if debootstrap is None:
            raise ProviderSkipped("debootstrap is not installed (apt-get install debootstrap)")
        root = folder / "root"
        if folder.exists():
            remove_root(root)
            shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        log_path = folder / "provision.log"
        started = time.monotonic()
        say(
            f"{target.id} root: building Debian {target.debian.suite} with {' '.join(target.debian.packages)} "
            f"(once, in {folder}; log {log_path.name} there)"
        )
        try:
            with open(log_path, "wb") as log:
                _build_root(target, debootstrap, root, log, _BuildProgress(target, log_path, say))
            flavour, version = server_flavour(target.debian.binary, root)
        except (ProvisionError, SandboxError) as exc:
            raise ProvisionError(
                f"building the {target.debian.suite} root failed: {exc}: {_log_tail(log_path)}"
            ) from None
        finally:
            for pid in processes_in_root(root):
                _kill(pid)  # e.g. a service a package script started despite policy-rc.d
        if not target.matches(flavour, version):
            raise ProvisionError(f"{target.debian.suite} now ships {flavour} {version}, not {target.label}")
        marker = {
            "target": target.id,
            "recipe": target.debian.as_dict(),
            "flavour": flavour,
            "version": version,
            "seconds": round(time.monotonic() - started, 1),
            "size_mb": _size_mb(root),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        temporary = folder / (PROVISION_MARKER + ".tmp")
        temporary.write_text(json.dumps(marker, indent=2))
        os.replace(temporary, folder / PROVISION_MARKER)
        say(f"{target.id} root: built in {_minutes(marker['seconds'])} ({marker['size_mb']} MB), {flavour} {version}")
        return {**marker, "reused": False}


def _build_root(target: Target, debootstrap: str, root: Path, log, progress: _BuildProgress) -> None:
    recipe = target.debian
    # No mirror argument: debootstrap uses its own default.
    _run_logged([debootstrap, "--variant=minbase", recipe.suite, str(root)], log, "debootstrap", 900, progress)
    # Package scripts must not start services inside the root.
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    env = {**CHROOT_ENV, "DEBIAN_FRONTEND": "noninteractive"}
    # A mirror that is a frozen copy serves Release files past their Valid-Until date, which
    # debootstrap accepts and apt-get refuses; their signatures are still checked.
    update = ["apt-get", "-o", "Acquire::Check-Valid-Until=false", "update", "-q"]
    _run_logged(in_root(update, root), log, "apt-get update", 600, progress, env)
    _run_logged(
        in_root(["apt-get", "install", "-y", "-q", "--no-install-recommends", *recipe.packages], root),
        log,
        f"apt-get install {' '.join(recipe.packages)}",
        900,
        progress,
        env,
    )
    _run_logged(in_root(["apt-get", "clean"], root), log, "apt-get clean", 120, progress, env)
    (root / "tmp").mkdir(exist_ok=True)
    (root / "tmp").chmod(0o1777)


def _size_mb(root: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return round(total / 1e6)


def _chroot_ready(target: Target, environ: Mapping[str, str], say: Say) -> tuple[Path, float]:
    """The target's root, built now if needed; (root, seconds spent building it now)."""
    if target.debian is None:
        raise ProviderSkipped(f"no Debian suite ships {target.label}")
    if os.geteuid() != 0:
        raise ProviderSkipped("needs root (debootstrap and chroot)")
    marker = provision(target.id, environ, say)
    return chroot_root(target, environ), 0.0 if marker["reused"] else marker["seconds"]


@contextmanager
def _chroot_provider(
    target: Target, work_dir: Path | None, environ: Mapping[str, str], say: Say
) -> Iterator[ServerHandle]:
    root, provision_seconds = _chroot_ready(target, environ, say)
    # The data folder lives inside the root, where the server can see it.
    folder = Path(tempfile.mkdtemp(prefix="matrix-", dir=root / "tmp"))
    with _throwaway(target, "chroot", folder, target.debian.binary, str(root), provision_seconds) as handle:
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
    say: Say = _silent,
) -> Iterator[ServerHandle]:
    """A throwaway server of target_id from the first provider that can serve it.

    The server is stopped and its folder removed when the block ends, however it ends.
    Raises UnknownTarget, or ServerUnavailable with the reason of every provider tried.
    work_dir: where a local server's temporary folder goes (a chroot server's is always
    inside its root); providers limits the ones tried (names from PROVIDERS, in their order);
    say is told, line by line, how a long preparation goes (a root being built).
    """
    target = get_target(target_id)
    env = _environ(environ)
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
    env = _environ(environ)
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
    say: Say = _silent,
) -> tuple[ServerInstance, str]:
    """Start target_id's server to outlive this process (the sandbox); return (instance, provider).

    A local binary keeps its data in folder; a chroot server in a folder inside its root
    named after folder, so a later call with the same folder finds the same data. The
    caller stops it with servers.stop_instance. A root built now is told to say as it goes.
    """
    target = get_target(target_id)
    env = _environ(environ)
    reasons: list[tuple[str, str]] = []
    try:
        return start_instance(folder, port=port, binary=find_local_binary(target)), "local"
    except DbOpsError as exc:
        reasons.append(("local", str(exc)))
    try:
        root, _ = _chroot_ready(target, env, say)
        return start_instance(
            persistent_folder(root, folder), port=port, binary=target.debian.binary, chroot=root
        ), "chroot"
    except DbOpsError as exc:
        reasons.append(("chroot", str(exc)))
    reasons.append(("url/docker", "a server outside this machine's processes cannot be a sandbox"))
    raise ServerUnavailable(target.id, reasons)


def persistent_folder(root: Path, folder: Path) -> Path:
    import hashlib

    digest = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:12]
    return root / "tmp" / f"sandbox-{digest}"
