"""The command line under test: `invoke ARGS` run in this process (the default: fast), or as a
real `python -m invoke` process for tests that need one (signals, kills, /proc, a terminal,
output while it runs)."""

from __future__ import annotations

import functools
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import invoke
from invoke import FilesystemLoader, Program

from backend.config import PROJECT_ROOT
from backend.dbops.servers import pid_alive
from tests.helpers import WAIT, cmdline, descendants, wait_until


@dataclass
class CommandResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def assert_one_error_line(result: CommandResult) -> str:
    """The failure contract: non-zero exit, one line starting with ❌, no traceback."""
    assert result.returncode != 0, result.output
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("❌ "), result.output
    return lines[0]


# ---------------------------------------------------------------- in this process


@functools.cache
def _tasks_module():
    import tasks

    return tasks


class _ImportedTasks(FilesystemLoader):
    """Hands Invoke the project's tasks module, imported once: Invoke's own loader executes tasks.py
    again on each run, which would add its logging handler once more every time."""

    def load(self, name: str | None = None):
        if name not in (None, "tasks"):
            return super().load(name)
        return _tasks_module(), str(PROJECT_ROOT)


# Signals whose handlers a command may set (the service's SIGTERM, the matrix's...).
_SIGNALS = [number for number in signal.valid_signals() if number not in (signal.SIGKILL, signal.SIGSTOP)]


@contextmanager
def _process_state(env: dict[str, str], argv: list[str]) -> Iterator[None]:
    """The environment exactly env, the project folder as working directory, argv; afterwards every
    process-wide setting a command may change is put back (environment, folder, signal handlers,
    umask, the root logger, the temporary folder)."""
    saved_environ, saved_cwd, saved_argv, saved_tempdir = dict(os.environ), os.getcwd(), sys.argv, tempfile.tempdir
    saved_signals = {number: signal.getsignal(number) for number in _SIGNALS}
    saved_umask = os.umask(0o022)
    os.umask(saved_umask)
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, root.handlers[:]
    os.environ.clear()
    os.environ.update(env)
    os.chdir(PROJECT_ROOT)
    sys.argv = argv
    tempfile.tempdir = None  # found again from env's TMPDIR, as a new process would
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved_environ)
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        tempfile.tempdir = saved_tempdir
        for number, handler in saved_signals.items():
            # None: a handler not set from Python, which Python cannot set back (none is changed to one).
            if handler is not None and signal.getsignal(number) is not handler:
                signal.signal(number, handler)
        os.umask(saved_umask)
        root.setLevel(saved_level)
        root.handlers[:] = saved_handlers


@contextmanager
def _captured_output() -> Iterator[dict[str, str]]:
    """stdout and stderr captured at the file-descriptor level too, so that what the command's
    children (the dump client, the restart command) write is caught as a pipe would catch it;
    stdin empty and not a terminal, for the command and its children, as a subprocess's pipe.
    The text is in the yielded dict once the block ends."""
    captured: dict[str, str] = {}
    files = [tempfile.TemporaryFile(), tempfile.TemporaryFile()]
    saved_streams = sys.stdin, sys.stdout, sys.stderr
    for stream in saved_streams[1:]:
        stream.flush()
    saved_fds = [os.dup(0), os.dup(1), os.dup(2)]
    try:
        sys.stdin = open(os.devnull, encoding="utf-8")
        os.dup2(sys.stdin.fileno(), 0)
        os.dup2(files[0].fileno(), 1)
        os.dup2(files[1].fileno(), 2)
        # As Python opens them on a pipe: stdout strict, stderr backslash-escaping what UTF-8 cannot say.
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
        try:
            yield captured
        finally:
            for stream in (sys.stdout, sys.stderr, sys.stdin):
                try:
                    stream.close()
                except (OSError, ValueError):
                    pass  # the command closed it already
            sys.stdin, sys.stdout, sys.stderr = saved_streams
            for fd, saved in enumerate(saved_fds):
                os.dup2(saved, fd)
    finally:
        for fd in saved_fds:
            os.close(fd)
        for name, file in zip(("stdout", "stderr"), files, strict=True):
            file.seek(0)
            captured[name] = file.read().decode("utf-8", errors="replace")
            file.close()


def _program() -> Program:
    """Invoke's program as `python -m invoke` builds it (invoke/main.py), finding tasks.py as it does."""
    return Program(
        name="Invoke",
        binary="inv[oke]",
        binary_names=["invoke", "inv"],
        version=invoke.__version__,
        loader_class=_ImportedTasks,
    )


def run_invoke(env: dict[str, str], *args: str) -> CommandResult:
    """`invoke ARGS` in this process with exactly the environment env: the exit code and the output
    as a `python -m invoke` process would give them, an uncaught exception as its traceback on
    stderr with exit code 1."""
    argv = ["invoke", *args]
    with _captured_output() as captured, _process_state(env, argv):
        try:
            _program().run(argv, exit=True)
            code = 0
        except SystemExit as exit:
            if exit.code is None or isinstance(exit.code, int):
                code = exit.code or 0
            else:
                print(exit.code, file=sys.stderr)
                code = 1
        except Exception:
            traceback.print_exc()
            code = 1
    return CommandResult(code, captured["stdout"], captured["stderr"])


# ---------------------------------------------------------------- in a process of its own


def run_invoke_process(env: dict[str, str], *args: str, timeout: float = 180) -> CommandResult:
    """`python -m invoke ARGS` as a process of its own, for tests that need a real one."""
    completed = subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=PROJECT_ROOT,
        env=env,
        input="",
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return CommandResult(completed.returncode, completed.stdout, completed.stderr)


class Spawned:
    """`python -m invoke ARGS` running in the background, its output collected line by line as it comes."""

    def __init__(self, env: dict[str, str], *args: str, preexec_fn=None) -> None:
        self.args = args
        self.process = subprocess.Popen(
            [sys.executable, "-m", "invoke", *args],
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=preexec_fn,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.orphans: list[int] = []
        self.started = time.monotonic()
        self.ended: float | None = None
        self._readers = [
            threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            for stream, lines in ((self.process.stdout, self.stdout), (self.process.stderr, self.stderr))
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def output(self) -> str:
        return "\n".join(self.stdout + self.stderr)

    def saw(self, text: str) -> bool:
        return any(text in line for line in list(self.stdout))

    def wait_for(self, text: str, timeout: float = WAIT) -> None:
        """Until a line of stdout contains text; fails if the process ends first."""

        def seen() -> bool:
            if self.saw(text):
                return True
            if self.process.poll() is not None:
                self.finish()
                raise AssertionError(f"{' '.join(self.args)} ended before printing {text!r}:\n{self.output}")
            return False

        wait_until(seen, f"{text!r} from {' '.join(self.args)}", timeout)

    def finish(self, timeout: float = 180) -> int:
        code = self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        self.ended = self.ended or time.monotonic()
        return code

    def sigkill(self) -> None:
        """SIGKILL the invoke process only, as the OOM killer or `kill -9 PID` would; its children live on."""
        self.orphans = descendants(self.pid)
        os.kill(self.pid, signal.SIGKILL)
        self.finish()

    def sigkill_if_running(self) -> None:
        """sigkill, unless it has ended already (cleanup after a test that may have killed it)."""
        if self.process.poll() is None:
            self.sigkill()

    def reap_orphans(self, timeout: float = 15.0) -> list[str]:
        """Wait for the children it left to end by themselves; kill those that do not. Returns the killed ones."""
        try:
            wait_until(lambda: not any(pid_alive(pid) for pid in self.orphans), "the orphans to end", timeout)
        except AssertionError:
            pass  # killed below
        killed = []
        for pid in self.orphans:
            if pid_alive(pid):
                killed.append(cmdline(pid))
                os.kill(pid, signal.SIGKILL)
        return killed

    def result(self) -> CommandResult:
        self.finish()
        return CommandResult(self.process.returncode, "\n".join(self.stdout) + "\n", "\n".join(self.stderr) + "\n")
