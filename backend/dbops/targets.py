"""The server targets of the version matrix: one table (TARGETS) naming every server version the
project is tested on, and the choice of targets by id or tag.

Only the standard library at import time: noxfile.py reads the table from nox's own Python.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import ProviderSkipped, UnknownTarget


@dataclass(frozen=True)
class DebianRecipe:
    """A Debian suite whose packages ship the target's server."""

    suite: str
    packages: tuple[str, ...]
    binary: str  # the server, as a path inside the root

    def as_dict(self) -> dict:
        return {"suite": self.suite, "packages": list(self.packages), "binary": self.binary}


@dataclass(frozen=True)
class Target:
    id: str
    flavour: str  # "mariadb" or "mysql"
    version: str  # major.minor; the server's version must start with it
    debian: DebianRecipe | None = None
    docker_image: str | None = None

    @property
    def url_variable(self) -> str:
        return "MATRIX_URL_" + re.sub(r"[^A-Z0-9]", "_", self.id.upper())

    @property
    def label(self) -> str:
        return f"{'MariaDB' if self.flavour == 'mariadb' else 'MySQL'} {self.version}"

    @property
    def tags(self) -> tuple[str, ...]:
        """The groups that select it with its id: its flavour, and debian when a Debian suite ships it."""
        return (self.flavour, "debian") if self.debian else (self.flavour,)

    def debian_recipe(self) -> DebianRecipe:
        """Its Debian recipe; ProviderSkipped when no Debian suite ships it."""
        if self.debian is None:
            raise ProviderSkipped(f"no Debian suite ships {self.label}")
        return self.debian

    def matches(self, flavour: str, version: str) -> bool:
        return flavour == self.flavour and (version == self.version or version.startswith(self.version + "."))


TARGETS: dict[str, Target] = {
    target.id: target
    for target in (
        Target(
            "mysql-9.7", "mysql", "9.7", DebianRecipe("sid", ("mysql-server-core",), "/usr/sbin/mysqld"), "mysql:9.7"
        ),
        Target("mysql-8.4", "mysql", "8.4", docker_image="mysql:8.4"),
        Target("mysql-8.0", "mysql", "8.0", docker_image="mysql:8.0"),
        Target(
            "mariadb-11.8",
            "mariadb",
            "11.8",
            DebianRecipe("trixie", ("mariadb-server",), "/usr/sbin/mariadbd"),
            "mariadb:11.8",
        ),
        Target(
            "mariadb-10.11",
            "mariadb",
            "10.11",
            DebianRecipe("bookworm", ("mariadb-server",), "/usr/sbin/mariadbd"),
            "mariadb:10.11",
        ),
        Target(
            "mariadb-10.5",
            "mariadb",
            "10.5",
            DebianRecipe("bullseye", ("mariadb-server-core-10.5",), "/usr/sbin/mariadbd"),
            "mariadb:10.5",
        ),
        Target("mysql-5.7", "mysql", "5.7", docker_image="mysql:5.7"),
    )
}


def get_target(target_id: str) -> Target:
    try:
        return TARGETS[target_id]
    except KeyError:
        raise UnknownTarget(f"unknown server {target_id!r}: choose from {', '.join(TARGETS)}") from None


def select_targets(names: Iterable[str]) -> list[str]:
    """Target ids chosen by names, in the order of TARGETS: an id, a tag (mariadb, mysql, debian) or all."""
    chosen: set[str] = set()
    for name in names:
        word = name.strip().lower()
        tagged = {target.id for target in TARGETS.values() if word in target.tags}
        if word == "all":
            chosen.update(TARGETS)
        elif tagged:
            chosen.update(tagged)
        else:
            chosen.add(get_target(name.strip()).id)
    return [target for target in TARGETS if target in chosen]


def required_targets(value: str | None) -> frozenset[str]:
    """Target ids named by MATRIX_REQUIRED (ids, tags or all, separated by commas)."""
    return frozenset(select_targets(part for part in (value or "").split(",") if part.strip()))
