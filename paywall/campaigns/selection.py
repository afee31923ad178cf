"""Who gets an appeal: segments computed from the readers and the Stripe mirror.

A reader's payments and subscriptions are found by ``reader_id`` and through their Stripe customer;
guest payments also count for a reader with the same address (case-insensitive), so someone who gave
as a guest is not asked as if they never had.

Segments (all among readers who opted in to marketing mail):

* ``never_supported``: no payment ever, and no subscription that ever started;
* ``lapsed_subscribers``: a subscription (kind "subscription") that ended or was canceled, and no
  active, trialing or past-due one;
* ``past_donors``: a donation before, none in the last ``appeal_pause_days``, and neither an active
  subscription nor an active recurring donation;
* ``all_opted_in``: everyone who opted in.

Never mailed, whatever the segment (each is reported under its own name in the tally):
``erased``, ``unsubscribed``, ``no_email``, ``suppressed`` (a hard-bounced address), and ``paused``:
a donation in the last ``appeal_pause_days`` or an active recurring donation, the same pause the
footer appeal keeps (paywall/access/rules.py), so after a donation every channel pauses together.
The ask budget, ``min_articles`` and experiments are paywall/campaigns/asking.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from paywall.mail.suppression import email_hash, suppressed_hashes
from paywall.models import Payment, Reader, StripeCustomer, Subscription

CURRENT_STATUSES = ("active", "trialing", "past_due")
NEVER_STARTED = ("incomplete", "incomplete_expired")


@dataclass(frozen=True)
class Candidate:
    """A reader in a segment; ``excluded`` names why they get nothing (None: they are a recipient)."""

    reader_id: int
    external_id: str
    email: str | None
    name: str | None
    excluded: str | None = None


@dataclass
class _Facts:
    paid: set[int] = field(default_factory=set)
    paid_emails: set[str] = field(default_factory=set)
    last_donation: dict[int, dt.datetime] = field(default_factory=dict)
    last_donation_by_email: dict[str, dt.datetime] = field(default_factory=dict)
    subscribed_ever: set[int] = field(default_factory=set)
    current_subscriber: set[int] = field(default_factory=set)
    current_donor: set[int] = field(default_factory=set)
    ended_subscriber: set[int] = field(default_factory=set)


def _facts(session: Session) -> _Facts:
    facts = _Facts()
    owner = func.coalesce(Payment.reader_id, StripeCustomer.reader_id)
    last_gift = func.max(case((Payment.kind == "donation", Payment.paid_at)))
    rows = session.execute(
        select(owner, last_gift)
        .select_from(Payment)
        .outerjoin(StripeCustomer, StripeCustomer.stripe_customer_id == Payment.stripe_customer_id)
        .where(owner.is_not(None))
        .group_by(owner)
    )
    for reader_id, last in rows:
        facts.paid.add(reader_id)
        if last is not None:
            facts.last_donation[reader_id] = last
    lowered = func.lower(Payment.email)
    rows = session.execute(select(lowered, last_gift).where(Payment.email.is_not(None)).group_by(lowered))
    for email, last in rows:
        facts.paid_emails.add(email.strip())
        if last is not None:
            facts.last_donation_by_email[email.strip()] = last
    sub_owner = func.coalesce(Subscription.reader_id, StripeCustomer.reader_id)
    subs = session.execute(
        select(sub_owner, Subscription.kind, Subscription.status, Subscription.ended_at)
        .select_from(Subscription)
        .outerjoin(StripeCustomer, StripeCustomer.stripe_customer_id == Subscription.stripe_customer_id)
        .where(sub_owner.is_not(None))
    )
    for reader_id, kind, status, ended_at in subs:
        if status not in NEVER_STARTED:
            facts.subscribed_ever.add(reader_id)
        current = status in CURRENT_STATUSES and ended_at is None
        if kind == "subscription":
            if current:
                facts.current_subscriber.add(reader_id)
            elif status == "canceled" or ended_at is not None:
                facts.ended_subscriber.add(reader_id)
        elif current:
            facts.current_donor.add(reader_id)
    return facts


def _paused(reader_id: int, email: str | None, facts: _Facts, cutoff: dt.datetime) -> bool:
    """A donation since ``cutoff`` (by the reader or from their address), or a current recurring one."""
    key = (email or "").strip().lower()
    gifts = [facts.last_donation.get(reader_id), facts.last_donation_by_email.get(key) if key else None]
    return reader_id in facts.current_donor or any(g is not None and g >= cutoff for g in gifts)


def _in_segment(segment: str, reader_id: int, email: str | None, facts: _Facts, cutoff: dt.datetime) -> bool:
    key = (email or "").strip().lower()
    if segment == "all_opted_in":
        return True
    if segment == "never_supported":
        return (
            reader_id not in facts.paid
            and reader_id not in facts.subscribed_ever
            and (not key or key not in facts.paid_emails)
        )
    if segment == "lapsed_subscribers":
        return reader_id in facts.ended_subscriber and reader_id not in facts.current_subscriber
    if segment == "past_donors":
        gifts = [facts.last_donation.get(reader_id), facts.last_donation_by_email.get(key) if key else None]
        last = max((g for g in gifts if g is not None), default=None)
        return (
            last is not None
            and last < cutoff
            and reader_id not in facts.current_subscriber
            and reader_id not in facts.current_donor
        )
    raise ValueError(f"unknown segment {segment!r}")


def candidates(session: Session, segment: str, *, now: dt.datetime, pause_days: int) -> Iterator[Candidate]:
    """Opted-in readers in ``segment``, in id order, each with the reason they are excluded (or None)."""
    facts = _facts(session)
    suppressed = suppressed_hashes(session)
    cutoff = now - dt.timedelta(days=pause_days)
    rows = session.execute(
        select(
            Reader.id, Reader.external_id, Reader.email, Reader.name, Reader.unsubscribed_at, Reader.erased_at
        )
        .where(Reader.marketing_opt_in.is_(True))
        .order_by(Reader.id)
    )
    for reader_id, external_id, email, name, unsubscribed_at, erased_at in rows:
        if not _in_segment(segment, reader_id, email, facts, cutoff):
            continue
        excluded = exclusion(email, unsubscribed_at, erased_at, suppressed)
        if excluded is None and _paused(reader_id, email, facts, cutoff):
            excluded = "paused"
        yield Candidate(reader_id, external_id, email, name, excluded)


def exclusion(
    email: str | None,
    unsubscribed_at: dt.datetime | None,
    erased_at: dt.datetime | None,
    suppressed: set[str],
) -> str | None:
    """Why a reader gets no appeal (erased, unsubscribed, no_email, suppressed), or None."""
    if erased_at is not None:
        return "erased"
    if unsubscribed_at is not None:
        return "unsubscribed"
    if not email or "@" not in email:
        return "no_email"
    if email_hash(email) in suppressed:
        return "suppressed"
    return None


def recipients(session: Session, segment: str, *, now: dt.datetime, pause_days: int) -> list[Candidate]:
    """The readers who would get an appeal to ``segment`` now (ledger aside)."""
    return [c for c in candidates(session, segment, now=now, pause_days=pause_days) if c.excluded is None]
