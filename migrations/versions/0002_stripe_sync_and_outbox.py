"""Stripe sync: the event inbox, the mirror of Stripe objects, and the mail outbox.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 13:15:36.982655
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import paywall.db

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "disputes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("stripe_dispute_id", sa.String(length=255), nullable=False),
        sa.Column("stripe_charge_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_payment_intent_id", sa.String(length=255), nullable=True),
        sa.Column("amount_minor", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("fee_minor", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("opened_at", paywall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("closed_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("funds_withdrawn_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("funds_reinstated_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("synced_event_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("synced_event_id", sa.String(length=255), nullable=True),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disputes")),
        sa.UniqueConstraint("stripe_dispute_id", name=op.f("uq_disputes_stripe_dispute_id")),
    )
    with op.batch_alter_table("disputes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_disputes_stripe_charge_id"), ["stripe_charge_id"], unique=False)

    op.create_table(
        "refunds",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("stripe_refund_id", sa.String(length=255), nullable=False),
        sa.Column("stripe_charge_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_payment_intent_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_balance_transaction_id", sa.String(length=255), nullable=True),
        sa.Column("amount_minor", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("stripe_created", paywall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("synced_event_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("synced_event_id", sa.String(length=255), nullable=True),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
        sa.UniqueConstraint("stripe_refund_id", name=op.f("uq_refunds_stripe_refund_id")),
    )
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_refunds_stripe_charge_id"), ["stripe_charge_id"], unique=False)

    op.create_table(
        "stripe_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("stripe_event_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("api_version", sa.String(length=64), nullable=True),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("created", paywall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("object_id", sa.String(length=255), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("received_at", paywall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("processed_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("deliveries", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stripe_events")),
        sa.UniqueConstraint("stripe_event_id", name=op.f("uq_stripe_events_stripe_event_id")),
    )
    with op.batch_alter_table("stripe_events", schema=None) as batch_op:
        batch_op.create_index("ix_stripe_events_object", ["object_id"], unique=False)
        batch_op.create_index("ix_stripe_events_status_received", ["status", "received_at"], unique=False)

    op.create_table(
        "sync_cursors",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("cursor", sa.String(length=255), nullable=True),
        sa.Column("since", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("started_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", paywall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("completed_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_sync_cursors")),
    )
    op.create_table(
        "checkout_sessions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("stripe_checkout_session_id", sa.String(length=255), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("payment_status", sa.String(length=32), nullable=True),
        sa.Column("reader_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("stripe_customer_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_subscription_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_payment_intent_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_invoice_id", sa.String(length=255), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=True),
        sa.Column("campaign", sa.String(length=100), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("amount_total", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("completed_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("synced_event_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("synced_event_id", sa.String(length=255), nullable=True),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["reader_id"], ["readers.id"], name=op.f("fk_checkout_sessions_reader_id_readers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkout_sessions")),
        sa.UniqueConstraint(
            "stripe_checkout_session_id", name=op.f("uq_checkout_sessions_stripe_checkout_session_id")
        ),
    )
    with op.batch_alter_table("checkout_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_checkout_sessions_reader_id"), ["reader_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_checkout_sessions_stripe_payment_intent_id"),
            ["stripe_payment_intent_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_checkout_sessions_stripe_subscription_id"),
            ["stripe_subscription_id"],
            unique=False,
        )

    op.create_table(
        "invoices",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("stripe_invoice_id", sa.String(length=255), nullable=False),
        sa.Column("stripe_customer_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_subscription_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_payment_intent_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_charge_id", sa.String(length=255), nullable=True),
        sa.Column("reader_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("billing_reason", sa.String(length=64), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_due", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("amount_paid", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("attempt_count", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("next_payment_attempt", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("period_start", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("period_end", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("stripe_price_id", sa.String(length=255), nullable=True),
        sa.Column("hosted_invoice_url", sa.Text(), nullable=True),
        sa.Column("paid_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("stripe_created", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("payment_failed_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("synced_event_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("synced_event_id", sa.String(length=255), nullable=True),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["reader_id"], ["readers.id"], name=op.f("fk_invoices_reader_id_readers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sa.UniqueConstraint("stripe_invoice_id", name=op.f("uq_invoices_stripe_invoice_id")),
    )
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_invoices_reader_id"), ["reader_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_invoices_stripe_customer_id"), ["stripe_customer_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_invoices_stripe_payment_intent_id"), ["stripe_payment_intent_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_invoices_stripe_subscription_id"), ["stripe_subscription_id"], unique=False
        )

    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("dedupe_key", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("reader_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("to_email", sa.String(length=320), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("due_at", paywall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", paywall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("sent_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["reader_id"], ["readers.id"], name=op.f("fk_outbox_reader_id_readers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_outbox_dedupe_key")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_reader_id"), ["reader_id"], unique=False)
        batch_op.create_index("ix_outbox_status_due", ["status", "due_at"], unique=False)

    op.create_table(
        "payments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("stripe_charge_id", sa.String(length=255), nullable=False),
        sa.Column("stripe_payment_intent_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_invoice_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_subscription_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_customer_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_checkout_session_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_balance_transaction_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_payout_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_price_id", sa.String(length=255), nullable=True),
        sa.Column("reader_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("kind_hint", sa.String(length=16), nullable=True),
        sa.Column("recurring", sa.Boolean(), nullable=False),
        sa.Column("plan", sa.String(length=100), nullable=True),
        sa.Column("campaign", sa.String(length=100), nullable=True),
        sa.Column("amount_minor", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("refunded_minor", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "charge_refunded_minor", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("dispute_status", sa.String(length=32), nullable=True),
        sa.Column("disputed_minor", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("fee_minor", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("net_minor", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("balance_currency", sa.String(length=3), nullable=True),
        sa.Column("dispute_fee_minor", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("paid_at", paywall.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("synced_event_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("synced_event_id", sa.String(length=255), nullable=True),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["reader_id"], ["readers.id"], name=op.f("fk_payments_reader_id_readers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("stripe_charge_id", name=op.f("uq_payments_stripe_charge_id")),
    )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.create_index("ix_payments_paid_at", ["paid_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_payments_reader_id"), ["reader_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_payments_stripe_customer_id"), ["stripe_customer_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_payments_stripe_invoice_id"), ["stripe_invoice_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_payments_stripe_payment_intent_id"), ["stripe_payment_intent_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_payments_stripe_subscription_id"), ["stripe_subscription_id"], unique=False
        )

    op.create_table(
        "stripe_customers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("stripe_customer_id", sa.String(length=255), nullable=False),
        sa.Column("reader_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("stripe_created", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("synced_event_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("synced_event_id", sa.String(length=255), nullable=True),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["reader_id"], ["readers.id"], name=op.f("fk_stripe_customers_reader_id_readers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stripe_customers")),
        sa.UniqueConstraint("stripe_customer_id", name=op.f("uq_stripe_customers_stripe_customer_id")),
    )
    with op.batch_alter_table("stripe_customers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stripe_customers_reader_id"), ["reader_id"], unique=False)

    op.create_table(
        "subscriptions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("stripe_subscription_id", sa.String(length=255), nullable=False),
        sa.Column("stripe_customer_id", sa.String(length=255), nullable=True),
        sa.Column("reader_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("stripe_price_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_product_id", sa.String(length=255), nullable=True),
        sa.Column("plan", sa.String(length=100), nullable=True),
        sa.Column("interval", sa.String(length=16), nullable=True),
        sa.Column("interval_count", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("amount_minor", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("quantity", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("current_period_start", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("current_period_end", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False),
        sa.Column("cancel_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("canceled_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("trial_start", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("trial_end", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("started_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("payment_failed_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("latest_invoice", sa.String(length=255), nullable=True),
        sa.Column("campaign", sa.String(length=100), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("synced_event_at", paywall.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("synced_event_id", sa.String(length=255), nullable=True),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["reader_id"], ["readers.id"], name=op.f("fk_subscriptions_reader_id_readers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
        sa.UniqueConstraint("stripe_subscription_id", name=op.f("uq_subscriptions_stripe_subscription_id")),
    )
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_subscriptions_reader_id"), ["reader_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_subscriptions_stripe_customer_id"), ["stripe_customer_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subscriptions_stripe_customer_id"))
        batch_op.drop_index(batch_op.f("ix_subscriptions_reader_id"))

    op.drop_table("subscriptions")
    with op.batch_alter_table("stripe_customers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stripe_customers_reader_id"))

    op.drop_table("stripe_customers")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payments_stripe_subscription_id"))
        batch_op.drop_index(batch_op.f("ix_payments_stripe_payment_intent_id"))
        batch_op.drop_index(batch_op.f("ix_payments_stripe_invoice_id"))
        batch_op.drop_index(batch_op.f("ix_payments_stripe_customer_id"))
        batch_op.drop_index(batch_op.f("ix_payments_reader_id"))
        batch_op.drop_index("ix_payments_paid_at")

    op.drop_table("payments")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_status_due")
        batch_op.drop_index(batch_op.f("ix_outbox_reader_id"))

    op.drop_table("outbox")
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invoices_stripe_subscription_id"))
        batch_op.drop_index(batch_op.f("ix_invoices_stripe_payment_intent_id"))
        batch_op.drop_index(batch_op.f("ix_invoices_stripe_customer_id"))
        batch_op.drop_index(batch_op.f("ix_invoices_reader_id"))

    op.drop_table("invoices")
    with op.batch_alter_table("checkout_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_checkout_sessions_stripe_subscription_id"))
        batch_op.drop_index(batch_op.f("ix_checkout_sessions_stripe_payment_intent_id"))
        batch_op.drop_index(batch_op.f("ix_checkout_sessions_reader_id"))

    op.drop_table("checkout_sessions")
    op.drop_table("sync_cursors")
    with op.batch_alter_table("stripe_events", schema=None) as batch_op:
        batch_op.drop_index("ix_stripe_events_status_received")
        batch_op.drop_index("ix_stripe_events_object")

    op.drop_table("stripe_events")
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refunds_stripe_charge_id"))

    op.drop_table("refunds")
    with op.batch_alter_table("disputes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_disputes_stripe_charge_id"))

    op.drop_table("disputes")
