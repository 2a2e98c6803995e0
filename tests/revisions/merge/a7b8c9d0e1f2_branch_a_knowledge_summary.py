"""Test revision: one branch of a merge (written by one developer).

Revision ID: a7b8c9d0e1f2
Revises: e9e7d98878ca
"""

import sqlalchemy as sa

from alembic import op

revision = "a7b8c9d0e1f2"
down_revision = "e9e7d98878ca"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("knowledge", sa.Column("summary", sa.String(200), nullable=True))


def downgrade() -> None:
    op.drop_column("knowledge", "summary")
