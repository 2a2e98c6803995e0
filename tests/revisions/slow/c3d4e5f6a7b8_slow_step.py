"""Test revision: takes a few seconds, so that a second deploy finds the lock held.

Revision ID: c3d4e5f6a7b8
Revises: e9e7d98878ca
"""

from alembic import op

revision = "c3d4e5f6a7b8"
down_revision = "e9e7d98878ca"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SELECT SLEEP(4)")


def downgrade() -> None:
    pass  # nothing to revert: the upgrade changes nothing
