"""The preparation of each published KOS's images at publication (issue 16).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database the archive's own create_all touched (``kos`` CLI, a database adopted
    # at the baseline) may hold the table already, with this very layout.
    if sa.inspect(op.get_bind()).has_table("kos_preparation"):
        return
    op.create_table(
        "kos_preparation",
        sa.Column("kos_sop_uid", sa.String(64), primary_key=True),
        sa.Column("publication", sa.String(40), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("prepared", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("nbytes", sa.BigInteger(), nullable=False),
        sa.Column("detail", sa.String(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("kos_preparation")
