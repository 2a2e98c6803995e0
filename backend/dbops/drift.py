"""Schema drift (`invoke db.drift`): the models, the migrations and the live database, compared in pairs.

- models: backend.database.Base.metadata;
- migrations: the schema the revisions produce, built in a throwaway database at head;
- live: the configured database.

Models against a database go through Alembic's compare_metadata (what autogenerate would
write); the two databases are compared table by table from schema snapshots. MySQL and
MariaDB quirks that are not real differences are normalized away: TINYINT(1) vs BOOLEAN,
integer display widths, the indexes InnoDB creates for foreign keys, default quoting,
current_timestamp() vs CURRENT_TIMESTAMP.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..config import Settings
from . import alembic_setup, authoring, revision_graph
from .connection import connect, require_configured
from .snapshot import Snapshot, schema_snapshot
from .tool_tables import IgnoredTables, ignored_tables

if TYPE_CHECKING:
    from sqlalchemy import MetaData
    from sqlalchemy.engine import Connection

MODELS, MIGRATIONS, LIVE = "models", "migrations", "live"
PAIRS = ((MODELS, MIGRATIONS), (MODELS, LIVE), (MIGRATIONS, LIVE))


@dataclass(frozen=True)
class Difference:
    table: str
    item: str  # "table", "column mood", "index ix_users_email", "foreign key fk_...", "check ..."
    detail: str  # e.g. "only in live", "type varchar(32) in migrations, varchar(64) in live"

    def text(self) -> str:
        return f"{self.table}: {self.item}: {self.detail}" if self.item != "table" else f"{self.table}: {self.detail}"


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


_DISPLAY_WIDTH = re.compile(r"^(tinyint|smallint|mediumint|int|bigint)\(\d+\)")
_SYNONYMS = {
    "bool": "tinyint",
    "boolean": "tinyint",
    "integer": "int",
    "numeric": "decimal",
    "json": "longtext",
}  # MariaDB stores JSON as LONGTEXT with a json_valid() check


def normalize_type(type_text: str) -> str:
    """A MySQL type as comparable text: tinyint(1)/BOOL -> tinyint, int(11) -> int, NUMERIC -> decimal."""
    text = " ".join(type_text.lower().replace(", ", ",").split())
    text = re.sub(r"\s+(collate|character set|charset)\s+\S+", "", text)
    base = re.match(r"[a-z]+", text)
    if base and base.group(0) in _SYNONYMS:
        text = _SYNONYMS[base.group(0)] + text[base.end() :]
    return _DISPLAY_WIDTH.sub(r"\1", text)


def normalize_default(value: Any) -> str | None:
    """A server default as comparable text: quotes, parentheses and current_timestamp() spelling dropped."""
    if value is None:
        return None
    arg = getattr(value, "arg", value)
    text = str(getattr(arg, "text", arg)).strip()
    while len(text) >= 2 and text[0] == "(" and text[-1] == ")":
        text = text[1:-1].strip()
    if text.upper() == "NULL":
        return None
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    text = re.sub(r"current_timestamp(\(\))?", "CURRENT_TIMESTAMP", text, flags=re.I)
    text = re.sub(r"\bnow\(\)", "CURRENT_TIMESTAMP", text, flags=re.I)
    return text


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
        if what == "type":
            database_text, model_text = _type_text(database_value), _type_text(model_value)
            if normalize_type(database_text) == normalize_type(model_text):
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


# ---------------------------------------------------------------- two databases


def _index_text(index: dict) -> str:
    return ("unique " if index["unique"] else "") + "(" + ", ".join(index["columns"]) + ")"


def _fk_text(fk: dict) -> str:
    return (
        f"({', '.join(fk['columns'])}) -> {fk['references']}({', '.join(fk['referenced_columns'])}) "
        f"on delete {fk['on_delete'].lower()}, on update {fk['on_update'].lower()}"
    )


def _named(kind: str, table: str, left: str, right: str, a: dict, b: dict, show) -> list[Difference]:
    found = []
    for name in sorted(a.keys() | b.keys()):
        if name not in b:
            found.append(Difference(table, f"{kind} {name}", f"only in {left} {show(a[name])}"))
        elif name not in a:
            found.append(Difference(table, f"{kind} {name}", f"only in {right} {show(b[name])}"))
        elif a[name] != b[name]:
            found.append(Difference(table, f"{kind} {name}", f"{show(a[name])} in {left}, {show(b[name])} in {right}"))
    return found


_COLUMN_FIELDS = ("type", "nullable", "default", "extra", "collation")


def _normalized_columns(columns: list) -> dict[str, dict]:
    result = {}
    for name, column_type, nullable, default, extra, collation in columns:
        result[name] = {
            "type": normalize_type(column_type),
            "nullable": nullable,
            "default": normalize_default(default),
            "extra": extra,
            "collation": collation,
        }
    return result


def _without_implicit_indexes(table: dict) -> dict[str, dict]:
    """Indexes, less those InnoDB made for a foreign key (named after it, on its columns)."""
    return {
        name: index
        for name, index in table["indexes"].items()
        if not (
            name in table["foreign_keys"]
            and index["columns"] == table["foreign_keys"][name]["columns"]
            and not index["unique"]
        )
    }


def compare_snapshots(a: Snapshot, b: Snapshot, left: str = MIGRATIONS, right: str = LIVE) -> list[Difference]:
    """Table by table: columns, indexes, foreign keys, checks, engine and collation."""
    found: list[Difference] = []
    for table in sorted(a.keys() | b.keys()):
        if table not in b:
            found.append(Difference(table, "table", f"only in {left}"))
            continue
        if table not in a:
            found.append(Difference(table, "table", f"only in {right}"))
            continue
        one, two = a[table], b[table]
        for key in ("engine", "collation"):
            if one[key] != two[key]:
                found.append(Difference(table, "table", f"{key} {one[key]} in {left}, {two[key]} in {right}"))
        columns_a, columns_b = _normalized_columns(one["columns"]), _normalized_columns(two["columns"])
        for name in sorted(columns_a.keys() | columns_b.keys()):
            if name not in columns_b:
                found.append(Difference(table, f"column {name}", f"only in {left} ({columns_a[name]['type']})"))
            elif name not in columns_a:
                found.append(Difference(table, f"column {name}", f"only in {right} ({columns_b[name]['type']})"))
            else:
                changed = [
                    f"{key} {columns_a[name][key]!s} in {left}, {columns_b[name][key]!s} in {right}"
                    for key in _COLUMN_FIELDS
                    if columns_a[name][key] != columns_b[name][key]
                ]
                if changed:
                    found.append(Difference(table, f"column {name}", "; ".join(changed)))
        common = [name for name in columns_a if name in columns_b]
        if common != [name for name in columns_b if name in columns_a]:
            found.append(
                Difference(
                    table,
                    "column order",
                    f"({', '.join(common)}) in {left}, "
                    f"({', '.join(n for n in columns_b if n in columns_a)}) in {right}",
                )
            )
        found += _named(
            "index", table, left, right, _without_implicit_indexes(one), _without_implicit_indexes(two), _index_text
        )
        found += _named("foreign key", table, left, right, one["foreign_keys"], two["foreign_keys"], _fk_text)
        found += _named("check", table, left, right, one["checks"], two["checks"], lambda clause: f"({clause})")
    return found


# ---------------------------------------------------------------- the three-way report


def drift(settings: Settings) -> DriftReport:
    """Compare the models, the migrations at head (in a scratch database) and the live database."""
    require_configured(settings)
    head = revision_graph.single_head(alembic_setup.script_directory(settings))
    ignored = ignored_tables(settings)
    with connect(settings) as connection:
        live_revision = alembic_setup.current_heads(connection)
        live_snapshot = schema_snapshot(connection, settings.database, ignored)
        models_vs_live = models_against(connection, ignored, MODELS, LIVE)
    with authoring.scratch_database(settings, "head") as scratch, connect(scratch) as connection:
        scratch_snapshot = schema_snapshot(connection, scratch.database, ignored)
        models_vs_migrations = models_against(connection, ignored, MODELS, MIGRATIONS)

    report = DriftReport(
        settings.database,
        head,
        live_revision,
        [
            Comparison(MODELS, MIGRATIONS, models_vs_migrations),
            Comparison(MODELS, LIVE, models_vs_live),
            Comparison(MIGRATIONS, LIVE, compare_snapshots(scratch_snapshot, live_snapshot, MIGRATIONS, LIVE)),
        ],
    )
    if set(live_revision) != {head}:
        report.notes.append(
            f"{settings.database} is at {', '.join(live_revision) or 'base'}, not at head {head}: "
            "the differences include revisions not applied yet (`invoke db.upgrade`)"
        )
    return report
