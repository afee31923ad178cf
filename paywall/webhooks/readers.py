"""What the sync tells the reader view (subscription, donations), and erasure of its personal data."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from paywall import clock
from paywall.clock import isoformat
from paywall.models import (
    CheckoutSession,
    Dispute,
    Invoice,
    Payment,
    Reader,
    Refund,
    StripeCustomer,
    StripeEvent,
    Subscription,
)
from paywall.readers.erased import Subject

# Current subscriptions first (active and trialing, then in dunning or paused), ended ones last.
STATUS_ORDER = {
    "active": 0,
    "trialing": 0,
    "past_due": 1,
    "unpaid": 2,
    "paused": 2,
    "incomplete": 3,
    "canceled": 4,
    "incomplete_expired": 5,
}
ENDED = ("canceled", "incomplete_expired")
# The statuses a collection pause takes access from (as in the access rules).
COLLECTING = ("active", "trialing", "past_due", "unpaid")
DONATIONS_SHOWN = 50


def paused(sub: Subscription, now: dt.datetime) -> bool:
    """Status ``paused``, or collection paused (pause_collection) at ``now``: the access rules' test."""
    if sub.status == "paused":
        return True
    if sub.pause_collection_behavior is None or sub.status not in COLLECTING:
        return False
    resumes = sub.pause_collection_resumes_at
    return resumes is None or now < resumes


def subscription_summary(sub: Subscription, now: dt.datetime) -> dict[str, Any]:
    pause = None
    if sub.pause_collection_behavior is not None:
        pause = {
            "behavior": sub.pause_collection_behavior,
            "resumes_at": isoformat(sub.pause_collection_resumes_at),
        }
    return {
        "stripe_subscription_id": sub.stripe_subscription_id,
        "status": sub.status,
        "plan": sub.plan,
        "kind": sub.kind,
        "interval": sub.interval,
        "amount": sub.amount_minor,
        "currency": sub.currency,
        "current_period_start": isoformat(sub.current_period_start),
        "current_period_end": isoformat(sub.current_period_end),
        "cancel_at_period_end": sub.cancel_at_period_end,
        "cancel_at": isoformat(sub.cancel_at),
        "trial_end": isoformat(sub.trial_end),
        "canceled_at": isoformat(sub.canceled_at),
        "ended_at": isoformat(sub.ended_at),
        "payment_failed_at": isoformat(sub.payment_failed_at),
        "paused": paused(sub, now),
        "pause_collection": pause,
        "paused_at": isoformat(sub.paused_at),
    }


def _relevance(sub: Subscription, now: dt.datetime) -> tuple[int, int, float]:
    end = sub.current_period_end.timestamp() if sub.current_period_end else 0.0
    # A paused subscription ranks with status ``paused``, whatever Stripe's status says.
    status = "paused" if paused(sub, now) else sub.status
    return (STATUS_ORDER.get(status, 3), 0 if sub.kind == "subscription" else 1, -end)


def supporter_section(session: Session, reader: Reader) -> dict[str, Any]:
    """``subscription`` (the most relevant current one, or None), all ``subscriptions``, ``donations``."""
    now = clock.now()
    subs = sorted(
        session.scalars(select(Subscription).where(Subscription.reader_id == reader.id)),
        key=lambda s: _relevance(s, now),
    )
    current = next((s for s in subs if s.status not in ENDED), None)
    donations = session.scalars(
        select(Payment)
        .where(Payment.reader_id == reader.id, Payment.kind == "donation")
        .order_by(Payment.paid_at.desc(), Payment.id.desc())
        .limit(DONATIONS_SHOWN)
    )
    return {
        "subscription": subscription_summary(current, now) if current else None,
        "subscriptions": [subscription_summary(s, now) for s in subs],
        "donations": [
            {
                "stripe_charge_id": p.stripe_charge_id,
                "amount": p.amount_minor,
                "currency": p.currency,
                "refunded": p.refunded_minor,
                "dispute_status": p.dispute_status,
                "paid_at": isoformat(p.paid_at),
                "campaign": p.campaign,
                "recurring": p.recurring,
            }
            for p in donations
        ],
    }


# Keys in Stripe payloads that carry a person's details.
PERSONAL_KEYS = frozenset(
    [
        "email",
        "name",
        "phone",
        "address",
        "shipping",
        "billing_details",
        "customer_details",
        "customer_email",
        "customer_name",
        "customer_phone",
        "customer_address",
        "customer_shipping",
        "receipt_email",
        "shipping_details",
        "individual_name",
        "business_name",
        # Dispute evidence.
        "customer_email_address",
        "customer_purchase_ip",
        "billing_address",
        "shipping_address",
    ]
)


def redact(value: Any) -> Any:
    """A copy of a Stripe payload with every personal field (and any ``*email*`` key) set to None."""
    if isinstance(value, Mapping):
        return {k: (None if k in PERSONAL_KEYS or "email" in str(k) else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _ids(rows: Iterable[Any]) -> set[str]:
    return {i for row in rows for i in row if i}


def erase_reader_data(session: Session, subject: Subject) -> None:
    """Blank donor details wherever the sync wrote them for this person (rows linked to the reader,
    to their Stripe customers, or holding one of their addresses), and redact the stored events
    about those objects. Adds the customer ids and addresses found to ``subject``, so they can be
    remembered as erased (paywall.erasure)."""
    rid = subject.reader.id
    customers = _their_customers(session, rid)
    subject.stripe_customer_ids |= customers
    cids = sorted(customers)
    for model in (Payment, CheckoutSession, StripeCustomer):
        subject.emails |= _ids(
            session.execute(
                select(model.email).where(or_(model.reader_id == rid, model.stripe_customer_id.in_(cids)))
            ).all()
        )
    lowered = subject.lowered_emails()

    def theirs(model: Any) -> Any:
        return or_(
            model.reader_id == rid, model.stripe_customer_id.in_(cids), func.lower(model.email).in_(lowered)
        )

    # Found before the details are blanked: ``theirs`` matches on the addresses too.
    object_ids = _their_object_ids(session, rid, cids, theirs)
    for model in (Payment, CheckoutSession, StripeCustomer):
        session.execute(
            update(model)
            .where(theirs(model))
            .values(email=None, name=None)
            .execution_options(synchronize_session="fetch")
        )
    _redact_events(session, object_ids)


def _their_customers(session: Session, rid: int) -> set[str]:
    """The Stripe customers linked to the reader, directly or through a row of theirs."""
    customers = set(
        session.scalars(select(StripeCustomer.stripe_customer_id).where(StripeCustomer.reader_id == rid))
    )
    for linked in (Payment, CheckoutSession, Subscription, Invoice):
        customers |= _ids(
            session.execute(select(linked.stripe_customer_id).where(linked.reader_id == rid)).all()
        )
    return customers


def _their_object_ids(session: Session, rid: int, cids: list[str], theirs: Callable[[Any], Any]) -> set[str]:
    """The Stripe ids of every object of the person's: payments and what they came through,
    Checkout Sessions, customers, invoices, subscriptions, and the refunds and disputes of their
    charges."""
    payments = session.execute(
        select(
            Payment.stripe_charge_id,
            Payment.stripe_payment_intent_id,
            Payment.stripe_checkout_session_id,
            Payment.stripe_invoice_id,
        ).where(theirs(Payment))
    ).all()
    charges = sorted({row[0] for row in payments})
    object_ids = (
        _ids(payments)
        | _ids(
            session.execute(
                select(
                    CheckoutSession.stripe_checkout_session_id, CheckoutSession.stripe_payment_intent_id
                ).where(theirs(CheckoutSession))
            ).all()
        )
        | set(cids)
        | _ids(session.execute(select(StripeCustomer.stripe_customer_id).where(theirs(StripeCustomer))).all())
    )
    for owned in (Invoice, Subscription):
        key = owned.stripe_invoice_id if owned is Invoice else owned.stripe_subscription_id
        object_ids |= _ids(
            session.execute(
                select(key).where(or_(owned.reader_id == rid, owned.stripe_customer_id.in_(cids)))
            ).all()
        )
    object_ids |= _ids(
        session.execute(select(Refund.stripe_refund_id).where(Refund.stripe_charge_id.in_(charges))).all()
    )
    object_ids |= _ids(
        session.execute(select(Dispute.stripe_dispute_id).where(Dispute.stripe_charge_id.in_(charges))).all()
    )
    return object_ids


def _redact_events(session: Session, object_ids: set[str]) -> None:
    """Events name their object: redact every stored event about one of the person's objects."""
    if not object_ids:
        return
    for event in session.scalars(select(StripeEvent).where(StripeEvent.object_id.in_(sorted(object_ids)))):
        event.payload = redact(event.payload)
