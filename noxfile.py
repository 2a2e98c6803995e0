"""Nox sessions: `nox` runs lint and tests; `nox -s migrations` arrives with the server matrix."""

from __future__ import annotations

import nox

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
    """ruff over the project."""
    session.install("ruff")
    session.run("ruff", "check", ".", *session.posargs)
