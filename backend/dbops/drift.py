"""Schema drift (`invoke db.drift`): the models, the migrations and the live database, compared in pairs.

- models: backend.database.Base.metadata;
- migrations: the schema the revisions produce, built in a throwaway database at head;
- live: the configured database.

Models against a database go through Alembic's compare_metadata (what autogenerate would
write); the two databases are compared by schema.diff, table by table. MySQL and MariaDB
quirks that are not real differences are normalized away (schema.py): TINYINT(1) vs BOOLEAN,
integer display widths, the indexes InnoDB creates for foreign keys, default quoting,
current_timestamp() vs CURRENT_TIMESTAMP.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from ..config import Settings
from . import alembic_setup, authoring, revision_graph
from .connection import connect, require_configured
from .schema import Difference, diff, normalize_default, normalize_type, read_schema, same_type
from .tool_tables import IgnoredTables, ignored_tables

if TYPE_CHECKING:
    from sqlalchemy import MetaData
    from sqlalchemy.engine import Connection

MODELS, MIGRATIONS, LIVE = "models", "migrations", "live"
PAIRS = ((MODELS, MIGRATIONS), (MODELS, LIVE), (MIGRATIONS, LIVE))


@dataclass
class Comparison:
    left: str
    right: str
    differences: list[Difference] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.left}-vs-{self.right}"

    @property
    def title(self) -> str:
        return f"{self.left} vs {self.right}"

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "left": self.left,
            "right": self.right,
            "differences": [asdict(difference) for difference in self.differences],
        }


@dataclass
class DriftReport:
    database: str
    head: str
    live_revision: tuple[str, ...]
    comparisons: list[Comparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        return any(comparison.differences for comparison in self.comparisons)

    def comparison(self, left: str, right: str) -> Comparison:
        return next(c for c in self.comparisons if (c.left, c.right) == (left, right))

    def to_dict(self) -> dict:
        return {
            "database": self.database,
            "head": self.head,
            "live_revision": list(self.live_revision),
            "drifted": self.drifted,
            "notes": self.notes,
            "comparisons": [comparison.to_dict() for comparison in self.comparisons],
        }

    def text_lines(self) -> list[str]:
        lines = []
        for comparison in self.comparisons:
            if comparison.differences:
                lines.append(f"⚠️  {comparison.title}: {len(comparison.differences)} difference(s)")
                lines.extend(f"     {difference.text()}" for difference in comparison.differences)
            else:
                lines.append(f"✅ {comparison.title}: no differences")
        return lines

    def to_markdown(self) -> str:
        """A table for a pull-request comment."""
        lines = [f"### Schema drift of `{self.database}`", ""]
        lines.append(f"Migrations at head `{self.head}`; live database at `{', '.join(self.live_revision) or 'base'}`.")
        lines.append("")
        for note in self.notes:
            lines.extend([f"> {_cell(note)}", ""])
        if not self.drifted:
            lines.append("No drift: the models, the migrations and the live database agree.")
            return "\n".join(lines) + "\n"
        lines.append("| comparison | table | what | difference |")
        lines.append("| --- | --- | --- | --- |")
        for comparison in self.comparisons:
            for difference in comparison.differences:
                lines.append(
                    f"| {comparison.title} | `{_cell(difference.table)}` | {_cell(difference.item)} | "
                    f"{_cell(difference.detail)} |"
                )
        clean = [comparison.title for comparison in self.comparisons if not comparison.differences]
        if clean:
            lines.extend(["", f"No differences: {', '.join(clean)}."])
        return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


# ---------------------------------------------------------------- models against a database


def _type_text(type_) -> str:
    from sqlalchemy.dialects import mysql

    try:
        return normalize_type(type_.compile(dialect=mysql.dialect()))
    except Exception:
        return str(type_)


def _columns(constraint) -> str:
    return ", ".join(column.name for column in constraint.columns) if hasattr(constraint, "columns") else ""


def _implicit_fk_index(index, metadata: MetaData) -> bool:
    """An index only in the database that InnoDB made for a foreign key of the models."""
    table = metadata.tables.get(index.table.name) if index.table is not None else None
    if table is None:
        return False
    columns = [column.name for column in index.columns]
    return any(fk.name == index.name or list(fk.column_keys) == columns for fk in table.foreign_key_constraints)


def _describe(entry, left: str, right: str, metadata: MetaData) -> Difference | None:
    """One compare_metadata entry as a Difference (None for a quirk that is not one)."""
    if isinstance(entry, list):  # modify_* entries come as a list of one
        entry = entry[0]
    kind = entry[0]
    if kind in ("add_table", "remove_table"):
        return Difference(entry[1].name, "table", f"only in {left if kind == 'add_table' else right}")
    if kind in ("add_column", "remove_column"):
        column = entry[3]
        return Difference(
            entry[2],
            f"column {column.name}",
            f"only in {left if kind == 'add_column' else right} ({_type_text(column.type)})",
        )
    if kind in ("add_index", "remove_index"):
        index = entry[1]
        if kind == "remove_index" and _implicit_fk_index(index, metadata):
            return None
        unique = "unique " if index.unique else ""
        return Difference(
            index.table.name,
            f"{unique}index {index.name}",
            f"only in {left if kind == 'add_index' else right} ({_columns(index)})",
        )
    if kind in ("add_constraint", "remove_constraint"):
        constraint = entry[1]
        return Difference(
            constraint.table.name,
            f"constraint {constraint.name}",
            f"only in {left if kind == 'add_constraint' else right} ({_columns(constraint)})",
        )
    if kind in ("add_fk", "remove_fk"):
        fk = entry[1]
        return Difference(
            fk.parent.name,
            f"foreign key {fk.name}",
            f"only in {left if kind == 'add_fk' else right} ({', '.join(fk.column_keys)} -> {fk.referred_table.name})",
        )
    if kind.startswith("modify_"):
        _, _schema, table, column, _existing, database_value, model_value = entry
        what = kind.removeprefix("modify_")
        database_text: str | None
        model_text: str | None
        if what == "type":
            database_text, model_text = _type_text(database_value), _type_text(model_value)
            if same_type(database_text, model_text):
                return None
        elif what == "default":
            database_text, model_text = normalize_default(database_value), normalize_default(model_value)
            if database_text == model_text:
                return None
        elif what == "nullable":
            database_text = "NULL" if database_value else "NOT NULL"
            model_text = "NULL" if model_value else "NOT NULL"
        else:
            database_text, model_text = database_value, model_value
        return Difference(table, f"column {column}", f"{what} {model_text} in {left}, {database_text} in {right}")
    return Difference(getattr(entry[1], "name", "?") if len(entry) > 1 else "?", kind, f"differs ({kind})")


def models_against(
    connection: Connection, ignored: IgnoredTables, left: str = MODELS, right: str = LIVE
) -> list[Difference]:
    """What autogenerate would change to bring the database to the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from ..database import Base

    context = MigrationContext.configure(
        connection,
        opts={"compare_type": True, "compare_server_default": True, "include_name": ignored.include_name},
    )
    described = (_describe(entry, left, right, Base.metadata) for entry in compare_metadata(context, Base.metadata))
    return sorted((difference for difference in described if difference), key=lambda d: (d.table, d.item))


# ---------------------------------------------------------------- the three-way report


def drift(settings: Settings) -> DriftReport:
    """Compare the models, the migrations at head (in a scratch database) and the live database."""
    require_configured(settings)
    head = revision_graph.single_head(alembic_setup.script_directory(settings))
    ignored = ignored_tables(settings)
    with connect(settings) as connection:
        live_revision = alembic_setup.current_heads(connection)
        live_schema = read_schema(connection, settings.database, ignored)
        models_vs_live = models_against(connection, ignored, MODELS, LIVE)
    with authoring.scratch_database(settings, "head") as scratch, connect(scratch) as connection:
        scratch_schema = read_schema(connection, scratch.database, ignored)
        models_vs_migrations = models_against(connection, ignored, MODELS, MIGRATIONS)

    report = DriftReport(
        settings.database,
        head,
        live_revision,
        [
            Comparison(MODELS, MIGRATIONS, models_vs_migrations),
            Comparison(MODELS, LIVE, models_vs_live),
            Comparison(MIGRATIONS, LIVE, diff(scratch_schema, live_schema, MIGRATIONS, LIVE)),
        ],
    )
    if set(live_revision) != {head}:
        report.notes.append(
            f"{settings.database} is at {', '.join(live_revision) or 'base'}, not at head {head}: "
            "the differences include revisions not applied yet (`invoke db.upgrade`)"
        )
    return report
