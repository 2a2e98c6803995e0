"""Secrets handed to a child process on an inherited pipe: never on its command line, in its
environment or on disk, and gone with the processes that hold the pipe, even after SIGKILL."""

from __future__ import annotations

import os


class TooLong(ValueError):
    """The secret does not fit in an empty pipe's buffer (64 KiB on Linux)."""


def pipe_holding(data: bytes) -> int:
    """The read end of a pipe holding data, its write end closed; pass it to the child with pass_fds."""
    reader, writer = os.pipe()
    try:
        os.set_blocking(writer, False)  # more than the empty pipe holds is refused, never waited on
        written = os.write(writer, data) if data else 0
    except BlockingIOError:
        written = 0
    finally:
        os.close(writer)
    if written != len(data):
        os.close(reader)
        raise TooLong(f"{len(data)} bytes do not fit in a pipe")
    return reader
