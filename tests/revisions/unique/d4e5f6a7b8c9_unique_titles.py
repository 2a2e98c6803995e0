"""Test revision: a column, then a UNIQUE constraint that duplicate rows make fail.

Revision ID: d4e5f6a7b8c9
Revises: e9e7d98878ca
"""

import sqlalchemy as sa

from alembic import op

revision = "d4e5f6a7b8c9"
down_revision = "e9e7d98878ca"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("knowledge", sa.Column("summary", sa.String(200), nullable=True))
    op.create_unique_constraint("uq_knowledge_title", "knowledge", ["title"])


def downgrade() -> None:
    op.drop_constraint("uq_knowledge_title", "knowledge", type_="unique")
    op.drop_column("knowledge", "summary")
