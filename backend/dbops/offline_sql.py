"""SQL rendered without a database: what an upgrade or downgrade between two states would run
(db.sql), and each revision's own SQL."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from ..config import Settings
from .alembic_setup import alembic_config, alembic_errors, current, script_directory, validate_revision_argument
from .errors import DbOpsError, RevisionError
from .revision_graph import (
    applied_revisions,
    downgrade_steps,
    heads_of,
    parent_ids,
    pending,
    resolve_target,
    single_head,
)

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import Script, ScriptDirectory


def _revision_list(script: ScriptDirectory, value: str) -> tuple[str, ...]:
    """base, head(s), an id, or ids separated by commas (a database on several branches) -> revision ids."""
    if value == "base":
        return ()
    if value in ("head", "heads"):
        return (single_head(script),) if value == "head" else tuple(script.get_heads())
    found = []
    for part in value.split(","):
        validate_revision_argument(part)
        revision = script.get_revision(part)
        if revision is None:
            raise RevisionError(f"unknown revision {part!r}: see `invoke db.history`")
        found.append(revision.revision)
    return tuple(found)


def render_sql(
    config: Config, script: ScriptDirectory, steps: Sequence[Script], direction: str, start: Sequence[str]
) -> str:
    """The SQL of exactly these steps from alembic_version holding start, rendered without a database."""
    from alembic.runtime.environment import EnvironmentContext
    from alembic.runtime.migration import MigrationStep

    make = MigrationStep.upgrade_from_script if direction == "upgrade" else MigrationStep.downgrade_from_script
    with EnvironmentContext(
        config,
        script,
        fn=lambda heads, context: [make(script.revision_map, step) for step in steps],
        as_sql=True,
        starting_rev=tuple(start) or None,
    ):
        script.run_env()
    buffer = config.output_buffer
    if not isinstance(buffer, io.StringIO):
        raise RuntimeError("alembic_config() collects offline SQL in a StringIO")
    return buffer.getvalue()


def offline_sql(settings: Settings, start: str, end: str, downgrade: bool = False) -> str:
    """The SQL that moving from start to end would run (the same steps an online run takes),
    rendered without a database. start may name several revisions separated by commas."""
    validate_revision_argument(end)
    script = script_directory(settings)
    with alembic_errors():
        begin = _revision_list(script, start)
        if downgrade:
            steps = downgrade_steps(script, begin, end) if begin else []
        else:
            steps = pending(script, begin, end)
        return render_sql(alembic_config(settings), script, steps, "downgrade" if downgrade else "upgrade", begin)


def step_sql(settings: Settings, step: Script, direction: str = "upgrade") -> str:
    """The SQL of one revision's upgrade (or downgrade) alone, rendered without a database."""
    script = script_directory(settings)
    with alembic_errors():
        below = heads_of(script, applied_revisions(script, parent_ids(script, step)))
        start = below if direction == "upgrade" else heads_of(script, applied_revisions(script, (step.revision,)))
        return render_sql(alembic_config(settings), script, [step], direction, start)


def offline_steps(settings: Settings, target: str, downgrade: bool = False) -> Iterator[tuple[Script, str | None]]:
    """Each revision an upgrade to (or a downgrade down to) target would run, in order, with its
    SQL rendered offline; None for a revision that reads the database to decide what to run."""
    script = script_directory(settings)
    now = current(settings)
    for step in downgrade_steps(script, now, target) if downgrade else pending(script, now, target):
        try:
            yield step, step_sql(settings, step, "downgrade" if downgrade else "upgrade")
        except DbOpsError:
            yield step, None


def range_sql(settings: Settings, start: str = "current", end: str = "", downgrade: bool = False) -> str:
    """`db.sql`: the SQL from start to end, or a comment line saying there is nothing to run.

    start "current" is the database's revision when one is configured, else base (head for a
    downgrade); end defaults to head (base for a downgrade).
    """
    if start == "current":
        if settings.is_configured:
            start = ",".join(current(settings)) or "base"
        else:
            start = "head" if downgrade else "base"
    else:
        script = script_directory(settings)
        for revision in start.split(","):
            resolve_target(script, revision)  # refuses one the code does not know
    end = end or ("base" if downgrade else "head")
    if not downgrade and start != "base" and pending(script_directory(settings), start.split(","), end) == []:
        return f"-- nothing to run: {start} is already at {end}\n"
    return offline_sql(settings, start, end, downgrade=downgrade)
