"""Test revision: the other branch of a merge (written by another developer from the same parent).

Revision ID: b8c9d0e1f2a3
Revises: e9e7d98878ca
"""

import sqlalchemy as sa

from alembic import op

revision = "b8c9d0e1f2a3"
down_revision = "e9e7d98878ca"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("mood", sa.String(20), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "mood")
