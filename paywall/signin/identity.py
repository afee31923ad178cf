"""Who a verified email address is: the one rule shared by sign-in, /thanks and the account page.

1. The reader who verified this address before (``readers.verified_email``).
2. Else the reader already linked to a Stripe customer, a Checkout Session or a payment with this
   address (case-insensitive), the earliest such link if there are several: a reader who paid from
   one device before ever signing in is the same person on the next.
3. Else a new reader with a generated id; a guest donor's unlinked payments and customers with this
   address are linked to them, so their donor perks and receipts follow.

The reader found gets the address as its verified email (one verified email per reader) and is
registered from then on.
"""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from paywall.models import CheckoutSession, Payment, Reader, StripeCustomer

# Generated reader ids: a prefix a person can recognise in logs, and 128 random bits.
GENERATED_PREFIX = "rdr_"


def normalise_email(email: str) -> str:
    """The form addresses are compared and stored in: trimmed and lower-cased."""
    return email.strip().lower()


def earliest_linked(session: Session, email: str) -> Reader | None:
    """The reader linked earliest to a customer, Checkout Session or payment with ``email``."""
    candidates: list[tuple[dt.datetime | None, int]] = []
    for column, reader_col, created in (
        (StripeCustomer.email, StripeCustomer.reader_id, StripeCustomer.stripe_created),
        (CheckoutSession.email, CheckoutSession.reader_id, CheckoutSession.completed_at),
        (Payment.email, Payment.reader_id, Payment.paid_at),
    ):
        row = session.execute(
            select(reader_col, created)
            .where(func.lower(column) == email, reader_col.is_not(None))
            .order_by(created.asc().nulls_last(), reader_col.asc())
            .limit(1)
        ).first()
        if row is not None and row[0] is not None:
            candidates.append((row[1], row[0]))
    never = dt.datetime.max.replace(tzinfo=dt.UTC)
    for _, reader_id in sorted(candidates, key=lambda c: (c[0] or never, c[1])):
        reader = session.get(Reader, reader_id)
        # A reader who verified another address is someone else who once paid with this one.
        if reader is not None and reader.erased_at is None and reader.verified_email is None:
            return reader
    return None


def _new_reader(session: Session, email: str) -> Reader:
    reader = Reader(external_id=GENERATED_PREFIX + secrets.token_urlsafe(16), email=email)
    session.add(reader)
    session.flush()
    # A guest donor's gifts and customers with this address become theirs.
    for model in (Payment, StripeCustomer):
        session.execute(
            update(model)
            .where(func.lower(model.email) == email, model.reader_id.is_(None))
            .values(reader_id=reader.id)
        )
    return reader


def reader_for_email(session: Session, email: str, now: dt.datetime) -> Reader:
    """The reader this verified ``email`` belongs to (found or created), marked verified and registered.

    Race-safe: two first sign-ins of one new address claim ``verified_email`` in savepoints; the
    loser re-reads and gets the winner's reader.
    """
    address = normalise_email(email)
    found = session.scalar(select(Reader).where(Reader.verified_email == address))
    if found is not None:
        return found
    try:
        with session.begin_nested():
            reader = earliest_linked(session, address) or _new_reader(session, address)
            reader.verified_email = address
            reader.email_verified_at = now
            reader.registered_at = reader.registered_at or now
            if not reader.email:
                reader.email = address
            session.flush()
        return reader
    except IntegrityError:
        winner = session.scalar(select(Reader).where(Reader.verified_email == address))
        if winner is None:
            raise
        return winner
