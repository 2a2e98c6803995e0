<%!
    import re

    def docstring(text):
        """text as it must stand inside a triple-quoted docstring to read back as itself:
        backslashes doubled, unprintable characters escaped, and a double quote escaped
        where it could end the string (before another one, or at the end)."""
        text = (text or "").replace("\\", "\\\\")
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
        return re.sub(r'"(?="|$)', r'\\"', text)
%>\
"""${docstring(message)}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}

revision: str = ${repr(up_revision)}
down_revision: str | Sequence[str] | None = ${repr(down_revision)}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
depends_on: str | Sequence[str] | None = ${repr(depends_on)}


def upgrade() -> None:
    """Apply: ${docstring(message)}."""
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    """Revert: ${docstring(message)}.

    Every revision has a real downgrade; when one is impossible, raise with the reason.
    """
    ${downgrades if downgrades else "pass"}
