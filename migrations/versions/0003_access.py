"""Access: comps, the free-article meter, and appeal dismissals.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 14:00:00

New tables only, so it can deploy while the previous code still runs.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import paywall.db

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "comps",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("reader_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("until", paywall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("granted_by", sa.String(length=100), nullable=True),
        sa.Column("granted_at", paywall.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["reader_id"], ["readers.id"], name=op.f("fk_comps_reader_id_readers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comps")),
        sa.UniqueConstraint("reader_id", name=op.f("uq_comps_reader_id")),
    )
    op.create_table(
        "meter_reads",
        sa.Column("reader", sa.String(length=128), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("article", sa.String(length=128), nullable=False),
        sa.Column("read_at", paywall.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("reader", "period", "article", name=op.f("pk_meter_reads")),
    )
    op.create_table(
        "appeal_dismissals",
        sa.Column("reader", sa.String(length=128), nullable=False),
        sa.Column("dismissed_at", paywall.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("reader", name=op.f("pk_appeal_dismissals")),
    )


def downgrade() -> None:
    op.drop_table("appeal_dismissals")
    op.drop_table("meter_reads")
    op.drop_table("comps")
