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
    return name


def quote_identifier(name: str, kind: str = "database name") -> str:
    """Validate, then quote with backticks (a backtick inside is doubled)."""
    validate_identifier(name, kind)
    return "`" + name.replace("`", "``") + "`"
