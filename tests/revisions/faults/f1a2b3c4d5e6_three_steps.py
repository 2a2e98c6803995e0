"""Test revision: three DDL statements with a window before each and after the last.

A window is a named lock of the database (fault_window_N:md5 of its name) the revision
takes and gives back at once: free, it costs nothing; held by a test, the revision waits
there until the test kills the deploy (or the server), so the kill lands between two
statements however slow the machine: in window N exactly the first N statements are
applied. The same revision run in a scratch database (a check's) passes freely. Only
additive changes: undoing or finishing it never needs data from a backup.

Revision ID: f1a2b3c4d5e6
Revises: e9e7d98878ca
"""

import sqlalchemy as sa

from alembic import op

revision = "f1a2b3c4d5e6"
down_revision = "e9e7d98878ca"
branch_labels = None
depends_on = None


def window(number: int) -> None:
    name = f"CONCAT('fault_window_{number}:', MD5(DATABASE()))"
    op.execute(f"SELECT GET_LOCK({name}, 600) AND RELEASE_LOCK({name})")


def upgrade() -> None:
    window(0)  # journal says running, nothing changed yet
    op.create_table(
        "mood_tags",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(40), nullable=False),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
    )
    window(1)
    op.add_column("knowledge", sa.Column("summary", sa.String(200), nullable=True))
    window(2)
    op.create_index("ix_knowledge_summary", "knowledge", ["summary"])
    window(3)  # every statement applied, alembic_version not yet


def downgrade() -> None:
    op.drop_index("ix_knowledge_summary", table_name="knowledge")
    op.drop_column("knowledge", "summary")
    op.drop_table("mood_tags")
