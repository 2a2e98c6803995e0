"""What the command line shows and asks: one flushed line per message, a progress line and
prompts only on a terminal, and the library's waiting messages as ⏳ lines.

The tasks (tasks/) print through these; the operations in dbops return results and lines, never print.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

from .config import debug_requested


def debugging() -> bool:
    # `invoke --debug` turns on DEBUG logging at the root; DB_DEBUG=1 asks too.
    return debug_requested() or logging.getLogger().isEnabledFor(logging.DEBUG)


def say(line: str) -> None:
    print(line, flush=True)


def ask():
    """A prompt when a person is at the terminal, else None (guards then refuse)."""
    return input if sys.stdin.isatty() else None


def say_step(step, direction: str) -> None:
    """One revision step as it starts: → up, ← down."""
    say(f"  {'→' if direction == 'upgrade' else '←'} {step.revision}  {(step.doc or '').strip()}")


class _WaitingLines(logging.Handler):
    """What the library says while it waits (for a metadata lock...), as ⏳ lines on stdout."""

    def emit(self, record: logging.LogRecord) -> None:
        say(f"  ⏳ {record.getMessage()}")


def show_waiting() -> None:
    """The library's warnings (backend.dbops) go to stdout as ⏳ lines, not to the root logger."""
    waiting = logging.getLogger("backend.dbops")
    waiting.addHandler(_WaitingLines(logging.WARNING))
    waiting.propagate = False


def progress_printer() -> Callable[[int, int], None] | None:
    """A one-line progress display on a terminal, else None."""
    if not sys.stdout.isatty():
        return None
    started = time.monotonic()

    def show(done: int, total: int) -> None:
        elapsed = max(time.monotonic() - started, 1e-6)
        speed = done / elapsed
        left = f", about {max(total - done, 0) / speed:,.0f} s left" if total and speed else ""
        sys.stdout.write(f"\r  {done / 1e6:,.1f} MB of about {total / 1e6:,.1f} MB, {speed / 1e6:,.1f} MB/s{left}   ")
        sys.stdout.flush()
        if total and done >= total:
            sys.stdout.write("\n")

    return show


def clear_progress() -> None:
    """Erase the progress line once the work is done."""
    sys.stdout.write("\r\x1b[K")


def say_lines(lines) -> None:
    for line in lines:
        say(line)
