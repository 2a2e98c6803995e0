"""Test revision: several statements, data destroyed, then a failure.

MySQL commits each DDL statement, so the first three stay applied when the fourth fails.

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
    op.execute("ALTER TABLE no_such_table ADD COLUMN x INT")


def downgrade() -> None:
    op.drop_table("mood_tags")
    op.add_column("chat_messages", sa.Column("emotion", sa.String(32), nullable=True))
    op.drop_column("knowledge", "summary")
