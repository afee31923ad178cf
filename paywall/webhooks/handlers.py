"""Event type -> one small handler. Each handler syncs the one object its event carries."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from paywall.webhooks.sync import (
    checkout_sessions,
    customers,
    disputes,
    invoices,
    notices,
    payments,
    payouts,
    refunds,
    subscriptions,
)
from paywall.webhooks.sync.fields import InvalidField, Obj, safe_id
from paywall.webhooks.sync.ordering import Source

Handler = Callable[[Session, Obj, Source], str]


def _expect(obj: Obj, *objects: str) -> None:
    """A payload whose object is not what its type promises is an error the operator must see."""
    if obj.get("object") not in objects:
        raise ValueError(f"expected a {' or '.join(objects)} object, got {obj.get('object')!r}")


def customer(session: Session, obj: Obj, src: Source) -> str:
    _expect(obj, "customer")
    return customers.upsert_customer(session, obj, src, deleted=src.event_type == "customer.deleted")


def subscription(session: Session, obj: Obj, src: Source) -> str:
    _expect(obj, "subscription")
    return subscriptions.upsert_subscription(session, obj, src)


def trial_will_end(session: Session, obj: Obj, src: Source) -> str:
    outcome = subscription(session, obj, src)
    notices.queue_trial_ending(session, obj)
    return outcome


def checkout_session(session: Session, obj: Obj, src: Source) -> str:
    _expect(obj, "checkout.session")
    return checkout_sessions.upsert_checkout_session(session, obj, src)


def invoice(session: Session, obj: Obj, src: Source) -> str:
    _expect(obj, "invoice")
    return invoices.upsert_invoice(session, obj, src)


def invoice_payment_failed(session: Session, obj: Obj, src: Source) -> str:
    _expect(obj, "invoice")
    outcome = invoices.upsert_invoice(session, obj, src, failed=True)
    notices.queue_payment_failed(session, obj)
    return outcome


def invoice_payment(session: Session, obj: Obj, src: Source) -> str:
    _expect(obj, "invoice_payment")
    return invoices.link_invoice_payment(session, obj, src)


def payment_intent(session: Session, obj: Obj, src: Source) -> str:
    _expect(obj, "payment_intent")
    return payments.upsert_payment_intent(session, obj, src)


def charge(session: Session, obj: Obj, src: Source) -> str:
    _expect(obj, "charge")
    return payments.upsert_charge(session, obj, src)


def refund(session: Session, obj: Obj, src: Source) -> str:
    _expect(obj, "refund")
    return refunds.upsert_refund(session, obj, src)


def dispute(session: Session, obj: Obj, src: Source) -> str:
    _expect(obj, "dispute")
    return disputes.upsert_dispute(session, obj, src)


def payout(session: Session, obj: Obj, src: Source) -> str:
    """Records the payout only; ``paywall stripe sync`` lists its balance transactions (an API call
    the webhook does not wait on: see ``sync.payouts``)."""
    _expect(obj, "payout")
    return payouts.upsert_payout(session, obj, src)


HANDLERS: dict[str, Handler] = {
    "customer.created": customer,
    "customer.updated": customer,
    "customer.deleted": customer,
    "customer.subscription.created": subscription,
    "customer.subscription.updated": subscription,
    "customer.subscription.deleted": subscription,
    "customer.subscription.paused": subscription,
    "customer.subscription.resumed": subscription,
    "customer.subscription.pending_update_applied": subscription,
    "customer.subscription.pending_update_expired": subscription,
    "customer.subscription.trial_will_end": trial_will_end,
    "checkout.session.completed": checkout_session,
    "checkout.session.async_payment_succeeded": checkout_session,
    "checkout.session.async_payment_failed": checkout_session,
    "checkout.session.expired": checkout_session,
    "invoice.created": invoice,
    "invoice.updated": invoice,
    "invoice.finalized": invoice,
    "invoice.paid": invoice,
    "invoice.payment_succeeded": invoice,
    "invoice.payment_failed": invoice_payment_failed,
    "invoice.payment_action_required": invoice,
    "invoice.voided": invoice,
    "invoice.marked_uncollectible": invoice,
    "invoice_payment.paid": invoice_payment,
    "payment_intent.succeeded": payment_intent,
    "payment_intent.payment_failed": payment_intent,
    "charge.succeeded": charge,
    "charge.captured": charge,
    "charge.failed": charge,
    "charge.refunded": charge,
    "charge.updated": charge,
    "charge.refund.updated": refund,
    "refund.created": refund,
    "refund.updated": refund,
    "refund.failed": refund,
    "charge.dispute.created": dispute,
    "charge.dispute.updated": dispute,
    "charge.dispute.closed": dispute,
    "charge.dispute.funds_withdrawn": dispute,
    "charge.dispute.funds_reinstated": dispute,
    "payout.created": payout,
    "payout.updated": payout,
    "payout.paid": payout,
    "payout.failed": payout,
    "payout.canceled": payout,
    "payout.reconciliation_completed": payout,
}

# Fields that tie an object to others; their ids are the object's lock keys (see applier._prepare_batch).
LINK_FIELDS = ("customer", "payment_intent", "invoice", "subscription", "charge", "latest_charge")


def related_ids(obj: Mapping[str, Any]) -> set[str]:
    """The Stripe ids an object touches: itself and the objects it links to.

    Absurd ids are left out (no row can have them): the handler fails the event on them, inside
    its savepoint, where this bookkeeping before it must not."""
    ids = {i for i in (safe_id(obj),) if i}
    for field in LINK_FIELDS:
        found = safe_id(obj.get(field))
        if found:
            ids.add(found)
    if obj.get("object") == "invoice":
        try:
            sub = invoices.invoice_subscription_id(obj)
            ids.update(invoices.invoice_payment_intents(obj))
        except (InvalidField, AttributeError, TypeError):
            sub = None
        if sub:
            ids.add(sub)
    payment = obj.get("payment")
    if isinstance(payment, Mapping):
        for field in ("payment_intent", "charge"):
            found = safe_id(payment.get(field))
            if found:
                ids.add(found)
    return ids
