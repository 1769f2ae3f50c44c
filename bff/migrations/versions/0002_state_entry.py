"""The shared state: sessions, pending logins, hand-overs (issue 15, item 1).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "state_entry",
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("last_seen", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "key", name="pk_state_entry"),
    )
    op.create_index("ix_state_entry_kind_expires_at", "state_entry", ["kind", "expires_at"])


def downgrade() -> None:
    op.drop_table("state_entry")
