"""What a rollback could not undo exactly (no key, a changed key, cascading foreign keys, REPLACE,
TRUNCATE, CALL...): the one judgement the deploy's preflight and the capture hook both make."""

from __future__ import annotations

from ..errors import DbOpsError, one_line
from . import holding, statements
from .session import Session


class IrreversibleStatement(DbOpsError):
    """A statement whose effect a rollback could not undo exactly; it did not run."""


def shortened(sql: str) -> str:
    """The statement on one line, cut to 80 characters, as messages and the undo log quote it."""
    text = one_line(sql)
    return text if len(text) <= 80 else text[:77] + "..."


def _children(session: Session, table: str, rule_column: str) -> list[str]:
    """Tables whose foreign keys change rows of theirs when a row of table is deleted or updated."""
    return [
        f"{child}.{name}"
        for child, name in session.rows(
            f"SELECT TABLE_NAME, CONSTRAINT_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS "
            f"WHERE CONSTRAINT_SCHEMA = DATABASE() AND REFERENCED_TABLE_NAME = {session.literal(table)} "
            f"AND {rule_column} IN ('CASCADE', 'SET NULL', 'SET DEFAULT')"
        )
    ]


def refusal(session: Session, action: statements.Action, created: set[str]) -> str:
    """Why the statement cannot be made undoable against this database ('' when it can)."""
    if action.kind == statements.REFUSE:
        return action.reason
    if action.kind not in (statements.ROWS, statements.ALTER):
        return ""
    table = action.table_name()
    if table in created or not holding.table_exists(session, table):
        return ""
    if action.kind == statements.ROWS:
        key = holding.table_key(session, table)
        if key is None:
            return (
                f"{action.table} has no primary key or unique key of NOT NULL columns, so its rows cannot be "
                "told apart to be put back; give it one in an earlier revision"
            )
        if action.dml == "update" and set(action.assigned) & set(key):
            return f"it changes the key ({', '.join(key)}) of {action.table}'s rows, by which they are put back"
        rule = {"delete": "DELETE_RULE", "update": "UPDATE_RULE"}.get(action.dml)
        if rule and (children := _children(session, table, rule)):
            return (
                f"the {action.dml} cascades through foreign keys ({', '.join(children)}) into rows it does "
                "not name: change those tables first with statements of their own"
            )
    if action.kind == statements.ALTER:
        changes = action.alter
        if changes.dropped or changes.modified or changes.retyped_renames or changes.converts_charset:
            key = holding.table_key(session, table)
            touched = {
                *changes.dropped,
                *changes.modified,
                *changes.retyped_renames,
                *(old for old, _ in changes.renamed),
            }
            if key is None and (changes.dropped or changes.retyped_renames):
                return (
                    f"{action.table} has no primary key or unique key of NOT NULL columns to keep the dropped "
                    "column's values by; give it one in an earlier revision"
                )
            if key is not None and touched & set(key):
                return f"it drops or changes a column of {action.table}'s key ({', '.join(key)})"
    return ""
