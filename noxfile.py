"""Nox sessions: `nox` runs lint and tests; `nox -s migrations` runs tests/migrations on each server version.

    nox -s migrations                              every server version, one session each
    nox -s "migrations(server='mysql-9.7')"        one server version (invoke sandbox.servers lists them)
    nox -k "migrations and mariadb"                the MariaDB versions (tags: mariadb, mysql, debian)
    nox -k "migrations and debian" -- -x           the versions Debian ships; after --, pytest's options
    nox -s "server_tests(server='mysql-9.7')"      the most server-dependent tests on one version

One table of targets feeds the parametrized sessions: backend/dbops/targets.py (TARGETS, with
their tags). Each session runs pytest with TEST_SERVER set to its target, whose server
tests/conftest.py acquires. A target no provider can serve has its tests skipped, with every
provider's reason in pytest's closing summary; MATRIX_REQUIRED=all (or ids or tags separated by
commas) makes them fail instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nox

# The table of targets is stdlib-only at import time, so nox's own Python can read it.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from backend.dbops.targets import TARGETS  # noqa: E402

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True
# uv creates environments in a fraction of the time where it is installed.
nox.options.default_venv_backend = "uv|virtualenv"

PYTHON = "3.11"


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


# Each target's id, and its tags for -k: its flavour, and debian when a Debian suite ships it.
SERVERS = [nox.param(target.id, tags=list(target.tags)) for target in TARGETS.values()]


@nox.session(python=PYTHON, default=False)
@nox.parametrize("server", SERVERS)
def migrations(session: nox.Session, server: str) -> None:
    """The migrations on one server version, tests/migrations (posargs: pytest's options).

    pytest-alembic's built-in tests, every step's schema through a round trip up, down and up
    again, the rows each revision holds, the offline SQL."""
    _pytest_on(session, server, "tests/migrations")


@nox.session(python=PYTHON, default=False)
@nox.parametrize("server", SERVERS)
def server_tests(session: nox.Session, server: str) -> None:
    """The tests that depend most on the server's flavour and version, on one server: the rollback
    (failed deploys under a live writer, kills of rollbacks and restores), the rehearsal, grants
    and roles, non-ASCII passwords."""
    _pytest_on(
        session,
        server,
        "tests/test_undo_units.py",
        "tests/faults/test_live_writes.py",
        "tests/test_online_ddl.py",
        "tests/faults/test_rollback_kills.py",
        "tests/test_rehearsal.py",
        "tests/test_privileges.py",
        "tests/test_credentials.py",
    )


def _pytest_on(session: nox.Session, server: str, *paths: str) -> None:
    """pytest on the server of one target; a target no provider served shows as skipped in nox's summary."""
    from xml.etree import ElementTree

    session.install("-r", "requirements.txt")
    report = Path(session.create_tmp()) / "pytest.xml"
    session.run("pytest", *paths, f"--junitxml={report}", *session.posargs, env={"TEST_SERVER": server})
    if not report.exists():
        return  # posargs chose another --junitxml
    results = ElementTree.parse(report)
    skips = [element.get("message", "") for element in results.iter("skipped")]
    tests = sum(int(suite.get("tests", 0)) for suite in results.iter("testsuite"))
    if skips and len(skips) == tests and all(message.startswith(f"{server} not tested") for message in skips):
        session.skip(skips[0])


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """The deploy benchmark on generated chat data, on its own throwaway server: each phase against the raw
    tools and mydumper/myloader (posargs: --sizes 1000000,4000000 --repeats 3 --json FILE)."""
    session.install("-r", "requirements.txt")
    session.run("python", "-m", "tests.bench.deploy", *session.posargs)


@nox.session(python=PYTHON, default=False)
def bench_rollback(session: nox.Session) -> None:
    """What keeping the application's writes costs: writer latency, capture and rollback against the raw
    ways (its own throwaway servers; posargs: --rows N)."""
    session.install("-r", "requirements.txt")
    session.run("python", "-m", "tests.bench.rollback", *session.posargs)


@nox.session(python=PYTHON, default=False)
def bench_online(session: nox.Session) -> None:
    """A table copy of chat_messages under a steady writer, direct against online (pt-online-schema-change):
    time, the writer's waits, the copy rate (its own throwaway server; posargs: --rows N --repeats N --json FILE)."""
    session.install("-r", "requirements.txt")
    session.run("python", "-m", "tests.bench.online", *session.posargs)
