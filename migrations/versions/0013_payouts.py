"""Payouts: each Stripe payout and the balance transactions it paid out, for reconciling the bank.

Revision ID: 0013
Revises: 0002
Create Date: 2026-11-29 19:45:00

A branch of its own off 0002 (where payments began): two new tables, nothing else changes, so it
can deploy while old code runs (old code never reads them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import paywall.db

revision = "0013"
down_revision = "0002"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "payouts",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("stripe_payout_id", sa.String(length=255), nullable=False),
        sa.Column("amount_minor", BIGINT, nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("reconciliation_status", sa.String(length=32), nullable=True),
        sa.Column("automatic", sa.Boolean(), nullable=False),
        sa.Column("arrival_date", paywall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("stripe_created", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("stripe_balance_transaction_id", sa.String(length=255), nullable=True),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column("transactions_synced_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("transactions_synced_state", sa.String(length=64), nullable=True),
        sa.Column("synced_event_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("synced_event_id", sa.String(length=255), nullable=True),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payouts")),
        sa.UniqueConstraint("stripe_payout_id", name=op.f("uq_payouts_stripe_payout_id")),
    )
    op.create_index("ix_payouts_arrival_date", "payouts", ["arrival_date"])
    op.create_table(
        "payout_transactions",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("stripe_balance_transaction_id", sa.String(length=255), nullable=False),
        sa.Column("stripe_payout_id", sa.String(length=255), nullable=False),
        sa.Column("stripe_source_id", sa.String(length=255), nullable=True),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("reporting_category", sa.String(length=64), nullable=True),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("amount_minor", BIGINT, nullable=False),
        sa.Column("fee_minor", BIGINT, nullable=False),
        sa.Column("net_minor", BIGINT, nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("stripe_created", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payout_transactions")),
        sa.UniqueConstraint(
            "stripe_balance_transaction_id",
            name=op.f("uq_payout_transactions_stripe_balance_transaction_id"),
        ),
    )
    op.create_index("ix_payout_transactions_stripe_payout_id", "payout_transactions", ["stripe_payout_id"])
    op.create_index("ix_payout_transactions_source", "payout_transactions", ["stripe_source_id", "category"])


def downgrade() -> None:
    op.drop_table("payout_transactions")
    op.drop_table("payouts")
