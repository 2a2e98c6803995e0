"""The migration connection's hook during a deploy: every statement is made undoable before it runs.

SQLAlchemy calls before() with each statement a revision sends (op.*, op.execute, bulk_insert,
op.get_bind().execute) and after() once it ran. before() reads the statement (statements.py),
writes an undo entry, and keeps what the statement would destroy:

- CREATE TABLE: nothing to keep (the rollback drops the table);
- DROP TABLE: run as RENAME TABLE to a holding name, nothing copied;
- ALTER TABLE: the table's SHOW CREATE TABLE; when it drops a column or changes one in a way
  that can lose values (a narrower type, another charset), the key and the column's values,
  copied online into a holding table (holding.py);
- UPDATE/DELETE: the rows it will change, locked and copied in the same transaction
  (before-images), then after it ran the same rows again (after-images);
- INSERT: after it ran, the rows it added (after-images), found in the transaction's own snapshot;
- views, triggers, routines, events: the old definition.

What cannot be kept exactly (refusal.py) is refused before it runs, unless the operator allowed
irreversible statements.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..tool_tables import TOOL_TABLES
from . import holding, log, statements
from .hold_triggers import lock_statement, locked, trigger_specs
from .lossless import lossless
from .refusal import IrreversibleStatement, refusal, shortened
from .session import Session, column_list, key_match, q
from .tabledef import object_definition, show_create

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

Say = Callable[[str], None]
_IN_BATCH = 1000


@dataclass
class _Pending:
    """What after() must finish for the statement under way."""

    entry: log.UndoEntry | None = None
    unlock: bool = False  # the statement runs under LOCK TABLES
    extra: dict = field(default_factory=dict)  # "after": a function of the cursor, run once it ran


# ---------------------------------------------------------------- the hook


class DeployCapture:
    """Attach to the migration connection for the upgrade of one deploy."""

    def __init__(
        self, control: Connection, deploy_id: str, allow_irreversible: bool = False, say: Say | None = None
    ) -> None:
        self.control = Session.of(control)
        self.deploy_id = deploy_id
        self.allow_irreversible = allow_irreversible
        self.say = say or (lambda line: None)
        self.revision: str | None = None
        self.created: set[str] = set()
        self.pending: _Pending | None = None
        self._migration: Session | None = None
        self.connection: Connection | None = None
        log.ensure_table(self.control)

    @property
    def migration(self) -> Session:
        """The migration connection's session: the events that use it come only while attached."""
        if self._migration is None:
            raise RuntimeError("the deploy capture is not attached to a connection")
        return self._migration

    @contextmanager
    def attached(self, connection: Connection) -> Iterator[None]:
        from sqlalchemy import event

        self._migration = Session.of(connection)
        # A consistent snapshot per transaction: an INSERT's own rows are told from the application's by it.
        self.migration.run("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        event.listen(connection, "before_cursor_execute", self.before, retval=True)
        event.listen(connection, "after_cursor_execute", self.after)
        # Only an engine takes handle_error, and the engine is shared: the hook looks at its own
        # connection's errors only, and leaves with it.
        self.connection = connection
        event.listen(connection.engine, "handle_error", self.failed)
        try:
            yield
        finally:
            event.remove(connection.engine, "handle_error", self.failed)

    # -- SQLAlchemy events

    def before(self, conn, cursor, statement, parameters, context, executemany):
        action = statements.classify(statement)
        if action.kind == statements.NONE or any(name in TOOL_TABLES for name in action.names):
            return statement, parameters
        reason = refusal(self.migration, action, self.created)
        if reason:
            self.pending = _Pending(self._irreversible(action.table, statement, reason))
            return statement, parameters
        handler = getattr(self, f"_before_{action.kind.replace('-', '_')}")
        pending = self.pending = _Pending()
        replaced = handler(pending, action, cursor, statement, parameters, executemany)
        return (replaced, None) if replaced is not None else (statement, parameters)

    def _irreversible(self, table: str | None, statement: str, reason: str) -> log.UndoEntry:
        """Refuse the statement, or when the operator allowed it, the entry that names it as not undone."""
        if not self.allow_irreversible:
            raise IrreversibleStatement(
                f"{self.revision or 'a revision'}: `{shortened(statement)}` cannot be undone: {reason}. "
                "It did not run; rewrite it, or deploy with --allow-irreversible to run it anyway "
                "(a rollback then names it as not undone)"
            )
        return log.add(
            self.control,
            self.deploy_id,
            self.revision,
            log.IRREVERSIBLE,
            table,
            detail={"sql": shortened(statement), "reason": reason},
        )

    def after(self, conn, cursor, statement, parameters, context, executemany):
        pending, self.pending = self.pending, None
        if pending is None:
            return
        try:
            if pending.extra.get("after") is not None:
                pending.extra["after"](cursor)
        finally:
            if pending.unlock:
                self.migration.run("UNLOCK TABLES")
        if pending.entry is not None:
            log.save(self.control, pending.entry, log.DONE)

    def failed(self, context) -> None:
        if context.connection is not self.connection:
            return
        pending, self.pending = self.pending, None
        if pending is None:
            return
        if pending.unlock:
            try:
                self.migration.run("UNLOCK TABLES")
            except Exception:
                pass  # the connection is gone: the server released the locks with it
        if pending.entry is not None:
            try:
                log.save(self.control, pending.entry, log.FAILED)
            except Exception:
                pass  # the entry stays 'prepared'; a rollback checks the live state anyway

    # -- tables

    def _before_create_table(
        self,
        pending: _Pending,
        action: statements.Action,
        cursor: Any,
        statement: str,
        parameters: Any,
        executemany: bool,
    ) -> str | None:
        table = action.table_name()
        if action.if_not_exists and holding.table_exists(self.migration, table):
            return None
        pending.entry = log.add(self.control, self.deploy_id, self.revision, log.CREATE_TABLE, table)
        self.created.add(table)
        return None

    def _before_rename_table(
        self,
        pending: _Pending,
        action: statements.Action,
        cursor: Any,
        statement: str,
        parameters: Any,
        executemany: bool,
    ) -> str | None:
        pending.entry = log.add(
            self.control,
            self.deploy_id,
            self.revision,
            log.RENAME_TABLE,
            detail={"renames": [list(pair) for pair in action.renames]},
        )
        for old, new in action.renames:
            if old in self.created:
                self.created.discard(old)
                self.created.add(new)
        return None

    def _before_drop_table(
        self,
        pending: _Pending,
        action: statements.Action,
        cursor: Any,
        statement: str,
        parameters: Any,
        executemany: bool,
    ) -> str | None:
        present = [name for name in action.tables if holding.table_exists(self.migration, name)]
        if len(present) < len(action.tables) and not action.if_exists:
            return None  # the server refuses it with its own message
        if self.migration.value("SELECT @@SESSION.foreign_key_checks"):
            dropped = set(action.tables)
            for child, name, parent in self.migration.rows(
                "SELECT TABLE_NAME, CONSTRAINT_NAME, REFERENCED_TABLE_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS "
                "WHERE CONSTRAINT_SCHEMA = DATABASE()"
            ):
                if parent in dropped and child not in dropped:
                    raise IrreversibleStatement(
                        f"{self.revision}: `{shortened(statement)}`: cannot drop table {parent!r}: foreign key {name} "
                        f"of {child!r} references it (drop the foreign key first)"
                    )
        self.migration.commit()
        renames: list[tuple[str, str, log.UndoEntry]] = []
        for name in present:
            if name in self.created:
                self.created.discard(name)
                self.migration.run(f"DROP TABLE {q(name)}")  # created by this deploy: nothing to keep
                continue
            triggers = holding.table_triggers(self.migration, name)
            entry = log.add(
                self.control,
                self.deploy_id,
                self.revision,
                log.DROP_TABLE,
                name,
                detail={"before": show_create(self.migration, name), "triggers": triggers},
            )
            entry.hold = hold = holding.hold_name(self.deploy_id, entry.id, name)
            log.save(self.control, entry)
            renames.append((name, hold, entry))
        if not renames:
            return "DO 0"

        def after(cursor) -> None:
            for _name, hold, entry in renames:
                holding.free_names(self.migration, hold, entry.detail["before"], entry.detail["triggers"])
                log.save(self.control, entry, log.DONE)

        pending.extra["after"] = after
        return "RENAME TABLE " + ", ".join(f"{q(name)} TO {q(hold)}" for name, hold, _entry in renames)

    # -- ALTER TABLE

    def _before_alter(
        self,
        pending: _Pending,
        action: statements.Action,
        cursor: Any,
        statement: str,
        parameters: Any,
        executemany: bool,
    ) -> str | None:
        table, changes = action.table_name(), action.alter
        if table in self.created:
            if changes.new_name:
                self.created.discard(table)
                self.created.add(changes.new_name)
            return None
        before = show_create(self.migration, table)
        if before is None:
            return None
        self.migration.commit()
        infos = {column.name: column for column in holding.columns(self.migration, table)}
        dropped = [
            name
            for name in (*changes.dropped, *self._lossy(table, changes, infos, renamed_only=True))
            if name in infos and not infos[name].generated
        ]
        modified = [name for name in self._lossy(table, changes, infos) if name not in dropped]
        key = holding.table_key(self.migration, table) if dropped or modified else None
        if (dropped or modified) and key is None:
            # refusal() cannot tell a lossy MODIFY or CONVERT from a harmless one; the probe above can.
            reason = (
                f"{table} has no primary key or unique key of NOT NULL columns to keep the values of "
                f"{', '.join(dropped + modified)} by; give it one in an earlier revision"
            )
            pending.entry = self._irreversible(table, statement, reason)
            return None
        entry = log.add(
            self.control,
            self.deploy_id,
            self.revision,
            log.ALTER,
            table,
            detail={
                "before": before,
                "renames": [list(pair) for pair in changes.renamed],
                "new_name": changes.new_name,
            },
        )
        pending.entry = entry
        if key is None:
            return None  # nothing it changes loses values
        entry.hold = hold = holding.hold_name(self.deploy_id, entry.id, table)
        entry.detail.update(key=key, dropped=dropped, modified=modified, phase=holding.COPY)
        log.save(self.control, entry)
        holding.create_column_hold(
            self.control, hold, [infos[k] for k in key], [infos[name] for name in dropped + modified]
        )
        specs = trigger_specs(self.control, self.deploy_id, table)
        with locked(self.control, table, specs):
            holding.install_triggers(self.control, self.deploy_id, table, specs)
        rows = holding.copy_columns(self.control, table, hold, key, dropped + modified)
        self.say(f"kept {', '.join(dropped + modified)} of {table} ({rows:,} rows) in {hold}")
        # The copy triggers give way to tracking ones in the same locked moment as the ALTER.
        entry.detail["phase"] = holding.TRACK if modified else "held"
        log.save(self.control, entry)
        specs = trigger_specs(self.control, self.deploy_id, table, dropping=dropped)
        self.migration.run(lock_statement(table, specs + [holding.TriggerSpec(hold, (), (), holding.COPY)]))
        pending.unlock = True
        holding.install_triggers(self.migration, self.deploy_id, table, specs)
        return None

    def _lossy(
        self, table: str, changes: statements.AlterChanges, infos: dict, renamed_only: bool = False
    ) -> list[str]:
        """Columns the ALTER retypes in a way that can lose values (probed on an empty copy of the table)."""
        candidates = (
            list(changes.retyped_renames)
            if renamed_only
            else [
                *changes.modified,
                *([name for name, info in infos.items() if info.charset] if changes.converts_charset else []),
            ]
        )
        candidates = [name for name in candidates if name in infos and not infos[name].generated]
        if not candidates:
            return []
        probe = holding.probe_name(self.deploy_id)
        renames = dict(changes.renamed)
        try:
            self.control.run(f"DROP TABLE IF EXISTS {q(probe)}")
            self.control.run(f"CREATE TABLE {q(probe)} LIKE {q(table)}")
            self.control.run(f"ALTER TABLE {q(probe)} {', '.join(changes.column_specs)}")
            after = {column.name: column for column in holding.columns(self.control, probe)}
        except Exception:
            return candidates  # cannot tell: keep them all
        finally:
            self.control.run(f"DROP TABLE IF EXISTS {q(probe)}")
        return [
            name
            for name in candidates
            if renames.get(name, name) not in after or not lossless(infos[name], after[renames.get(name, name)])
        ]

    # -- rows

    def _before_rows(
        self,
        pending: _Pending,
        action: statements.Action,
        cursor: Any,
        statement: str,
        parameters: Any,
        executemany: bool,
    ) -> str | None:
        table = action.table_name()
        if table in self.created or not holding.table_exists(self.migration, table):
            return None
        key = holding.table_key(self.migration, table)
        if key is None:
            raise RuntimeError(f"{table} has no key: refusal() lets no row change of it through")
        infos = [column for column in holding.columns(self.migration, table) if not column.generated]
        names = [column.name for column in infos]
        # Each data change commits on its own, its images with it: a transaction whose snapshot
        # is older than the holding table created next could not write to it (error 1412).
        self.migration.commit()
        entry = log.add(
            self.control,
            self.deploy_id,
            self.revision,
            log.ROWS,
            table,
            detail={"key": key, "columns": names, "dml": action.dml, "sql": shortened(statement)},
        )
        entry.hold = hold = holding.hold_name(self.deploy_id, entry.id, table)
        log.save(self.control, entry)
        holding.create_rows_hold(self.control, hold, key, infos)
        pending.entry = entry

        def keep(image: str, columns_from: str) -> int:
            """Rows of images into the holding table: `columns_from` is `<columns> FROM ...`."""
            return self.migration.run(
                f"INSERT IGNORE INTO {q(hold)} ({q(holding.IMAGE)}, "
                f"{column_list(names)}) SELECT '{image}', {columns_from}"
            )

        if action.dml in ("update", "delete"):
            literal = (
                [cursor.mogrify(statement, args) for args in parameters]
                if executemany
                else [cursor.mogrify(statement, parameters)]
            )
            captured = 0
            for sql in literal:
                each = statements.classify(sql)
                captured += keep(
                    holding.BEFORE,
                    f"{column_list(names, q(each.alias) + '.')} FROM {each.source} {each.tail} FOR UPDATE",
                )

            def after(cursor) -> None:
                if cursor.rowcount is not None and cursor.rowcount > captured:
                    raise IrreversibleStatement(
                        f"{self.revision}: `{shortened(statement)}` changed {cursor.rowcount} rows but "
                        f"{captured} were captured before it: not deterministic, undone"
                    )
                if action.dml == "update":
                    keep(
                        holding.AFTER,
                        f"{column_list(names, 't.')} FROM {q(table)} t JOIN {q(hold)} b "
                        f"ON b.{q(holding.IMAGE)} = '{holding.BEFORE}' AND {key_match(key, 't', 'b')}",
                    )

            pending.extra["after"] = after
            return None
        # INSERT: the rows it adds are those of this transaction's snapshot that were not there before.
        auto = self._auto_increment_key(table, key)
        since = (
            self.migration.value(f"SELECT MAX({q(key[0])}) FROM {q(table)}")
            if auto
            else set(self.migration.rows(f"SELECT {column_list(key)} FROM {q(table)}"))
        )

        def after_insert(cursor) -> None:
            if auto:
                added = self.migration.rows(
                    f"SELECT {q(key[0])} FROM {q(table)}"
                    + (f" WHERE {q(key[0])} > {self.migration.literal(since)}" if since is not None else "")
                )
            else:
                added = [
                    row for row in self.migration.rows(f"SELECT {column_list(key)} FROM {q(table)}") if row not in since
                ]
            for start in range(0, len(added), _IN_BATCH):
                batch = added[start : start + _IN_BATCH]
                values = ", ".join("(" + ", ".join(self.migration.literal(v) for v in row) + ")" for row in batch)
                keep(holding.AFTER, f"{column_list(names)} FROM {q(table)} WHERE ({column_list(key)}) IN ({values})")

        pending.extra["after"] = after_insert
        return None

    def _auto_increment_key(self, table: str, key: list[str]) -> bool:
        if len(key) != 1:
            return False
        extra = self.migration.value(
            "SELECT EXTRA FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
            f"AND TABLE_NAME = {self.migration.literal(table)} AND COLUMN_NAME = {self.migration.literal(key[0])}"
        )
        return "auto_increment" in (extra or "").lower()

    # -- views, triggers, routines, events

    def _before_object(
        self,
        pending: _Pending,
        action: statements.Action,
        cursor: Any,
        statement: str,
        parameters: Any,
        executemany: bool,
    ) -> str | None:
        before = object_definition(self.migration, action.object_type, action.object_name)
        pending.entry = log.add(
            self.control,
            self.deploy_id,
            self.revision,
            log.OBJECT,
            detail={"type": action.object_type, "name": action.object_name, "before": before},
        )
        return None
