"""Test revision: one more above the merge, so that going below the merge crosses it.

With it above the merge, a deploy --to the merge does not compare the models (which know none
of these columns) with the schema.

Revision ID: d0e1f2a3b4c5
Revises: c9d0e1f2a3b4
"""

import sqlalchemy as sa

from alembic import op

revision = "d0e1f2a3b4c5"
down_revision = "c9d0e1f2a3b4"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("tag", sa.String(20), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "tag")
