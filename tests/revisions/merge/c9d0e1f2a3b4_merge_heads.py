"""Test revision: the merge of both branches, as `invoke db.merge` writes it.

It lists branch b first: an upgrade applies branch b, then branch a, then the merge.

Revision ID: c9d0e1f2a3b4
Revises: b8c9d0e1f2a3, a7b8c9d0e1f2
"""

revision = "c9d0e1f2a3b4"
down_revision = ("b8c9d0e1f2a3", "a7b8c9d0e1f2")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
