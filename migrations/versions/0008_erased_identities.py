"""Erased identities: Stripe customer ids and address hashes of erased readers.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 11:30:00

A new table only (additive): code that does not know it keeps running while it is applied.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import paywall.db

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erased_identities",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("identity", sa.String(length=100), nullable=False),
        sa.Column("erased_at", paywall.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erased_identities")),
        sa.UniqueConstraint("identity", name=op.f("uq_erased_identities_identity")),
    )


def downgrade() -> None:
    op.drop_table("erased_identities")
