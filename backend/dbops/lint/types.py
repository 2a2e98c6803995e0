"""MySQL column types as text: which change narrows the values a column holds, which copies the table."""

from __future__ import annotations

import re
from dataclasses import dataclass

_INT_RANK = {"tinyint": 1, "bool": 1, "boolean": 1, "smallint": 2, "mediumint": 3, "int": 4, "integer": 4, "bigint": 5}
_TEXT_BYTES = {
    "tinytext": 255,
    "text": 65_535,
    "mediumtext": 16_777_215,
    "longtext": 4_294_967_295,
    "json": 4_294_967_295,
    "tinyblob": 255,
    "blob": 65_535,
    "mediumblob": 16_777_215,
    "longblob": 4_294_967_295,
}
_FAMILIES = {
    **{name: "integer" for name in _INT_RANK},
    "char": "string",
    "varchar": "string",
    "binary": "string",
    "varbinary": "string",
    **{name: "text" for name in _TEXT_BYTES},
    "decimal": "decimal",
    "numeric": "decimal",
    "dec": "decimal",
    "fixed": "decimal",
    "float": "float",
    "double": "float",
    "real": "float",
    "date": "temporal",
    "datetime": "temporal",
    "timestamp": "temporal",
    "time": "temporal",
    "year": "temporal",
    "enum": "enum",
    "set": "enum",
}


@dataclass(frozen=True)
class ColumnType:
    text: str
    base: str
    args: tuple[str, ...]

    @property
    def family(self) -> str:
        return _FAMILIES.get(self.base, self.base)

    def number(self, position: int, default: int = 0) -> int:
        try:
            return int(self.args[position])
        except (IndexError, ValueError):
            return default


def parse_type(text: str | None) -> ColumnType | None:
    if not text:
        return None
    match = re.match(r"\s*([a-z]+(?: precision)?)\s*(?:\((.*?)\)(?=[^)]*$))?", text.lower())
    if not match:
        return None
    base, raw = match.group(1), match.group(2) or ""
    if base in ("enum", "set"):
        args = tuple(value.replace("''", "'") for value in re.findall(r"'((?:[^']|'')*)'", raw))
    else:
        args = tuple(part.strip() for part in raw.split(",") if part.strip())
    return ColumnType(text, base, args)


def narrowing(old: ColumnType, new: ColumnType) -> str | None:
    """Why changing old to new can lose or refuse existing values, or None."""
    families = old.family, new.family
    if families == ("integer", "integer"):
        if _INT_RANK[new.base] < _INT_RANK[old.base]:
            return f"{new.base.upper()} holds a smaller range than {old.base.upper()}"
        if "unsigned" in old.text and "unsigned" not in new.text and _INT_RANK[new.base] <= _INT_RANK[old.base]:
            return "a signed type holds only half the unsigned range"
    elif families == ("string", "string"):
        if new.number(0, 1) < old.number(0, 1):
            return f"values longer than {new.number(0, 1)} characters are cut or refused"
    elif families == ("text", "string"):
        return f"values longer than {new.number(0, 1)} characters are cut or refused"
    elif families == ("text", "text"):
        if _TEXT_BYTES[new.base] < _TEXT_BYTES[old.base]:
            return f"{new.base.upper()} holds at most {_TEXT_BYTES[new.base]:,} bytes"
    elif families == ("decimal", "decimal"):
        old_precision, old_scale = old.number(0, 10), old.number(1, 0)
        new_precision, new_scale = new.number(0, 10), new.number(1, 0)
        if new_scale < old_scale:
            return f"decimals beyond {new_scale} are rounded away"
        if new_precision - new_scale < old_precision - old_scale:
            return f"values with more than {new_precision - new_scale} integer digits are refused"
    elif families == ("float", "float"):
        if new.base == "float" and old.base != "float":
            return "FLOAT keeps about 7 significant digits of a DOUBLE"
    elif families == ("temporal", "temporal"):
        if old.base in ("datetime", "timestamp") and new.base in ("date", "time", "year"):
            return f"{new.base.upper()} drops part of each value"
        if old.base == "datetime" and new.base == "timestamp":
            return "TIMESTAMP only holds 1970 to 2038"
        if old.base == "date" and new.base == "year":
            return "YEAR drops the month and day"
    elif families == ("decimal", "integer"):
        return "the fractional part is rounded away" if old.number(1, 0) > 0 else None
    elif old.family != new.family and new.family in ("integer", "decimal", "float", "temporal", "enum"):
        if {old.family, new.family} <= {"integer", "decimal", "float"}:
            return None  # numbers into numbers: range checks above
        return f"values that do not convert to {new.base.upper()} are refused or mangled"
    return None


def needs_copy(old: ColumnType | None, new: ColumnType | None) -> bool:
    """Whether MySQL rebuilds the table with ALGORITHM=COPY for this column type change."""
    if new is None:
        return False
    if old is None:
        return True
    if old.text == new.text:
        return False
    if old.base == new.base == "varchar":
        # In place while the length prefix keeps its size (up to 255 bytes, 4 per utf8mb4 character).
        return (old.number(0) * 4 <= 255) != (new.number(0) * 4 <= 255) or new.number(0) < old.number(0)
    if old.family == new.family == "enum" and new.args[: len(old.args)] == old.args:
        return False  # values appended at the end: instant
    return True
