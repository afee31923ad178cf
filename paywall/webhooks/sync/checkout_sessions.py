"""Stripe Checkout Sessions -> ``checkout_sessions``; the session's reader, kind, campaign and appeal
(experiment, variant, channel) reach the customer, subscription, invoice and payments it made."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from paywall.models import CheckoutSession, Invoice, Subscription
from paywall.webhooks.sync.customers import customer_stub, link_customer
from paywall.webhooks.sync.derived import kind_of, relink_payments
from paywall.webhooks.sync.fields import (
    APPEAL_COLUMNS,
    Obj,
    mapping,
    metadata,
    read_amount,
    read_appeal,
    read_currency,
    read_id,
    read_text,
)
from paywall.webhooks.sync.ordering import Source, assign, earliest, fill, outcome_of, stamp, wins
from paywall.webhooks.sync.rows import find_row, reader_named, remember, unless_erased
from paywall.webhooks.sync.subscriptions import link_subscription

# Links: never cleared by a newer state that lacks them (rule 2 of ``ordering``).
CHECKOUT_LINKS = (
    "reader_id",
    "stripe_customer_id",
    "stripe_subscription_id",
    "stripe_payment_intent_id",
    "stripe_invoice_id",
    "campaign",
    *APPEAL_COLUMNS,
    "email",
    "name",
)


def checkout_kind(cs: Obj) -> str:
    """The kind ``metadata.kind`` names; else ``donation`` for a donate button; else a plan
    (``subscription``) in subscription mode and a donation for any other one-time payment."""
    meta = metadata(cs)
    explicit = kind_of(meta.get("kind"))
    if explicit:
        return explicit
    if cs.get("submit_type") == "donate":
        return "donation"
    return "subscription" if cs.get("mode") == "subscription" else "donation"


def _checkout_rank(get: Callable[[str], Any]) -> tuple[int, int]:
    return (
        0 if get("status") in (None, "open") else 1,
        1 if get("payment_status") in ("paid", "no_payment_required") else 0,
    )


def upsert_checkout_session(session: Session, cs: Obj, src: Source) -> str:
    """A Checkout Session -> ``checkout_sessions``; its reader and campaign reach everything it paid for."""
    csid = read_id(cs)
    if csid is None:
        raise ValueError("checkout session without an id")
    values = _checkout_values(session, cs)
    row = find_row(session, CheckoutSession, CheckoutSession.stripe_checkout_session_id, csid)
    created = row is None
    if row is None:
        row = CheckoutSession(stripe_checkout_session_id=csid)
        remember(session, row, csid)
    # Stripe gives no completion time: the earliest event that shows the session complete (a
    # stale one too), so the first-processed event does not decide it.
    completed = values["status"] == "complete" and earliest(row, "completed_at", src.at)
    if not created and not wins(
        row, src, _checkout_rank(values.get), _checkout_rank(lambda k: getattr(row, k))
    ):
        return "updated" if completed else "stale"
    changed = assign(row, values, links=CHECKOUT_LINKS)
    stamp(row, src)
    if created or changed:
        link_checkout(session, row)
    changed = changed or completed
    return outcome_of(created, changed)


def _checkout_values(session: Session, cs: Obj) -> dict[str, Any]:
    """The columns of a Checkout Session (without an erased person's details)."""
    details = mapping(cs.get("customer_details"))
    meta = metadata(cs)
    values: dict[str, Any] = {
        "mode": read_text(cs.get("mode"), 16),
        "status": read_text(cs.get("status"), 16),
        "payment_status": read_text(cs.get("payment_status"), 32),
        "reader_id": reader_named(session, cs.get("client_reference_id") or meta.get("reader")),
        "stripe_customer_id": read_id(cs.get("customer")),
        "stripe_subscription_id": read_id(cs.get("subscription")),
        "stripe_payment_intent_id": read_id(cs.get("payment_intent")),
        "stripe_invoice_id": read_id(cs.get("invoice")),
        "kind": checkout_kind(cs),
        "campaign": read_text(meta.get("campaign"), 100),
        **read_appeal(meta),
        "email": read_text(details.get("email"), 320) or read_text(cs.get("customer_email"), 320),
        "name": read_text(details.get("name"), 200),
        "amount_total": read_amount(cs, "amount_total"),
        "currency": read_currency(cs, required=False),
    }
    return unless_erased(session, cs, values)


def link_checkout(session: Session, cs: CheckoutSession) -> None:
    """The link that often arrives last: give the session's reader to its customer, subscription
    and invoice; mark its payments to re-derive."""
    if cs.stripe_customer_id and cs.reader_id is not None:
        cus = customer_stub(session, cs.stripe_customer_id)
        if fill(cus, "reader_id", cs.reader_id):
            link_customer(session, cus)
    if cs.stripe_subscription_id:
        sub = find_row(session, Subscription, Subscription.stripe_subscription_id, cs.stripe_subscription_id)
        if sub is not None:
            link_subscription(session, sub)
    if cs.stripe_invoice_id:
        inv = find_row(session, Invoice, Invoice.stripe_invoice_id, cs.stripe_invoice_id)
        if inv is not None:
            fill(inv, "reader_id", cs.reader_id)
    relink_payments(
        session,
        payment_intent_id=cs.stripe_payment_intent_id,
        invoice_id=cs.stripe_invoice_id,
        subscription_id=cs.stripe_subscription_id,
    )
