"""Test revision: several statements, data destroyed, then a failure.

MySQL commits each DDL statement, so the first three stay applied when the fourth fails. The
fourth fails wherever a revision is recorded (its subquery returns two rows for each row of
alembic_version): here and in a scratch database, but not in the preflight's rehearsal, which
leaves statements on alembic_version out.

Revision ID: b2c3d4e5f6a7
Revises: a1b2c3d4e5f6
"""

import sqlalchemy as sa

from alembic import op

revision = "b2c3d4e5f6a7"
down_revision = "a1b2c3d4e5f6"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("knowledge", sa.Column("summary", sa.Text(), nullable=True))
    op.drop_column("chat_messages", "emotion")  # lint: ignore[drop-column] test: destroys data on purpose
    op.create_table("mood_tags", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(40)))
    op.execute("SELECT (SELECT 1 UNION ALL SELECT 2) FROM alembic_version")


def downgrade() -> None:
    op.drop_table("mood_tags")
    op.add_column("chat_messages", sa.Column("emotion", sa.String(32), nullable=True))
    op.drop_column("knowledge", "summary")
