"""Undo of a deploy's own changes, statement by statement, keeping every write of the application.

log.py            the alembic_undo table: one entry per statement that changed something
statements.py     what a statement changes and how it is made undoable, read from its tokens
tabledef.py       SHOW CREATE TABLE read as parts, and the ALTER that brings a table back to one;
                  the definitions of views, triggers, routines and events
holding.py        holding tables and the triggers that keep them current; settle
hold_triggers.py  which of those triggers a table needs, installed under LOCK TABLES
lossless.py       whether a retyped column keeps every value
refusal.py        what a rollback could not undo exactly, judged before a deploy and before each statement
capture.py        the migration connection's hook: each statement made undoable before it runs
revert.py         the entries undone newest first
"""
