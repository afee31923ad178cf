"""Stripe prices: a mirror of the prices the sync sees, so a payment's plan is the plan it paid for.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 12:50:00

Additive: a new table only. Code from before this revision never reads it; until the sync has seen
a price, a payment's plan falls back to its subscription's plan when that is the same price.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import paywall.db

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stripe_prices",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("stripe_price_id", sa.String(length=255), nullable=False),
        sa.Column("stripe_product_id", sa.String(length=255), nullable=True),
        sa.Column("plan", sa.String(length=100), nullable=True),
        sa.Column("unit_amount_minor", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("interval", sa.String(length=16), nullable=True),
        sa.Column("interval_count", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("synced_event_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("synced_event_id", sa.String(length=255), nullable=True),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stripe_prices")),
        sa.UniqueConstraint("stripe_price_id", name=op.f("uq_stripe_prices_stripe_price_id")),
    )


def downgrade() -> None:
    op.drop_table("stripe_prices")
