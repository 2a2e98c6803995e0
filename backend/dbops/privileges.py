"""What the account may do, read from its grants, against what the tool's steps need.

`SHOW GRANTS` of the current session lists the account's own grants and those of its active
roles: MariaDB lists each enabled role's grants under the role's name (nested roles too),
MySQL 8+ folds the active roles' privileges into the account's lines. Each line is read with
the shared tokenizer. A database-level grant names a database or a LIKE pattern (`%`, `_`,
`\\` escapes; literal names on MySQL with partial_revokes ON); like the server, only the most
specific matching grant of a grantee counts (an exact name before any pattern), and the
grantees' privileges add up. MySQL's partial revokes take privileges back from a global grant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .sql import SQLSyntaxError, Statement

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

# What the revisions run: DDL and data changes, on the managed database and on a scratch one
# (where autogenerate, drift, recover and lint build schemas and the DDL probe copies tables).
SCHEMA_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "INDEX", "REFERENCES")
# The managed database also needs what the deploy's undo capture (holding tables, triggers, LOCK
# TABLES), the backup (a dump with views, triggers and events) and a restore need.
DATABASE_PRIVILEGES = (*SCHEMA_PRIVILEGES, "LOCK TABLES", "SHOW VIEW", "TRIGGER", "EVENT")
# With binary logging on, creating a trigger (the undo capture's, a restored dump's) needs SUPER
# unless log_bin_trust_function_creators is ON.
TRIGGER_WITH_BINLOG = "SUPER"
ALL = "ALL PRIVILEGES"
# What SHOW GRANTS may print after the grantee.
_AFTER_GRANTEE = frozenset({"IDENTIFIED", "WITH", "REQUIRE", "AS", "PASSWORD", "VIA"})


@dataclass(frozen=True)
class Grant:
    """One GRANT (or, under partial revokes, REVOKE) line on *.* or a database's tables."""

    grantee: str
    database: str | None  # None: global (*.*); else the name or LIKE pattern as granted
    privileges: frozenset[str]
    revoke: bool = False


def parse_grant(line: str) -> Grant | None:
    """A global or database-level grant; None for role grants, default roles, table, routine and proxy grants."""
    try:
        statement = Statement.parse(line)
    except SQLSyntaxError:
        return None
    tokens = statement.tokens
    if not tokens or tokens[0].word not in ("GRANT", "REVOKE"):
        return None
    revoke = tokens[0].word == "REVOKE"
    on = statement.find("ON")
    to = statement.find("FROM" if revoke else "TO", on or 0)
    if on is None or to is None:
        return None  # GRANT role TO user
    target = tokens[on + 1 : to]
    if len(target) != 3 or target[1].kind != "DOT" or target[2].kind != "STAR":
        return None  # a table, a routine, a proxy
    if target[0].kind == "STAR":
        database = None
    elif target[0].is_name:
        database = target[0].text
    else:
        return None
    privileges = frozenset(
        " ".join(token.word for token in tokens[start:stop] if token.depth == 0)
        for start, stop in statement.split(1, on)
    )
    grantee = []
    for token in tokens[to + 1 :]:
        if token.word in _AFTER_GRANTEE:
            break
        grantee.append(token.text)
    return Grant("".join(grantee), database, frozenset(ALL if name == "ALL" else name for name in privileges), revoke)


def like_escape(name: str) -> str:
    """name as a LIKE pattern that matches only itself."""
    return re.sub(r"([\\%_])", r"\\\1", name)


def grant_target(prefix: str) -> str:
    """The quoted `prefix%`.* a GRANT names to cover every database whose name starts with prefix."""
    return "`" + (like_escape(prefix) + "%").replace("`", "``") + "`.*"


def _pattern(pattern: str, wildcards: bool) -> tuple[str, int | None]:
    """(regular expression, literal characters before the first wildcard or None when there is none)."""
    parts, literal, prefix = [], 0, None
    escaped = False
    for char in pattern:
        if escaped or char not in "\\%_" or (char in "%_" and not wildcards):
            parts.append(re.escape(char))
            literal += 1
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            parts.append(".*" if char == "%" else ".")
            prefix = literal if prefix is None else prefix
    if escaped:
        parts.append(re.escape("\\"))
    return "".join(parts), prefix


@dataclass
class Account:
    """The current session's grants and the server settings that decide how they apply."""

    grants: list[Grant]
    wildcards: bool = True  # MySQL with partial_revokes ON reads % and _ in grants literally
    case_sensitive: bool = True  # lower_case_table_names = 0
    trigger_needs_super: bool = False  # binary logging on, log_bin_trust_function_creators OFF
    roles: list[str] = field(default_factory=list)

    def _matches(self, grant: Grant, database: str) -> tuple[bool, int]:
        """(matches, specificity): an exact name beats any pattern, a longer literal prefix a shorter one."""
        expression, prefix = _pattern(grant.database or "", self.wildcards)
        flags = 0 if self.case_sensitive else re.IGNORECASE
        return bool(re.fullmatch(expression, database, flags | re.DOTALL)), 1 << 16 if prefix is None else prefix

    def privileges_on(self, database: str) -> set[str]:
        """The privileges the session has on the tables of database."""
        found: set[str] = set()
        for grantee in {grant.grantee for grant in self.grants}:
            own = [grant for grant in self.grants if grant.grantee == grantee]
            on_all = set().union(*(grant.privileges for grant in own if grant.database is None and not grant.revoke))
            revoked = set().union(*(grant.privileges for grant in own if grant.revoke and grant.database == database))
            best, rank = None, -1
            for grant in own:
                if grant.database is not None and not grant.revoke:
                    matches, specificity = self._matches(grant, database)
                    if matches and specificity > rank:
                        best, rank = grant, specificity
            found |= (on_all - revoked) | (set(best.privileges) if best else set())
        return found

    def global_privileges(self) -> set[str]:
        return set().union(*(grant.privileges for grant in self.grants if grant.database is None and not grant.revoke))

    def lacks(self, database: str, needed: tuple[str, ...]) -> list[str]:
        held = self.privileges_on(database)
        return [] if ALL in held else [privilege for privilege in needed if privilege not in held]

    def lacks_super_for_triggers(self) -> bool:
        held = self.global_privileges()
        return self.trigger_needs_super and ALL not in held and TRIGGER_WITH_BINLOG not in held


def read_account(connection: Connection) -> Account:
    """The grants of the current session (its active roles included) and the server's settings."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    lines = [row[0] for row in connection.execute(text("SHOW GRANTS"))]
    variables = {
        name.lower(): str(value).upper()
        for name, value in connection.execute(
            text(
                "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('partial_revokes', 'lower_case_table_names', 'log_bin', "
                "'log_bin_trust_function_creators')"
            )
        )
    }
    try:
        roles = [
            row[0]
            for row in connection.execute(text("SELECT ROLE_NAME FROM information_schema.ENABLED_ROLES"))
            if row[0] is not None
        ]
    except DBAPIError:
        roles = []  # MySQL before 8.0.19: no such table (and SHOW GRANTS has folded the roles in already)
    return Account(
        grants=[grant for grant in map(parse_grant, lines) if grant is not None],
        wildcards=variables.get("partial_revokes", "OFF") in ("OFF", "0"),
        case_sensitive=variables.get("lower_case_table_names", "0") == "0",
        trigger_needs_super=variables.get("log_bin") in ("ON", "1")
        and variables.get("log_bin_trust_function_creators") in ("OFF", "0"),
        roles=roles,
    )
