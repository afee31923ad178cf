"""Stripe invoices -> ``invoices``, from either API shape, with the prices their lines show and
the first failed payment attempt (the start of the grace period)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from paywall.models import Invoice, StripeCustomer, Subscription
from paywall.webhooks.sync.derived import refresh_payment_failed, relink_payments
from paywall.webhooks.sync.fields import (
    Obj,
    mapping,
    read_amount,
    read_count,
    read_currency,
    read_id,
    read_text,
    read_timestamp,
)
from paywall.webhooks.sync.notices import UNPAID_INVOICE, withdraw_pending
from paywall.webhooks.sync.ordering import Source, assign, fill, outcome_of, stamp, wins
from paywall.webhooks.sync.prices import upsert_price
from paywall.webhooks.sync.rows import find_row, remember

# Links: never cleared by a newer state that lacks them (rule 2 of ``ordering``).
INVOICE_LINKS = (
    "stripe_customer_id",
    "stripe_subscription_id",
    "stripe_payment_intent_id",
    "stripe_charge_id",
    "hosted_invoice_url",
    "paid_at",
    "stripe_created",
)


INVOICE_STATUS_RANK = {"draft": 0, "open": 1, "uncollectible": 2, "paid": 3, "void": 3}


def _invoice_rank(get: Callable[[str], Any]) -> tuple[int, ...]:
    return (
        INVOICE_STATUS_RANK.get(get("status") or "", 0),
        int(get("attempt_count") or 0),
        int(get("amount_paid") or 0),
    )


def invoice_subscription_id(inv: Obj) -> str | None:
    """The invoice's subscription: ``parent.subscription_details`` (2025-03-31+), else the top
    level (older), else the first line that names one."""
    parent = inv.get("parent")
    if isinstance(parent, Mapping):
        details = parent.get("subscription_details")
        if isinstance(details, Mapping) and read_id(details.get("subscription")):
            return read_id(details.get("subscription"))
    found = read_id(inv.get("subscription"))
    if found:
        return found
    for line in (inv.get("lines") or {}).get("data") or []:
        found = read_id(line.get("subscription"))
        if found:
            return found
    return None


def _line_price(line: Obj) -> str | None:
    """The line's price: ``pricing.price_details`` (2025-03-31+), else its price or plan."""
    pricing = line.get("pricing")
    if isinstance(pricing, Mapping):
        details = pricing.get("price_details")
        if isinstance(details, Mapping) and read_id(details.get("price")):
            return read_id(details.get("price"))
    return read_id(line.get("price")) or read_id(line.get("plan"))


def _service_line(inv: Obj) -> Obj | None:
    """The line billing the service period: the last line that is neither a proration nor a
    credit, else the last line."""
    lines = (inv.get("lines") or {}).get("data") or []
    best = None
    for line in lines:
        parent = mapping(line.get("parent"))
        details = parent.get("subscription_item_details") if isinstance(parent, Mapping) else None
        proration = details.get("proration") if isinstance(details, Mapping) else line.get("proration", False)
        if not proration and (read_amount(line, "amount", signed=True) or 0) >= 0:
            best = line
    return best or (lines[-1] if lines else None)


def invoice_payment_intents(inv: Obj) -> list[str]:
    """Payment intents the invoice names: ``payment_intent`` (older shape) or expanded ``payments``."""
    found = []
    if read_id(inv.get("payment_intent")):
        found.append(read_id(inv.get("payment_intent")))
    payments = inv.get("payments")
    if isinstance(payments, Mapping):
        for ip in payments.get("data") or []:
            payment = ip.get("payment") if isinstance(ip, Mapping) else None
            if isinstance(payment, Mapping) and ip.get("status") == "paid":
                found.append(read_id(payment.get("payment_intent")))
    return [pi for pi in found if pi]


def upsert_invoice(session: Session, inv: Obj, src: Source, *, failed: bool = False) -> str:
    """A Stripe invoice -> ``invoices``; ``failed`` records a failed payment attempt (grace start)."""
    iid = read_id(inv)
    if iid is None:
        raise ValueError("invoice without an id")
    for any_line in (inv.get("lines") or {}).get("data") or []:
        if isinstance(any_line, Mapping):
            upsert_price(session, any_line.get("price"), any_line.get("plan"), src)
    values = _invoice_values(inv)
    row = find_row(session, Invoice, Invoice.stripe_invoice_id, iid)
    created = row is None
    changed = False
    if row is None:
        row = Invoice(stripe_invoice_id=iid, currency=values["currency"])
        remember(session, row, iid)
    if created or wins(row, src, _invoice_rank(values.get), _invoice_rank(lambda k: getattr(row, k))):
        changed = assign(row, values, links=INVOICE_LINKS)
        stamp(row, src)
        outcome = outcome_of(created, changed)
    else:
        outcome = "stale"
    # A failed attempt is a fact whatever the state's age, like the close of a dispute.
    changed = _record_failure(row, inv, src, failed) or changed
    if created or changed:
        link_invoice(session, row)
    if outcome == "stale" and changed:
        outcome = "updated"
    return outcome


def _invoice_values(inv: Obj) -> dict[str, Any]:
    """The columns of an invoice, from either API shape."""
    line = _service_line(inv)
    period = mapping(line.get("period")) if line else {}
    transitions = mapping(inv.get("status_transitions"))
    pis = invoice_payment_intents(inv)
    return {
        "stripe_customer_id": read_id(inv.get("customer")),
        "stripe_subscription_id": invoice_subscription_id(inv),
        "stripe_payment_intent_id": pis[-1] if pis else None,
        "stripe_charge_id": read_id(inv.get("charge")),
        "status": read_text(inv.get("status"), 32),
        "billing_reason": read_text(inv.get("billing_reason"), 64),
        "currency": read_currency(inv),
        "amount_due": read_amount(inv, "amount_due") or 0,
        "amount_paid": read_amount(inv, "amount_paid") or 0,
        "attempt_count": read_count(inv, "attempt_count") or 0,
        "next_payment_attempt": read_timestamp(inv.get("next_payment_attempt")),
        "period_start": read_timestamp(period.get("start")) or read_timestamp(inv.get("period_start")),
        "period_end": read_timestamp(period.get("end")) or read_timestamp(inv.get("period_end")),
        "stripe_price_id": _line_price(line) if line else None,
        "hosted_invoice_url": read_text(inv.get("hosted_invoice_url"), 2000),
        "paid_at": read_timestamp(transitions.get("paid_at")),
        "stripe_created": read_timestamp(inv.get("created")),
    }


def _record_failure(row: Invoice, inv: Obj, src: Source, failed: bool) -> bool:
    """Set the invoice's first failed attempt: the earliest ``invoice.payment_failed``, or for a
    fetched invoice Stripe already failed to collect, its finalization. Whether it changed."""
    if failed and (row.payment_failed_at is None or src.at < row.payment_failed_at):
        row.payment_failed_at = src.at
        return True
    if (
        row.payment_failed_at is None
        and src.fetched
        and row.status in UNPAID_INVOICE
        and row.attempt_count > 0
        and row.amount_paid < row.amount_due
    ):
        # A fetched invoice that Stripe already tried and failed to collect: the failure happened
        # at finalization at the latest (the webhook that would have said when was missed).
        transitions = mapping(inv.get("status_transitions"))
        row.payment_failed_at = (
            read_timestamp(transitions.get("finalized_at")) or row.stripe_created or src.at
        )
        return True
    return False


def link_invoice_payment(session: Session, ip: Obj, src: Source) -> str:
    """``invoice_payment.paid`` (2025-03-31+): the only link from an invoice to its payment intent."""
    iid = read_id(ip.get("invoice"))
    payment = mapping(ip.get("payment"))
    pi = read_id(payment.get("payment_intent"))
    charge = read_id(payment.get("charge"))
    if iid is None or (pi is None and charge is None):
        return "ignored"
    if ip.get("status") not in (None, "paid"):
        return "ignored"
    row = find_row(session, Invoice, Invoice.stripe_invoice_id, iid)
    created = row is None
    if row is None:
        # The invoice's own events may come later; they fill in the rest (this row has no state yet).
        row = Invoice(stripe_invoice_id=iid, currency=read_currency(ip))
        remember(session, row, iid)
    changed = assign(
        row,
        {"stripe_payment_intent_id": pi, "stripe_charge_id": charge},
        links=("stripe_payment_intent_id", "stripe_charge_id"),
    )
    if created or changed:
        link_invoice(session, row)
    return outcome_of(created, changed)


def link_invoice(session: Session, inv: Invoice) -> None:
    """Give the invoice the reader of its customer or subscription, re-derive the subscription's
    grace start, withdraw a queued failure notice once the invoice is paid or void, and mark its
    payments to re-derive."""
    if inv.stripe_customer_id:
        cus = find_row(session, StripeCustomer, StripeCustomer.stripe_customer_id, inv.stripe_customer_id)
        if cus is not None:
            fill(inv, "reader_id", cus.reader_id)
    if inv.stripe_subscription_id:
        sub = find_row(session, Subscription, Subscription.stripe_subscription_id, inv.stripe_subscription_id)
        if sub is not None:
            fill(inv, "reader_id", sub.reader_id)
            refresh_payment_failed(session, sub)
    if inv.status in ("paid", "void") and inv.payment_failed_at is not None:
        # Only an invoice that failed can have a failure notice queued (queue_payment_failed runs
        # after _record_failure set payment_failed_at, which is never cleared): every other paid
        # invoice, i.e. nearly every renewal, skips the outbox query.
        withdraw_pending(session, f"payment_failed:{inv.stripe_invoice_id}", f"invoice {inv.status}")
    relink_payments(
        session,
        invoice_id=inv.stripe_invoice_id,
        payment_intent_id=inv.stripe_payment_intent_id,
        charge_id=inv.stripe_charge_id,
    )
