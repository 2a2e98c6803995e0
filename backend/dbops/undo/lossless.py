"""Whether a retyped column keeps every value: the same charset and a type at least as wide."""

from __future__ import annotations

from .holding import ColumnInfo

_INTEGER_WIDTH = {"tinyint": 1, "smallint": 2, "mediumint": 3, "int": 4, "integer": 4, "bigint": 8}
_TEXT_WIDTH = {
    "tinytext": 1,
    "text": 2,
    "mediumtext": 3,
    "longtext": 4,
    "tinyblob": 1,
    "blob": 2,
    "mediumblob": 3,
    "longblob": 4,
}


def lossless(old: ColumnInfo, new: ColumnInfo) -> bool:
    """Every value of old fits new unchanged (same charset, and a type at least as wide)."""
    if (old.charset, old.collation) != (new.charset, new.collation):
        return False
    if old.nullable and not new.nullable:
        return False
    if old.column_type == new.column_type:
        return True
    unsigned_old, unsigned_new = "unsigned" in old.column_type, "unsigned" in new.column_type
    if old.data_type in _INTEGER_WIDTH and new.data_type in _INTEGER_WIDTH:
        grows = _INTEGER_WIDTH[new.data_type] > _INTEGER_WIDTH[old.data_type]
        return (unsigned_old == unsigned_new and _INTEGER_WIDTH[new.data_type] >= _INTEGER_WIDTH[old.data_type]) or (
            unsigned_old and not unsigned_new and grows
        )
    if old.data_type == new.data_type and old.data_type in ("varchar", "char", "varbinary", "binary"):
        return (new.length or 0) >= (old.length or 0)
    if old.data_type in ("varchar", "char") and new.data_type in _TEXT_WIDTH and "text" in new.data_type:
        return (new.length or 0) >= (old.length or 0)
    if (
        old.data_type in _TEXT_WIDTH
        and new.data_type in _TEXT_WIDTH
        and ("text" in old.data_type) == ("text" in new.data_type)
    ):
        return _TEXT_WIDTH[new.data_type] >= _TEXT_WIDTH[old.data_type]
    if old.data_type == new.data_type == "decimal":
        return (
            (new.scale or 0) >= (old.scale or 0)
            and (new.precision or 0) - (new.scale or 0) >= (old.precision or 0) - (old.scale or 0)
            and unsigned_old == unsigned_new
        )
    if old.data_type == new.data_type and old.data_type in ("enum", "set"):
        return new.column_type.startswith(old.column_type[:-1])
    return False
