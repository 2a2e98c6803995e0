"""Test revision: three DDL statements with a pause before each and after the last.

The fault tests kill the deploy (or the server) inside a pause, so the kill lands between
two statements: each pause is a window in which exactly the statements before it are applied.
Only additive changes: undoing or finishing it never needs data from a backup.

Revision ID: f1a2b3c4d5e6
Revises: e9e7d98878ca
"""

import sqlalchemy as sa

from alembic import op

revision = "f1a2b3c4d5e6"
down_revision = "e9e7d98878ca"
branch_labels = None
depends_on = None

PAUSE = "SELECT SLEEP(0.6)"


def upgrade() -> None:
    op.execute(PAUSE)  # window 0: journal says running, nothing changed yet
    op.create_table(
        "mood_tags",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(40), nullable=False),
        mysql_engine="InnoDB", mysql_charset="utf8mb4", mysql_collate="utf8mb4_unicode_ci",
    )
    op.execute(PAUSE)  # window 1
    op.add_column("knowledge", sa.Column("summary", sa.String(200), nullable=True))
    op.execute(PAUSE)  # window 2
    op.create_index("ix_knowledge_summary", "knowledge", ["summary"])
    op.execute(PAUSE)  # window 3: every statement applied, alembic_version not yet


def downgrade() -> None:
    op.drop_index("ix_knowledge_summary", table_name="knowledge")
    op.drop_column("knowledge", "summary")
    op.drop_table("mood_tags")
