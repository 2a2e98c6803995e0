"""Verification after an upgrade (`invoke db.verify`, the deploy's verify step)."""

from __future__ import annotations

from collections.abc import Mapping

from ..config import Settings
from . import migrate
from .check import CheckReport
from .connection import connect
from .snapshot import row_counts


def verify(settings: Settings, target: str = "head", rows_before: Mapping[str, int] | None = None) -> CheckReport:
    """The database is at target, passes the smoke SQL, lost no rows in the tables of
    rows_before (a table that is gone was dropped by a revision), and matches the models at head."""
    from sqlalchemy import inspect, text

    report = CheckReport()
    script = migrate.script_directory(settings)
    expected = migrate.resolve_target(script, target)
    with connect(settings) as connection:
        current = migrate.current_heads(connection)
        at_target = set(current) == set(expected)
        shown = ", ".join(current) or "base"
        report.add("revision", at_target, f"at {shown}" if at_target else
                   f"at {shown}, expected {', '.join(expected) or 'base'}")

        for statement in settings.smoke_sql:
            transaction = connection.begin()
            try:
                result = connection.execute(text(statement))
                if result.returns_rows:
                    result.fetchall()
                report.add("smoke", True, statement)
            except Exception as exc:
                report.add("smoke", False, f"{statement}: {migrate.first_line(getattr(exc, 'orig', exc))}")
            finally:
                transaction.rollback()  # smoke SQL must not change anything

        if rows_before:
            existing = set(inspect(connection).get_table_names())
            kept = [name for name in rows_before if name in existing]
            now = row_counts(connection, kept)
            lost = [f"{name} ({rows_before[name]} -> {now[name]})" for name in kept if now[name] < rows_before[name]]
            report.add("rows", not lost, f"rows lost in {', '.join(lost)}" if lost else
                       f"no rows lost in {len(kept)} table(s)")

    if settings.verify_models and at_target and expected and set(expected) == set(script.get_heads()):
        differences = migrate.autogenerate_diff(settings)
        report.add("models", not differences, f"{len(differences)} difference(s) between backend/database.py "
                   "and the schema" if differences else "the schema matches backend/database.py")
    return report
