"""The lease of a KOS's preparation: one preparation per KOS across replicas (issues 15
and 16).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database the archive's own create_all touched (``kos`` CLI) may hold the columns.
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("kos_preparation")}
    with op.batch_alter_table("kos_preparation") as batch:
        if "claimed_by" not in columns:
            batch.add_column(sa.Column("claimed_by", sa.String(128), nullable=True))
        if "lease_until" not in columns:
            batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("kos_preparation") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("claimed_by")
