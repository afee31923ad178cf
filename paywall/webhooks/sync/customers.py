"""Stripe customers -> ``stripe_customers``; a customer's reader reaches everything it paid for."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from paywall.models import Invoice, StripeCustomer, Subscription
from paywall.webhooks.sync.derived import defer_link, relink_payments
from paywall.webhooks.sync.fields import Obj, metadata, read_id, read_text, read_timestamp
from paywall.webhooks.sync.ordering import Source, assign, earliest, outcome_of, stamp, wins
from paywall.webhooks.sync.rows import find_row, reader_named, remember, unless_erased


def _customer_rank(deleted: bool) -> tuple[int]:
    return (1 if deleted else 0,)


def upsert_customer(session: Session, cus: Obj, src: Source, *, deleted: bool = False) -> str:
    """A Stripe customer -> ``stripe_customers``; its reader (``metadata.reader``) reaches its rows."""
    cid = read_id(cus)
    if cid is None:
        raise ValueError("customer without an id")
    deleted = deleted or bool(cus.get("deleted"))
    row = find_row(session, StripeCustomer, StripeCustomer.stripe_customer_id, cid)
    created = row is None
    if row is None:
        row = StripeCustomer(stripe_customer_id=cid)
        remember(session, row, cid)
    was_deleted = row.deleted_at is not None
    # Deleted as of the earliest deletion seen, whichever event came first.
    changed = deleted and earliest(row, "deleted_at", src.at)
    if not created and not wins(row, src, _customer_rank(deleted), _customer_rank(was_deleted)):
        return "updated" if changed else "stale"
    values: dict[str, Any] = {
        "reader_id": reader_named(session, metadata(cus).get("reader")),
        "stripe_created": read_timestamp(cus.get("created")),
        "email": read_text(cus.get("email"), 320),
        "name": read_text(cus.get("name"), 200),
        "metadata_": dict(metadata(cus)),
    }
    unless_erased(session, cus, values)
    links = ["reader_id", "stripe_created"]
    if deleted:
        # customer.deleted carries the customer as it was, so it is the newest profile: stored
        # even when it is the first event processed. A bare deleted object ({id, deleted}, as a
        # fetch returns) says nothing about the profile, so it clears nothing.
        links += ["email", "name"]
        if "metadata" not in cus:
            del values["metadata_"]
    changed = assign(row, values, links=links) or changed
    stamp(row, src)
    if created or changed:
        link_customer(session, row)
    return outcome_of(created, changed)


def customer_stub(session: Session, cid: str) -> StripeCustomer:
    """The customer's row; created bare when not stored yet (its own events fill it in)."""
    row = find_row(session, StripeCustomer, StripeCustomer.stripe_customer_id, cid)
    if row is None:
        row = StripeCustomer(stripe_customer_id=cid)
        remember(session, row, cid)
        session.flush()
    return row


def link_customer(session: Session, cus: StripeCustomer) -> None:
    """Give the customer's reader to its subscriptions and invoices that have none, and mark its
    payments to re-derive (they take the reader from it then): when the group settles."""
    defer_link(session, "customer", cus.stripe_customer_id, cus, link_customers)


def link_customers(session: Session, rows: dict[str, StripeCustomer]) -> None:
    """``link_customer`` for every marked customer, two queries for all of them."""
    readers = {cid: cus.reader_id for cid, cus in rows.items() if cus.reader_id is not None}
    if readers:
        for sub in session.scalars(
            select(Subscription).where(
                Subscription.stripe_customer_id.in_(sorted(readers)), Subscription.reader_id.is_(None)
            )
        ):
            sub.reader_id = readers[str(sub.stripe_customer_id)]
        for inv in session.scalars(
            select(Invoice).where(
                Invoice.stripe_customer_id.in_(sorted(readers)), Invoice.reader_id.is_(None)
            )
        ):
            inv.reader_id = readers[str(inv.stripe_customer_id)]
    for cid in rows:
        relink_payments(session, customer_id=cid)
