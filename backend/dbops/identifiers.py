"""MySQL identifier validation and quoting.

MySQL accepts any BMP character except NUL in a quoted identifier, at most 64
characters, not ending with a space. We also refuse control characters and a
leading '-' (a dump client would read such a database name as an option).
Everything that passes is always sent backtick-quoted.
"""

from __future__ import annotations

import unicodedata

from .errors import InvalidIdentifier

MAX_IDENTIFIER_LENGTH = 64
# The server keeps a database (and each table) as a file named in its "filename" encoding:
# [0-9A-Za-z_] as they are, other characters as up to 5 bytes (@20ac); a file name has at most
# 255 bytes. Counting 5 for each of those refuses a few names the server would take, never one it refuses.
MAX_FILE_NAME_BYTES = 255
# The server's own schemas: restoring over them or emptying them would wreck its accounts and metadata.
SYSTEM_SCHEMAS = frozenset({"mysql", "sys", "information_schema", "performance_schema"})


def validate_identifier(name: object, kind: str = "database name") -> str:
    """Return name unchanged when it is a usable identifier, else raise InvalidIdentifier."""
    if not isinstance(name, str) or name == "":
        raise InvalidIdentifier(f"{kind} must not be empty")
    shown = ascii(name)
    if len(name) > MAX_IDENTIFIER_LENGTH:
        raise InvalidIdentifier(f"{kind} {shown} is longer than {MAX_IDENTIFIER_LENGTH} characters")
    if name != name.rstrip(" "):
        raise InvalidIdentifier(f"{kind} {shown} must not end with a space")
    for char in name:
        if char == "\x00" or ord(char) > 0xFFFF:
            raise InvalidIdentifier(f"{kind} {shown} contains a character MySQL does not allow")
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise InvalidIdentifier(f"{kind} {shown} contains a control character")
    if name.startswith("-"):
        raise InvalidIdentifier(f"{kind} {shown} must not start with '-'")
    if name.startswith("#mysql50#"):
        raise InvalidIdentifier(
            f"{kind} {shown} must not start with '#mysql50#' (the server's prefix for old file names)"
        )
    if sum(1 if char.isascii() and (char.isalnum() or char == "_") else 5 for char in name) > MAX_FILE_NAME_BYTES:
        raise InvalidIdentifier(
            f"{kind} {shown} has too many characters other than A-Z, a-z, 0-9 and _: the server could not name its file"
        )
    return name


def quote_identifier(name: str, kind: str = "database name") -> str:
    """Validate, then quote with backticks (a backtick inside is doubled)."""
    validate_identifier(name, kind)
    return "`" + name.replace("`", "``") + "`"
