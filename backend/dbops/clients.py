"""The command-line clients a backup or restore runs (dump, load, compressors) as child processes.

Credentials reach each client as an option file it reads from an inherited pipe
(--defaults-file=/dev/fd/N): never on a command line, in the environment or on disk, so a
killed run leaves no file holding them. Every child dies with this process, and a failed one
is named with the first line of its stderr, the password masked.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..config import Settings, child_environment
from .errors import BackupError
from .secret_pipe import TooLong, pipe_holding
from .servers import find_program

PIPE_BYTES = 1 << 20  # Linux's default fs.pipe-max-size: what any user may ask for


def find_client(names: Iterable[str], purpose: str) -> str:
    names = tuple(names)
    found = find_program(*names)
    if found is None:
        raise BackupError(f"no {purpose} found: install {' or '.join(names)}")
    return found


def program_version(program: str) -> str:
    try:
        output = subprocess.run(
            [program, "--version"], capture_output=True, text=True, timeout=30, env=child_environment()
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise BackupError(f"cannot run {program} --version: {exc}") from None
    return " ".join(output.strip().splitlines()[0].split()) if output.strip() else "unknown"


def _option_value(value: str) -> str:
    # Double-quoted and escaped; a raw newline would end the value and start another option.
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def option_file_text(settings: Settings) -> bytes:
    """A [client] option file with the credentials, as the clients read it."""
    return (
        "\n".join(
            [
                "[client]",
                f"user={_option_value(settings.user)}",
                f"password={_option_value(settings.password)}",
                f"host={_option_value(settings.host)}",
                f"port={int(settings.port)}",
                "protocol=tcp",  # as PyMySQL: 'localhost' must not silently mean the default socket
            ]
        ).encode()
        + b"\n"
    )


@contextmanager
def client_options(settings: Settings, count: int = 1) -> Iterator[list[int]]:
    """count pipes, each holding a [client] option file with the credentials for one client to
    read (see defaults_file); yields their read ends, closed afterwards. Pass them to the
    client with pass_fds: the password is then never on disk, and no file outlives a kill."""
    text = option_file_text(settings)
    readers: list[int] = []
    try:
        for _ in range(count):
            try:
                readers.append(pipe_holding(text))
            except TooLong:
                raise BackupError(
                    "the user name and password are too long to pass to the command-line clients"
                ) from None
        yield readers
    finally:
        for reader in readers:
            os.close(reader)


def defaults_file(reader: int) -> str:
    """The clients' option naming a pipe of client_options. --defaults-file must come first; it
    makes them read no other option file, so a password in ~/.my.cnf cannot override ours."""
    return f"--defaults-file=/dev/fd/{reader}"


def client_command(program: str, options: int, *arguments: str) -> list[str]:
    return [program, defaults_file(options), *arguments]


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    errors: IO[bytes]  # its stderr, read back when it fails


def _close_pipes(child: Child) -> None:
    for stream in (child.process.stdin, child.process.stdout):
        if stream is not None:
            with suppress(OSError):
                stream.close()


@contextmanager
def child_processes() -> Iterator[list[Child]]:
    """Children started in the block; any still running when it is left (by an error) are killed."""
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in started:
            if child.process.poll() is None:
                child.process.kill()
            _close_pipes(child)
            child.process.wait()
            child.errors.close()


def dies_with(parent: int) -> Callable[[], None]:
    """preexec_fn: the child gets SIGKILL when this process dies (Linux PR_SET_PDEATHSIG), even by
    SIGKILL, so no dump, compressor or load outlives the migration lock."""

    def arm() -> None:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)

    return arm


def start_child(
    children: list[Child],
    command: list[str],
    stdin=subprocess.DEVNULL,
    stdout=subprocess.DEVNULL,
    pass_fds: tuple[int, ...] = (),
):
    errors = tempfile.TemporaryFile()
    try:
        process = subprocess.Popen(
            command,
            stdin=stdin,
            stdout=stdout,
            stderr=errors,
            env=child_environment(),
            preexec_fn=dies_with(os.getpid()),
            pass_fds=pass_fds,
        )
    except OSError as exc:
        errors.close()
        raise BackupError(f"cannot run {Path(command[0]).name}: {exc.strerror}") from None
    children.append(Child(Path(command[0]).name, process, errors))
    return process


def widen_pipe(stream: IO[bytes]) -> None:
    """A 1 MiB pipe instead of Linux's 64 KiB: a writer and a reader on two busy cores wake each
    other a third less often (measured on a 4M-message dump: about 0.3 s of 10 saved). Best
    effort: a lower fs.pipe-max-size leaves the pipe as it is."""
    with suppress(OSError):
        fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


def _first_error_line(child: Child, secret: str) -> str:
    child.errors.seek(0)
    lines = [line.strip() for line in child.errors.read(1 << 16).decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line]
    line = next((line for line in lines if "warning" not in line.lower()), lines[0] if lines else "no message")
    return (line.replace(secret, "***") if secret else line)[:300]


def finish_children(children: list[Child], failure: str, secret: str = "") -> None:
    """Wait for every child; when one failed, raise BackupError quoting its first stderr line.

    A child killed by SIGPIPE only lost its reader: the one that failed on its own is named.
    """
    for child in children:
        _close_pipes(child)
    for child in children:
        child.process.wait()
    failed = [child for child in children if child.process.returncode != 0]
    if failed:
        child = next((child for child in failed if child.process.returncode != -signal.SIGPIPE), failed[0])
        raise BackupError(
            f"{failure}: {child.name} exited with code {child.process.returncode}: {_first_error_line(child, secret)}"
        )
