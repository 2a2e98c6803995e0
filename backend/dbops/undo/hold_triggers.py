"""The triggers a table needs for a deploy's live column holds, and the LOCK TABLES that
installs or replaces them together with the holding tables they write to."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from . import holding, log
from .session import Session, q


def trigger_specs(
    control: Session,
    deploy_id: str,
    table: str,
    dropping=(),
    extra_tracked: dict | None = None,
    without: str | None = None,
) -> list[holding.TriggerSpec]:
    """The triggers table needs for the deploy's live column holds: a copy for the one being filled,
    tracking of the narrowed columns of the others (those being dropped left out). extra_tracked
    ({hold: [columns]}) tracks more (a rollback re-adding dropped columns); without leaves one hold out."""
    specs = []
    for entry in log.entries(control, deploy_id, (log.PREPARED, log.DONE)):
        if entry.kind != log.ALTER or entry.table != table or not entry.hold or entry.hold == without:
            continue
        held = entry.detail["dropped"] + entry.detail["modified"]
        phase = entry.detail.get("phase")
        if phase == holding.COPY:
            specs.append(holding.TriggerSpec(entry.hold, tuple(entry.detail["key"]), tuple(held), holding.COPY))
            continue
        tracked = [name for name in entry.detail["modified"] if phase == holding.TRACK and name not in dropping]
        tracked += [name for name in (extra_tracked or {}).get(entry.hold, []) if name not in tracked]
        if tracked:
            specs.append(
                holding.TriggerSpec(
                    entry.hold,
                    tuple(entry.detail["key"]),
                    tuple(tracked),
                    holding.TRACK,
                    tuple(held.index(name) for name in tracked),
                )
            )
    return specs


def lock_statement(table: str, specs: list[holding.TriggerSpec]) -> str:
    """LOCK TABLES of the table and every holding table its triggers write to."""
    holds = sorted({spec.hold for spec in specs})
    return "LOCK TABLES " + ", ".join(f"{q(name)} WRITE" for name in [table, *holds])


@contextmanager
def locked(session: Session, table: str, specs: list[holding.TriggerSpec]) -> Iterator[None]:
    session.run(lock_statement(table, specs))
    try:
        yield
    finally:
        session.run("UNLOCK TABLES")
