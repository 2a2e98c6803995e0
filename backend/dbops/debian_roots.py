"""Debian roots: a Debian suite shipping a target's server, built once with debootstrap into a
cache folder (SERVER_CACHE_DIR, default /var/cache/emotional-chat-servers) and run with chroot
(root only).

A build runs under a file lock, so two processes never build the same root at once, and tells
how it goes, line by line, to the `say` callable the caller passes (nothing by default).
Environment variables are read from the `environ` argument (os.environ by default).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import DbOpsError, ProviderSkipped, ProvisionError, SandboxError
from .servers import (
    CHROOT_ENV,
    find_local_binary,
    find_program,
    in_root,
    kill_processes_in_root,
    server_flavour,
)
from .targets import Target, get_target

DEFAULT_CACHE_DIR = Path("/var/cache/emotional-chat-servers")
CACHE_DIR_VARIABLE = "SERVER_CACHE_DIR"
PROVISION_MARKER = "provisioned.json"
PROVISION_TIMEOUT = 1800.0
# How often a long step (a root being built, or waited for) says that it is still going.
PROGRESS_INTERVAL = 15.0

Say = Callable[[str], None]


def silent(line: str) -> None:
    """The default `say`: tells nothing."""


def environ_or_os(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    return Path(environ_or_os(environ).get(CACHE_DIR_VARIABLE) or DEFAULT_CACHE_DIR)


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


def provision(target_id: str, environ: Mapping[str, str] | None = None, say: Say = silent) -> dict:
    """Build the target's Debian root once (debootstrap + apt-get) and return its marker.

    Runs under a file lock, so two processes never build the same root at once; the
    marker is written last, so a root without one (an interrupted build) is removed and
    built again. The marker holds the server version and the build time in seconds.
    A build (minutes) or a wait for another process's build is told to say as it goes.
    """
    target = get_target(target_id)
    target.debian_recipe()  # one without a recipe fails first
    if os.geteuid() != 0:
        raise ProviderSkipped("needs root (debootstrap and chroot)")
    marker = provisioned(target, environ)
    if marker:
        return {**marker, "reused": True}
    try:
        return _provision_locked(target, environ, say)
    except OSError as exc:
        raise ProvisionError(f"provisioning {target.id} failed: {' '.join(str(exc).split())}") from None


def _provision_locked(target: Target, environ: Mapping[str, str] | None, say: Say) -> dict:
    recipe = target.debian_recipe()
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
            f"{target.id} root: building Debian {recipe.suite} with {' '.join(recipe.packages)} "
            f"(once, in {folder}; log {log_path.name} there)"
        )
        try:
            with open(log_path, "wb") as log:
                _build_root(target, debootstrap, root, log, _BuildProgress(target, log_path, say))
            flavour, version = server_flavour(recipe.binary, root)
        except (ProvisionError, SandboxError) as exc:
            raise ProvisionError(f"building the {recipe.suite} root failed: {exc}: {_log_tail(log_path)}") from None
        finally:
            # E.g. a service a package script started despite policy-rc.d.
            kill_processes_in_root(root)
        if not target.matches(flavour, version):
            raise ProvisionError(f"{recipe.suite} now ships {flavour} {version}, not {target.label}")
        marker = {
            "target": target.id,
            "recipe": recipe.as_dict(),
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
    recipe = target.debian_recipe()
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


@dataclass(frozen=True)
class Prepared:
    """How a target can be served after prepare_roots: by a local binary, or by its built root."""

    target: str
    local_binary: str = ""
    marker: dict | None = None  # provision()'s marker of the root
    error: str = ""  # why its root could not be built


def prepare_roots(
    target_ids: Iterable[str], environ: Mapping[str, str] | None = None, say: Say = silent
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
