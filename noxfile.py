"""Nox sessions: `nox` runs lint and tests; `nox -s migrations` runs the server matrix.

    nox -s migrations                           every server version, in one virtualenv
    nox -s migrations -- mysql-9.7              one server version (ids: python -m backend.dbops.matrix targets)
    nox -s migrations -- mariadb                every MariaDB target (or mysql)
    nox -s matrix_summary                       the combined table of the results so far
    nox -s matrix_bench -- mariadb-10.5 mysql-9.7   several targets in one run, with timings

The targets and how their servers are found live in backend/dbops/providers.py; the checks
in backend/dbops/matrix.py. A target no provider can serve is skipped at once, and the
closing summary names it and why. MATRIX_REQUIRED=all (or ids or flavours separated by
commas) makes such a target fail instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nox

# The table of targets is stdlib-only at import time, so nox's own Python can read it.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from backend.dbops.providers import TARGETS  # noqa: E402

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True
# uv creates environments in a fraction of the time where it is installed.
nox.options.default_venv_backend = "uv|virtualenv"

PYTHON = "3.11"
MATRIX_OUTPUT = ".nox-matrix"
MATRIX = "backend.dbops.matrix"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The pytest suite against a throwaway local server (TEST_MYSQL_URL picks another)."""
    session.install("-r", "requirements.txt")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff (lint and format) and mypy over the project (mypy's files and settings: pyproject.toml)."""
    # mypy follows the imports into the libraries: it needs them and their type stubs installed.
    session.install("-r", "requirements.txt")
    session.run("ruff", "check", ".", *session.posargs)
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session(python=PYTHON, default=False)
def migrations(session: nox.Session) -> None:
    """The migrations up, down and up again on every server version (posargs: target ids or flavours).

    Also the models, data and offline SQL checks. One virtualenv for all targets: a target no
    provider can serve is skipped at once, and the closing summary names it and why.
    """
    session.install("-r", "requirements.txt")
    session.run("python", "-m", MATRIX, "run", "--output", MATRIX_OUTPUT, *session.posargs)


@nox.session(python=PYTHON, default=False)
@nox.parametrize("server", [nox.param(target.id, tags=[target.flavour]) for target in TARGETS.values()])
def server_tests(session: nox.Session, server: str) -> None:
    """The tests that depend most on the server's flavour and version, on one server: the rollback
    (failed deploys under a live writer, kills of rollbacks and restores), the rehearsal, grants
    and roles, non-ASCII passwords."""
    session.install("-r", "requirements.txt")
    session.run(
        "pytest",
        "tests/test_undo_units.py",
        "tests/faults/test_live_writes.py",
        "tests/faults/test_rollback_kills.py",
        "tests/test_rehearsal.py",
        "tests/test_privileges.py",
        "tests/test_credentials.py",
        *session.posargs,
        env={"TEST_SERVER": server},
    )


@nox.session(python=False, default=False)
def matrix_summary(session: nox.Session) -> None:
    """The combined table of the per-server results in .nox-matrix/ (also written as summary.md/json)."""
    session.run(sys.executable, "-m", MATRIX, "summary", "--output", MATRIX_OUTPUT, *session.posargs)


@nox.session(python=PYTHON, default=False)
def matrix_bench(session: nox.Session) -> None:
    """Several servers in one run (posargs: target ids; default the four Debian-served ones), timed."""
    servers = session.posargs or ["mariadb-10.5", "mariadb-10.11", "mariadb-11.8", "mysql-9.7"]
    session.install("-r", "requirements.txt")
    session.run("python", "-m", MATRIX, "run", *servers, "--output", MATRIX_OUTPUT, "--bench")


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """The deploy benchmark on the configured database or the sandbox (posargs: --rows N)."""
    session.install("-r", "requirements.txt")
    session.run("python", "-m", "backend.dbops.benchmark", *session.posargs)


@nox.session(python=PYTHON, default=False)
def bench_rollback(session: nox.Session) -> None:
    """What keeping the application's writes costs: writer latency, capture and rollback against the raw
    ways (its own throwaway servers; posargs: --rows N)."""
    session.install("-r", "requirements.txt")
    session.run("python", "-m", "tests.bench.rollback", *session.posargs)
