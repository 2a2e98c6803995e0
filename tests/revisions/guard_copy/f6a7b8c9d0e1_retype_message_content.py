"""Test revision: TEXT -> VARCHAR needs a table copy on every server.

Revision ID: f6a7b8c9d0e1
Revises: e9e7d98878ca
"""

import sqlalchemy as sa

from alembic import op

revision = "f6a7b8c9d0e1"
down_revision = "e9e7d98878ca"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # lint: ignore[narrow-type] test: a change that needs a table copy
    op.alter_column("chat_messages", "content", type_=sa.String(2000), existing_nullable=False)


def downgrade() -> None:
    op.alter_column("chat_messages", "content", type_=sa.Text(), existing_nullable=False)
