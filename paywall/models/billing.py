"""What the Stripe sync writes: the event inbox and a mirror of the Stripe objects that matter.

Every row is keyed by its Stripe id (unique), so two events about one object update one row.
Money is integer minor units plus a lowercase ISO currency. Times are aware UTC.

Ordering: each mirrored row remembers the ``created`` time and id of the event that last wrote it
(``synced_event_at``, ``synced_event_id``); the sync applies an event only if it is not older than
that (see paywall/webhooks/sync/ordering.py for the exact rule, including same-second ties).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from paywall import clock
from paywall.db import Base

StripeId = String(255)


class StripeEvent(Base):
    """The inbox: every verified Stripe event, stored once, with how its processing went.

    ``status``: ``received`` (recorded, waiting for the applier), ``processed``, ``ignored``
    (unknown type, other mode, nothing to do) or ``failed`` (a handler error on an unexpected
    payload; fixed and replayed later). ``payload`` is the text Stripe signed.
    """

    __tablename__ = "stripe_events"
    __table_args__ = (
        Index("ix_stripe_events_status_received", "status", "received_at"),
        Index("ix_stripe_events_object", "object_id"),
        # The applier's claim and the backlog gauges: only the rows still waiting.
        Index(
            "ix_stripe_events_waiting",
            "id",
            postgresql_where=text("status = 'received'"),
            sqlite_where=text("status = 'received'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_event_id: Mapped[str] = mapped_column(StripeId, unique=True)
    type: Mapped[str] = mapped_column(String(100))
    api_version: Mapped[str | None] = mapped_column(String(64))
    livemode: Mapped[bool] = mapped_column(Boolean)
    created: Mapped[dt.datetime]
    # data.object.id, so an operator can find every event about one object.
    object_id: Mapped[str | None] = mapped_column(StripeId)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[dt.datetime] = mapped_column(default=clock.now)
    processed_at: Mapped[dt.datetime | None]
    status: Mapped[str] = mapped_column(String(16), default="received")
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    deliveries: Mapped[int] = mapped_column(default=1)


class SyncedMixin:
    """The event that last wrote a row: the order guard of the sync."""

    synced_event_at: Mapped[dt.datetime | None]
    synced_event_id: Mapped[str | None] = mapped_column(StripeId)
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)


class StripeCustomer(SyncedMixin, Base):
    __tablename__ = "stripe_customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_customer_id: Mapped[str] = mapped_column(StripeId, unique=True)
    reader_id: Mapped[int | None] = mapped_column(ForeignKey("readers.id"), index=True)
    email: Mapped[str | None] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    stripe_created: Mapped[dt.datetime | None]
    deleted_at: Mapped[dt.datetime | None]


class Subscription(SyncedMixin, Base):
    """A Stripe subscription. ``kind`` is ``subscription`` (a plan) or ``donation`` (recurring gift)."""

    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_subscription_id: Mapped[str] = mapped_column(StripeId, unique=True)
    stripe_customer_id: Mapped[str | None] = mapped_column(StripeId, index=True)
    reader_id: Mapped[int | None] = mapped_column(ForeignKey("readers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="subscription")
    # Stripe's status: incomplete, incomplete_expired, trialing, active, past_due, canceled, unpaid, paused.
    status: Mapped[str] = mapped_column(String(32))
    stripe_price_id: Mapped[str | None] = mapped_column(StripeId)
    stripe_product_id: Mapped[str | None] = mapped_column(StripeId)
    # The configured plan name when the price matches one, else the price's lookup_key or nickname.
    plan: Mapped[str | None] = mapped_column(String(100))
    interval: Mapped[str | None] = mapped_column(String(16))
    interval_count: Mapped[int] = mapped_column(default=1)
    amount_minor: Mapped[int | None]
    currency: Mapped[str | None] = mapped_column(String(3))
    quantity: Mapped[int] = mapped_column(default=1)
    current_period_start: Mapped[dt.datetime | None]
    current_period_end: Mapped[dt.datetime | None]
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    cancel_at: Mapped[dt.datetime | None]
    canceled_at: Mapped[dt.datetime | None]
    ended_at: Mapped[dt.datetime | None]
    trial_start: Mapped[dt.datetime | None]
    trial_end: Mapped[dt.datetime | None]
    started_at: Mapped[dt.datetime | None]
    # When the first payment failed since the last success (start of the grace period); None when paid up.
    payment_failed_at: Mapped[dt.datetime | None]
    latest_invoice: Mapped[str | None] = mapped_column(StripeId)
    campaign: Mapped[str | None] = mapped_column(String(100))
    # The appeal experiment, variant (or "holdback") and channel the buyer was in at Checkout
    # (metadata appeal_experiment / appeal_variant / appeal_channel); see paywall/experiments.
    appeal_experiment: Mapped[str | None] = mapped_column(String(64))
    appeal_variant: Mapped[str | None] = mapped_column(String(64))
    appeal_channel: Mapped[str | None] = mapped_column(String(100))
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    # Stripe's pause_collection (the customer portal's pause; the status stays ``active``):
    # keep_as_draft, mark_uncollectible or void, and when collection resumes (None: until resumed).
    pause_collection_behavior: Mapped[str | None] = mapped_column(String(32))
    pause_collection_resumes_at: Mapped[dt.datetime | None]
    # When the current pause (status ``paused`` or pause_collection) began: the first state of its
    # unbroken run among the stored events (order-free); None when not paused. For the report.
    paused_at: Mapped[dt.datetime | None]


class StripePrice(SyncedMixin, Base):
    """A Stripe price as the sync last saw it (subscription items, and invoice lines that carry the
    price object): what names a payment's plan after the subscription has moved to another price."""

    __tablename__ = "stripe_prices"

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_price_id: Mapped[str] = mapped_column(StripeId, unique=True)
    stripe_product_id: Mapped[str | None] = mapped_column(StripeId)
    # Named as subscriptions.plan is: metadata.plan, else lookup_key, nickname, the plan's nickname, the id.
    plan: Mapped[str | None] = mapped_column(String(100))
    unit_amount_minor: Mapped[int | None]
    currency: Mapped[str | None] = mapped_column(String(3))
    interval: Mapped[str | None] = mapped_column(String(16))
    interval_count: Mapped[int] = mapped_column(default=1)


class Invoice(SyncedMixin, Base):
    __tablename__ = "invoices"

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_invoice_id: Mapped[str] = mapped_column(StripeId, unique=True)
    stripe_customer_id: Mapped[str | None] = mapped_column(StripeId, index=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(StripeId, index=True)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(StripeId, index=True)
    stripe_charge_id: Mapped[str | None] = mapped_column(StripeId)
    reader_id: Mapped[int | None] = mapped_column(ForeignKey("readers.id"), index=True)
    status: Mapped[str | None] = mapped_column(String(32))
    billing_reason: Mapped[str | None] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    amount_due: Mapped[int] = mapped_column(default=0)
    amount_paid: Mapped[int] = mapped_column(default=0)
    attempt_count: Mapped[int] = mapped_column(default=0)
    next_payment_attempt: Mapped[dt.datetime | None]
    # The service period billed (from the lines), not invoice.period_* (the previous period).
    period_start: Mapped[dt.datetime | None]
    period_end: Mapped[dt.datetime | None]
    stripe_price_id: Mapped[str | None] = mapped_column(StripeId)
    hosted_invoice_url: Mapped[str | None] = mapped_column(Text)
    paid_at: Mapped[dt.datetime | None]
    stripe_created: Mapped[dt.datetime | None]
    # When a payment attempt on this invoice first failed (invoice.payment_failed); kept once set.
    # The subscription's payment_failed_at is the earliest of these among its unpaid invoices.
    payment_failed_at: Mapped[dt.datetime | None]


class Payment(SyncedMixin, Base):
    """One successful charge. ``kind``: ``subscription`` or ``donation``.

    ``refunded_minor`` is the total refunded; ``disputed_minor`` the amount lost to a dispute (0
    when won or reinstated); ``fee_minor``/``net_minor`` come from the balance transaction when known.
    """

    __tablename__ = "payments"
    __table_args__ = (Index("ix_payments_paid_at", "paid_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_charge_id: Mapped[str] = mapped_column(StripeId, unique=True)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(StripeId, index=True)
    stripe_invoice_id: Mapped[str | None] = mapped_column(StripeId, index=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(StripeId, index=True)
    stripe_customer_id: Mapped[str | None] = mapped_column(StripeId, index=True)
    stripe_checkout_session_id: Mapped[str | None] = mapped_column(StripeId)
    stripe_balance_transaction_id: Mapped[str | None] = mapped_column(StripeId)
    stripe_payout_id: Mapped[str | None] = mapped_column(StripeId)
    stripe_price_id: Mapped[str | None] = mapped_column(StripeId)
    reader_id: Mapped[int | None] = mapped_column(ForeignKey("readers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    # The kind named by the charge or payment intent itself (``metadata.kind``), if any; it wins
    # over what the links (Checkout Session, subscription) say.
    kind_hint: Mapped[str | None] = mapped_column(String(16))
    recurring: Mapped[bool] = mapped_column(Boolean, default=False)
    plan: Mapped[str | None] = mapped_column(String(100))
    campaign: Mapped[str | None] = mapped_column(String(100))
    # The appeal experiment, variant (or "holdback") and channel the buyer was in at Checkout
    # (metadata appeal_experiment / appeal_variant / appeal_channel); see paywall/experiments.
    appeal_experiment: Mapped[str | None] = mapped_column(String(64))
    appeal_variant: Mapped[str | None] = mapped_column(String(64))
    appeal_channel: Mapped[str | None] = mapped_column(String(100))
    amount_minor: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    refunded_minor: Mapped[int] = mapped_column(default=0)
    # charge.amount_refunded as the newest charge state said; refunded_minor is the sum of the
    # charge's counted refunds (refund objects, plus the charge-only part: see Refund), at most amount.
    charge_refunded_minor: Mapped[int] = mapped_column(default=0)
    dispute_status: Mapped[str | None] = mapped_column(String(32))
    disputed_minor: Mapped[int] = mapped_column(default=0)
    fee_minor: Mapped[int | None]
    net_minor: Mapped[int | None]
    # The currency of fee_minor/net_minor: the balance (settlement) currency, which differs from
    # ``currency`` when Stripe converted the charge. Never add fee_minor to amount_minor across them.
    balance_currency: Mapped[str | None] = mapped_column(String(3))
    # Stripe's dispute fees on this charge (from the disputes' balance transactions), in balance_currency.
    dispute_fee_minor: Mapped[int] = mapped_column(default=0)
    # Donor details for receipts (guest donations have no reader); blanked on erasure.
    email: Mapped[str | None] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    paid_at: Mapped[dt.datetime]


# Refund statuses whose money left (or is leaving) the account; a refund of unknown status counts too.
COUNTED_REFUND_STATUSES = ("succeeded", "pending", "requires_action")


class Refund(SyncedMixin, Base):
    """Money refunded on a charge, counted in the period it was made (``stripe_created``).

    Most rows are Stripe refund objects. A row with ``charge_amount_refunded`` set is a charge-only
    refund: the charge said that much was refunded (``charge.refunded``; endpoints on API versions
    before 2024-10-28 get no ``refund.*`` events for card refunds) by ``stripe_created``, and
    ``amount_minor`` is the part of it no refund object accounts for (recomputed by the sync, 0
    once the refund objects arrive). So every report sums this one table and counts each cent once.
    """

    __tablename__ = "refunds"

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_refund_id: Mapped[str] = mapped_column(StripeId, unique=True)
    stripe_charge_id: Mapped[str | None] = mapped_column(StripeId, index=True)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(StripeId)
    stripe_balance_transaction_id: Mapped[str | None] = mapped_column(StripeId)
    amount_minor: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    # pending, requires_action, succeeded, failed, canceled
    status: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(String(64))
    stripe_created: Mapped[dt.datetime]
    # Set on charge-only refunds (see above): the charge's ``amount_refunded`` this row stands for.
    charge_amount_refunded: Mapped[int | None]


class Dispute(SyncedMixin, Base):
    __tablename__ = "disputes"

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_dispute_id: Mapped[str] = mapped_column(StripeId, unique=True)
    stripe_charge_id: Mapped[str | None] = mapped_column(StripeId, index=True)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(StripeId)
    amount_minor: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    # Stripe's dispute fee (from the balance transactions), when known.
    fee_minor: Mapped[int | None]
    # warning_needs_response, needs_response, under_review, won, lost, ...
    status: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(String(64))
    opened_at: Mapped[dt.datetime]
    closed_at: Mapped[dt.datetime | None]
    funds_withdrawn_at: Mapped[dt.datetime | None]
    funds_reinstated_at: Mapped[dt.datetime | None]


class CheckoutSession(SyncedMixin, Base):
    """A completed (or expired) Checkout Session: how a payment links to a reader and a campaign."""

    __tablename__ = "checkout_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_checkout_session_id: Mapped[str] = mapped_column(StripeId, unique=True)
    mode: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str | None] = mapped_column(String(16))
    payment_status: Mapped[str | None] = mapped_column(String(32))
    reader_id: Mapped[int | None] = mapped_column(ForeignKey("readers.id"), index=True)
    stripe_customer_id: Mapped[str | None] = mapped_column(StripeId)
    stripe_subscription_id: Mapped[str | None] = mapped_column(StripeId, index=True)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(StripeId, index=True)
    stripe_invoice_id: Mapped[str | None] = mapped_column(StripeId)
    kind: Mapped[str | None] = mapped_column(String(16))
    campaign: Mapped[str | None] = mapped_column(String(100))
    # The appeal experiment, variant (or "holdback") and channel the buyer was in at Checkout
    # (metadata appeal_experiment / appeal_variant / appeal_channel); see paywall/experiments.
    appeal_experiment: Mapped[str | None] = mapped_column(String(64))
    appeal_variant: Mapped[str | None] = mapped_column(String(64))
    appeal_channel: Mapped[str | None] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    amount_total: Mapped[int | None]
    currency: Mapped[str | None] = mapped_column(String(3))
    completed_at: Mapped[dt.datetime | None]


class SyncCursor(Base):
    """Where `paywall stripe sync` got to in each list, so an interrupted run resumes."""

    __tablename__ = "sync_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    cursor: Mapped[str | None] = mapped_column(StripeId)
    since: Mapped[dt.datetime | None]
    # The start of the run this row belongs to: a list row whose run is still open is resumed.
    started_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=clock.now, onupdate=clock.now)
    completed_at: Mapped[dt.datetime | None]
