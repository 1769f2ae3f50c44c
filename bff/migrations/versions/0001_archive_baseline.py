"""Baseline: the KOS archive's tables as ``create_all`` made them (DB.SO.22).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kos",
        sa.Column("sop_uid", sa.String(64), primary_key=True),
        sa.Column("cda_id", sa.String(128), nullable=False),
        sa.Column("study_uid", sa.String(64), nullable=False),
        sa.Column("accession_number", sa.String(), nullable=False),
        sa.Column("accession_issuer", sa.String(), nullable=False),
        sa.Column("accession_issuer_type", sa.String(), nullable=False),
        sa.Column("birth_name", sa.String(), nullable=False),
        sa.Column("given_names", sa.Text(), nullable=False),
        sa.Column("sex", sa.String(1), nullable=False),
        sa.Column("birth_date", sa.String(8), nullable=False),
        sa.Column("birthplace", sa.String(5), nullable=False),
        sa.Column("ins", sa.String(15)),
        sa.Column("ins_oid", sa.String(64)),
        sa.Column("local_patient_id", sa.String()),
        sa.Column("institution_name", sa.String(), nullable=False),
        sa.Column("institution_raw", sa.String(), nullable=False),
        sa.Column("is_key_image_note", sa.Boolean(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("location", sa.String(253), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_kos_cda_id", "kos", ["cda_id"])
    op.create_index("ix_kos_study_uid", "kos", ["study_uid"])
    op.create_index("ix_kos_state", "kos", ["state"])
    op.create_table(
        "kos_series",
        sa.Column("kos_sop_uid", sa.String(64), nullable=False),
        sa.Column("series_uid", sa.String(64), nullable=False),
        sa.Column("retrieve_url", sa.Text()),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("kos_sop_uid", "series_uid"),
        sa.ForeignKeyConstraint(["kos_sop_uid"], ["kos.sop_uid"], ondelete="CASCADE"),
    )
    op.create_table(
        "kos_instance",
        sa.Column("kos_sop_uid", sa.String(64), nullable=False),
        sa.Column("series_uid", sa.String(64), nullable=False),
        sa.Column("sop_class_uid", sa.String(64), nullable=False),
        sa.Column("sop_uid", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("kos_sop_uid", "series_uid", "sop_uid"),
        sa.ForeignKeyConstraint(
            ["kos_sop_uid", "series_uid"],
            ["kos_series.kos_sop_uid", "kos_series.series_uid"],
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("kos_instance")
    op.drop_table("kos_series")
    op.drop_table("kos")
