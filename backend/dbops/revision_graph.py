"""The revision graph: heads, what is applied, the one order of all revisions, and the steps an
upgrade or a downgrade to a target takes (no database is touched here)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Settings
from .alembic_setup import alembic_errors, current, script_directory, validate_revision_argument
from .errors import RevisionError

if TYPE_CHECKING:
    from alembic.script import Script, ScriptDirectory


def heads(settings: Settings) -> tuple[str, ...]:
    return tuple(script_directory(settings).get_heads())


def single_head(script: ScriptDirectory) -> str:
    found = script.get_heads()
    if len(found) > 1:
        raise RevisionError(f"several heads ({', '.join(sorted(found))}): join them with `invoke db.merge`")
    if not found:
        raise RevisionError("no revisions yet: create one with `invoke db.revision -m MESSAGE`")
    return found[0]


def resolve_target(script: ScriptDirectory, target: str) -> tuple[str, ...]:
    """The revisions alembic_version holds once the database is at target."""
    validate_revision_argument(target)
    if target == "head":
        return (single_head(script),)
    if target == "base":
        return ()
    with alembic_errors():
        found = script.get_revision(target)
    if found is None:
        raise RevisionError(f"unknown revision {target!r}: see `invoke db.history`")
    return (found.revision,)


@dataclass(frozen=True)
class RevisionInfo:
    revision: str
    down_revisions: tuple[str, ...]
    message: str
    path: Path
    is_head: bool
    is_applied: bool
    is_current: bool

    @property
    def is_merge(self) -> bool:
        return len(self.down_revisions) > 1

    def history_line(self, offline: bool = False) -> str:
        """`db.history`'s line: applied or pending (no mark offline), parents, tags, message."""
        mark = "  " if offline else "✅" if self.is_applied else "⏳"
        tags = [
            tag for tag, on in (("head", self.is_head), ("current", self.is_current), ("merge", self.is_merge)) if on
        ]
        parents = ", ".join(self.down_revisions) or "base"
        suffix = f" ({', '.join(tags)})" if tags else ""
        return f"{mark} {parents} -> {self.revision}{suffix}  {self.message}"


def _as_tuple(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def applied_revisions(script: ScriptDirectory, current_revisions: Sequence[str]) -> set[str]:
    """Every revision at or below the current ones."""
    if not current_revisions:
        return set()
    with alembic_errors():
        try:
            return {rev.revision for rev in script.revision_map.iterate_revisions(tuple(current_revisions), "base")}
        except KeyError as exc:
            raise RevisionError(f"the database is at a revision the code does not know: {exc}") from None


def _is_known(script: ScriptDirectory, revision_id: str) -> bool:
    from alembic.script.revision import RevisionError as AlembicRevisionError
    from alembic.util import CommandError

    try:
        return script.get_revision(revision_id) is not None
    except (CommandError, AlembicRevisionError):
        return False


def _check_known(script: ScriptDirectory, current_revisions: Sequence[str]) -> None:
    unknown = [rev for rev in current_revisions if not _is_known(script, rev)]
    if unknown:
        raise RevisionError(
            f"the database is at revision {', '.join(unknown)}, which is not in {script.versions}: "
            "check out the code that made it"
        )


def history(settings: Settings, current_revisions: Sequence[str] = ()) -> list[RevisionInfo]:
    """All revisions, newest first, with applied and current marked."""
    script = script_directory(settings)
    with alembic_errors():
        _check_known(script, current_revisions)
        applied = applied_revisions(script, current_revisions)
        head_set = set(script.get_heads())
        return [
            RevisionInfo(
                revision=rev.revision,
                down_revisions=_as_tuple(rev.down_revision),
                message=(rev.doc or "").strip(),
                path=Path(rev.path),
                is_head=rev.revision in head_set,
                is_applied=rev.revision in applied,
                is_current=rev.revision in current_revisions,
            )
            for rev in script.walk_revisions()
        ]


def current_lines(settings: Settings) -> list[str]:
    """`db.current`: the revisions the database is at, each with its message."""
    revisions = current(settings)
    if not revisions:
        return [f"{settings.database}: base (no revision applied)"]
    by_id = {info.revision: info for info in history(settings, revisions)}
    lines = []
    for revision in revisions:
        info = by_id.get(revision)
        head = " (head)" if info and info.is_head else ""
        lines.append(f"{settings.database}: {revision}{head}  {info.message if info else ''}")
    return lines


def parent_ids(script: ScriptDirectory, rev: Script) -> tuple[str, ...]:
    """What rev comes after: its down revisions in the order its file lists them, then its dependencies."""
    dependencies = tuple(script.get_revision(dependency).revision for dependency in _as_tuple(rev.dependencies))
    return _as_tuple(rev.down_revision) + dependencies


def in_order(script: ScriptDirectory, revisions: Iterable[Script]) -> list[Script]:
    """revisions oldest first, in the one order of all the revisions in the folder: each after its
    parents, a merge's parents in the order its file lists them (each branch whole before the
    next), unrelated heads by id. The same files always give the same order; a downgrade walks
    it backwards."""
    everything = {rev.revision: rev for rev in script.walk_revisions()}
    below = {parent for rev in everything.values() for parent in parent_ids(script, rev)}
    position: dict[str, int] = {}
    for top in sorted(set(everything) - below):
        stack = [(top, iter(parent_ids(script, everything[top])))]
        while stack:
            revision_id, parents = stack[-1]
            for parent in parents:
                if parent not in position:
                    stack.append((parent, iter(parent_ids(script, everything[parent]))))
                    break
            else:
                stack.pop()
                position[revision_id] = len(position)
    return sorted(revisions, key=lambda rev: position[rev.revision])


def heads_of(script: ScriptDirectory, applied: Iterable[str]) -> tuple[str, ...]:
    """What alembic_version holds when exactly the applied revisions are: those nothing applied comes after."""
    applied = set(applied)
    below = {parent for revision_id in applied for parent in parent_ids(script, script.get_revision(revision_id))}
    return tuple(sorted(applied - below))


def states_around(
    script: ScriptDirectory, revision: str, direction: str, current_revisions: Sequence[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """alembic_version before and after one step of revision, from what it holds now (before or after it)."""
    applied = applied_revisions(script, current_revisions)
    without, with_it = heads_of(script, applied - {revision}), heads_of(script, applied | {revision})
    return (without, with_it) if direction == "upgrade" else (with_it, without)


def pending(script: ScriptDirectory, current_revisions: Sequence[str], target: str = "head") -> list[Script]:
    """Revisions an upgrade to target would apply, oldest first (both branches below a merge too)."""
    from alembic.script.revision import RangeNotAncestorError

    validate_revision_argument(target)
    with alembic_errors():
        _check_known(script, current_revisions)
        if target == "head":
            target = single_head(script)
        lower = tuple(current_revisions) or "base"
        if target not in ("heads", "base") and _is_known(script, target):
            # An upgrade goes to a revision that comes after every current one (a merge of them too).
            if not set(current_revisions) <= applied_revisions(script, (target,)):
                raise _off_the_path(script, current_revisions, target, "upgrade")
        try:
            # implicit_base: what target needs and is not applied, also on a branch beside the current one.
            steps = script.iterate_revisions(target, lower, implicit_base=True)
            return in_order(script, steps)
        except KeyError as exc:
            raise RevisionError(f"unknown revision {exc}: see `invoke db.history`") from None
        except RangeNotAncestorError:
            raise _off_the_path(script, current_revisions, target, "upgrade") from None


def _off_the_path(
    script: ScriptDirectory, current_revisions: Sequence[str], target: str, direction: str
) -> RevisionError:
    """Why moving in direction from current_revisions cannot reach target (Alembic says "not an ancestor")."""
    found = script.get_revision(target).revision
    now = ", ".join(current_revisions)
    if direction == "upgrade" and found in applied_revisions(script, current_revisions):
        return RevisionError(
            f"cannot upgrade from {now} to {found}: it is behind, and an upgrade only moves "
            f"forward; go back with `invoke db.downgrade -r {found}`"
        )
    if direction == "downgrade" and set(current_revisions) <= applied_revisions(script, (found,)):
        return RevisionError(
            f"cannot downgrade from {now} to {found}: it is ahead, and a downgrade only moves "
            f"back; go forward with `invoke db.upgrade -r {found}`"
        )
    return RevisionError(
        f"cannot {direction} from {now} to {found}: it is on another branch; downgrade to the "
        "revision both come from, then upgrade (see `invoke db.history`)"
    )


def downgrade_steps(script: ScriptDirectory, current_revisions: Sequence[str], target: str) -> list[Script]:
    """Revisions a downgrade to target reverts, newest first: the upgrade order backwards, so a
    merge goes before both of its branches. target: an id (what is above it is reverted, as
    Alembic does), base or -N (the last N revisions applied, in that order)."""
    from alembic.script.revision import RangeNotAncestorError

    validate_revision_argument(target)
    _check_known(script, current_revisions)
    if not current_revisions:
        raise RevisionError("nothing to downgrade: the database is at base")
    with alembic_errors():
        applied = applied_revisions(script, current_revisions)
        if re.fullmatch(r"-\d+", target):
            count = int(target[1:])
            if count > len(applied):
                raise RevisionError("not that many revisions to move: see `invoke db.history`")
            return list(reversed(in_order(script, (script.get_revision(rev) for rev in applied))))[:count]
        if target != "base" and _is_known(script, target) and script.get_revision(target).revision not in applied:
            raise _off_the_path(script, current_revisions, target, "downgrade")
        try:
            found = script.iterate_revisions(tuple(current_revisions), target, select_for_downgrade=True)
            return list(reversed(in_order(script, found)))
        except RangeNotAncestorError:
            raise _off_the_path(script, current_revisions, target, "downgrade") from None
