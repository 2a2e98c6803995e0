"""Invoke entry point: `invoke --list` shows the tasks, `invoke --help db.upgrade` explains one.

One module per namespace, each with its `ns`: db.py (revisions and the database itself, with
db_release.py for deploys and backups), sandbox.py, app.py; cli.py holds what they share.
The tasks are a thin layer: they parse options, call backend, print the lines it returns and
turn errors into one line starting with ❌ and a non-zero exit code. Heavy libraries
(SQLAlchemy, Alembic) are imported inside task bodies so that `invoke --list` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

# invoke puts this folder on sys.path, not the project's (which runs from its folder, not installed).
PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)
if PROJECT_ROOT not in sys.path:
    sys.path.insert(0, PROJECT_ROOT)

from invoke import Collection  # noqa: E402  (after the path above)

from backend.console import show_waiting  # noqa: E402

from . import app, db, sandbox  # noqa: E402

show_waiting()
ns = Collection(db.ns, sandbox.ns, app.ns)
