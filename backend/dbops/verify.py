"""Verification after an upgrade (`invoke db.verify`, the deploy's verify step)."""

from __future__ import annotations

from ..config import Settings
from . import alembic_setup, authoring, revision_graph
from .check import CheckReport
from .connection import connect
from .errors import SchemaChanged, first_line


def verify(settings: Settings, target: str = "head", expected: tuple[str, ...] | None = None) -> CheckReport:
    """The database is at target (or at the expected revisions), passes the smoke SQL and
    matches the models at head.

    Row counts are not compared: the application keeps writing and deleting during a deploy,
    and the rows the deploy's own statements touched are in its undo log.
    """
    from sqlalchemy import text

    report = CheckReport()
    script = alembic_setup.script_directory(settings)
    if expected is None:
        expected = revision_graph.resolve_target(script, target)
    with connect(settings) as connection:
        current = alembic_setup.current_heads(connection)
        at_target = set(current) == set(expected)
        shown = ", ".join(current) or "base"
        report.add(
            "revision",
            at_target,
            f"at {shown}" if at_target else f"at {shown}, expected {', '.join(expected) or 'base'}",
        )

        connection.rollback()  # reading the revision began a transaction
        for statement in settings.smoke_sql:
            try:
                result = connection.execute(text(statement))
                if result.returns_rows:
                    result.fetchall()
                report.add("smoke", True, statement)
            except Exception as exc:
                report.add("smoke", False, f"{statement}: {first_line(getattr(exc, 'orig', exc))}")
            finally:
                connection.rollback()  # smoke SQL must not change anything

    if settings.verify_models and at_target and expected and set(expected) == set(script.get_heads()):
        try:
            differences = authoring.autogenerate_diff(settings)
        except SchemaChanged as exc:
            report.add("models", False, str(exc))
            return report
        report.add(
            "models",
            not differences,
            f"{len(differences)} difference(s) between backend/database.py and the schema"
            if differences
            else "the schema matches backend/database.py",
        )
    return report
