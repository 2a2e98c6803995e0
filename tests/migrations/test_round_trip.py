"""What pytest-alembic's built-in tests do not check, on the session's server (`nox -s migrations`
runs this folder once per server version): every step's schema through a round trip, the rows
each revision's schema holds, and the offline SQL of every revision."""

from __future__ import annotations

from backend.dbops.offline_sql import offline_sql
from tests.migrations.revision_data import ROWS
from tests.migrations.walk import linear_revisions, parent, round_trip


def test_each_step_down_and_up_again_gives_the_same_schema_and_keeps_the_rows(created_database):
    trip = round_trip(created_database, ROWS)
    assert trip.inserted, "no revision inserted rows: revision_data.py has none for these revisions"
    assert not trip.missing_at_head, f"rows gone at head: {', '.join(trip.missing_at_head[:8])}"
    changed = {
        table: (trip.first_data.get(table), state)
        for table, state in trip.second_data.items()
        if state != trip.first_data.get(table)
    }
    assert not changed, f"(rows, checksum) differ after the round trip: {changed}"


def test_offline_sql_renders_every_revision_up_and_down(settings):
    for revision in linear_revisions(settings):
        before = parent(revision)
        up = offline_sql(settings, before, revision.revision)
        down = offline_sql(settings, revision.revision, before, downgrade=True)
        for direction, sql in (("up", up), ("down", down)):
            assert revision.revision in sql, f"the offline SQL of {revision.revision} ({direction}) does not record it"
