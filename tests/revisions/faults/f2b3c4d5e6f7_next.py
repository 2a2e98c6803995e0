"""Test revision: the next, not yet deployed one, so that the fault tests deploy --to f1a2b3c4d5e6.

With f1a2b3c4d5e6 below the head, verify does not compare the models (which do not know
mood_tags) with the schema.

Revision ID: f2b3c4d5e6f7
Revises: f1a2b3c4d5e6
"""

revision = "f2b3c4d5e6f7"
down_revision = "f1a2b3c4d5e6"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # a placeholder: never deployed by the tests


def downgrade() -> None:
    pass
