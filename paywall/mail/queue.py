"""Queue supporter mail from inside another transaction (the webhook's), once per dedupe key."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import delete, func, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from paywall import clock
from paywall.models.billing import Invoice, StripeCustomer
from paywall.models.outbox import OutboxMessage
from paywall.models.readers import Reader
from paywall.readers.erased import Subject

# Kinds the sync and the sign-in queue; the mailer knows how to render each. The sign-in kinds
# carry their code sealed (paywall/signin/sealing.py) and are skipped once the code expired.
KINDS = ("donation_receipt", "payment_failed", "trial_ending", "signin_code", "delete_code")


def enqueue(
    session: Session,
    *,
    kind: str,
    dedupe_key: str,
    to_email: str | None,
    reader_id: int | None,
    data: dict[str, Any],
) -> str:
    """Queue a message unless one with ``dedupe_key`` exists: 'queued' or 'duplicate'.

    Runs in a savepoint, so a racing insert of the same key leaves the caller's transaction intact.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown outbox kind {kind!r}")
    if session.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == dedupe_key)) is not None:
        return "duplicate"
    try:
        with session.begin_nested():
            session.add(
                OutboxMessage(
                    dedupe_key=dedupe_key, kind=kind, to_email=to_email, reader_id=reader_id, data=data
                )
            )
            session.flush()
    except IntegrityError:
        return "duplicate"
    return "queued"


# On the Table, built once: no ORM bulk-insert or cache-key work per sign-in.
_INSERT_NEW = insert(OutboxMessage.metadata.tables["outbox"])


def enqueue_new(session: Session, *, kind: str, to_email: str, data: dict[str, Any]) -> None:
    """Queue a message that is new by nature (a sign-in code: every request is its own mail).

    One INSERT with a random dedupe key: no lookup and no savepoint, so the caller's transaction
    (and on SQLite the write lock) is held for as short a time as possible."""
    if kind not in KINDS:
        raise ValueError(f"unknown outbox kind {kind!r}")
    session.execute(
        _INSERT_NEW,
        {"dedupe_key": f"{kind}:{secrets.token_hex(16)}", "kind": kind, "to_email": to_email, "data": data},
    )


def payment_failed_notice(session: Session, inv: Invoice) -> tuple[str | None, int | None, dict[str, Any]]:
    """(address, reader id, data) of an invoice's payment-failed notice, from the rows as they are now.

    Called when the notice is queued and again when it is sent: by then the invoice may have been
    retried (attempt count, next attempt) or linked to its reader (whose address then serves when
    the Stripe customer has none)."""
    reader = session.get(Reader, inv.reader_id) if inv.reader_id is not None else None
    customer_email = None
    if inv.stripe_customer_id:
        customer_email = session.scalar(
            select(StripeCustomer.email).where(StripeCustomer.stripe_customer_id == inv.stripe_customer_id)
        )
    data: dict[str, Any] = {
        "stripe_invoice_id": inv.stripe_invoice_id,
        "stripe_subscription_id": inv.stripe_subscription_id,
        "hosted_invoice_url": inv.hosted_invoice_url,
        "amount_minor": inv.amount_due - inv.amount_paid,
        "currency": inv.currency,
        "attempt_count": inv.attempt_count,
        "next_payment_attempt": clock.isoformat(inv.next_payment_attempt),
        "reader": reader.external_id if reader is not None else None,
    }
    return customer_email or (reader.email if reader is not None else None), inv.reader_id, data


def refresh_before_send(session: Session, msg: OutboxMessage) -> None:
    """Re-derive a claimed message from the rows now, for kinds whose facts can change while it
    waits (payment_failed); the row keeps what was sent. A message whose invoice row is gone
    keeps its queued data."""
    if msg.kind != "payment_failed":
        return
    invoice_id = (msg.data or {}).get("stripe_invoice_id")
    if not isinstance(invoice_id, str):
        return
    inv = session.scalar(select(Invoice).where(Invoice.stripe_invoice_id == invoice_id))
    if inv is None:
        return
    to_email, reader_id, data = payment_failed_notice(session, inv)
    msg.data = data
    msg.reader_id = reader_id if reader_id is not None else msg.reader_id
    msg.to_email = to_email or msg.to_email


def erase_reader_mail(session: Session, subject: Subject) -> int:
    """Delete every outbox row for this person (by reader, or addressed to one of their addresses),
    sent or not: each holds their address and name. Returns how many went.

    A later event about the same charge queues nothing again: the sync no longer knows an address
    for an erased person (paywall.readers.erased)."""
    result = session.execute(
        delete(OutboxMessage)
        .where(
            or_(
                OutboxMessage.reader_id == subject.reader.id,
                func.lower(OutboxMessage.to_email).in_(subject.lowered_emails()),
            )
        )
        .execution_options(synchronize_session="fetch")
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
