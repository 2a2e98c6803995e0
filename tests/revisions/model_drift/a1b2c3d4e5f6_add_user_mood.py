"""Test revision: add users.mood (applies fully).

Revision ID: a1b2c3d4e5f6
Revises: e9e7d98878ca
"""

import sqlalchemy as sa

from alembic import op

revision = "a1b2c3d4e5f6"
down_revision = "e9e7d98878ca"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("mood", sa.String(32), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "mood")
