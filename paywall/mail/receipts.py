"""Yearly donation summaries: one message per donor per year, a total per currency, net of refunds.

A donor is a reader (payments linked directly or through their Stripe customer) or, for guest
donations, an address. The year runs from 1 January to 1 January in ``[mailer] receipts_timezone``.
Each (donor, year) is claimed in the ``yearly_receipts`` ledger before sending, so a rerun sends
only what is missing, and a crash never causes a second summary (the same at-most-once rule as
appeals). Receipts are not appeals: unsubscribed readers still get them.
"""

from __future__ import annotations

import collections
import datetime as dt
from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select, update

from paywall import clock, money
from paywall.config import Settings
from paywall.db import Database, insert_ignore
from paywall.mail.delivery import render_supporter_mail
from paywall.mail.message import build_message
from paywall.mail.settings import mailer_settings
from paywall.mail.smtp import MailConfigError, SmtpTransport, TransientFailure
from paywall.mail.suppression import email_hash, is_suppressed, suppress
from paywall.models import Payment, Reader, StripeCustomer, YearlyReceipt


@dataclass
class Donor:
    key: str
    reader_id: int | None = None
    email: str | None = None
    name: str | None = None
    erased: bool = False
    # currency -> [net minor units, number of donations]
    totals: dict[str, list[int]] = field(default_factory=dict)
    last_paid: dt.datetime | None = None


def year_bounds(year: int, timezone: str) -> tuple[dt.datetime, dt.datetime]:
    """[1 January year, 1 January year+1) in ``timezone``, as UTC."""
    tz = ZoneInfo(timezone)
    start = dt.datetime(year, 1, 1, tzinfo=tz).astimezone(dt.UTC)
    end = dt.datetime(year + 1, 1, 1, tzinfo=tz).astimezone(dt.UTC)
    return start, end


def yearly_donors(db: Database, settings: Settings, year: int) -> list[Donor]:
    """Each donor of ``year`` with their net totals per currency (never added across currencies)."""
    start, end = year_bounds(year, mailer_settings(settings).receipts_timezone)
    owner = func.coalesce(Payment.reader_id, StripeCustomer.reader_id)
    donors: dict[str, Donor] = {}
    with db.transaction(readonly=True) as session:
        rows = session.execute(
            select(
                owner,
                Payment.email,
                Payment.name,
                Payment.currency,
                Payment.amount_minor,
                Payment.refunded_minor,
                Payment.disputed_minor,
                Payment.paid_at,
            )
            .select_from(Payment)
            .outerjoin(StripeCustomer, StripeCustomer.stripe_customer_id == Payment.stripe_customer_id)
            .where(Payment.kind == "donation", Payment.paid_at >= start, Payment.paid_at < end)
            .order_by(Payment.paid_at, Payment.id)
        )
        for reader_id, email, name, currency, amount, refunded, disputed, paid_at in rows:
            if reader_id is not None:
                key = f"reader:{reader_id}"
            elif email:
                key = f"email:{email_hash(email)}"
            else:
                continue  # nobody to write to
            donor = donors.setdefault(key, Donor(key=key, reader_id=reader_id))
            # The latest payment's details win; the reader's own record wins over both (below).
            donor.email = email or donor.email
            donor.name = name or donor.name
            donor.last_paid = paid_at
            line = donor.totals.setdefault(currency.lower(), [0, 0])
            line[0] += amount - (refunded or 0) - (disputed or 0)
            line[1] += 1
        ids = [d.reader_id for d in donors.values() if d.reader_id is not None]
        for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
            for reader in session.scalars(select(Reader).where(Reader.id.in_(chunk))):
                donor = donors[f"reader:{reader.id}"]
                donor.erased = reader.erased_at is not None
                donor.email = reader.email or donor.email
                donor.name = reader.name or donor.name
    return list(donors.values())


def send_yearly_receipts(
    db: Database,
    settings: Settings,
    transport: SmtpTransport | None,
    year: int,
    *,
    dry_run: bool = False,
    limit: int | None = None,
) -> collections.Counter[str]:
    """Mail each donor of ``year`` one summary, once; returns a tally of outcomes."""
    tally: collections.Counter[str] = collections.Counter()
    organisation = mailer_settings(settings).organisation
    sent_count = 0
    for donor in yearly_donors(db, settings, year):
        lines = _summary_lines(donor)
        reason = _unmailable(donor, lines)
        if reason is None and limit is not None and sent_count >= limit:
            reason = "over_limit"
        if reason is None:
            reason = _claim(db, donor, year, dry_run=dry_run)
        if reason is not None:
            tally[reason] += 1
            continue
        if transport is None:
            raise ValueError("a transport is needed unless dry_run")
        sent_count += 1
        context = {"name": donor.name, "year": year, "totals": lines, "organisation": organisation}
        subject, text, html = render_supporter_mail("yearly_receipt", context)
        msg = build_message(
            sender=settings.mail.mail_from,
            to=donor.email or "",  # checked by _unmailable
            to_name=donor.name,
            subject=subject,
            text=text,
            html=html,
        )
        outcome = _send(db, transport, donor, year, msg)
        tally[outcome] += 1
        if outcome == "deferred":
            break  # the server is unwell: stop, rerun later
    return tally


def _summary_lines(donor: Donor) -> list[dict[str, Any]]:
    """The donor's positive net totals, one line per currency, formatted for the message."""
    return [
        {"currency": cur, "amount": money.display(net, cur), "count": n}
        for cur, (net, n) in sorted(donor.totals.items())
        if net > 0
    ]


def _unmailable(donor: Donor, lines: list[dict[str, Any]]) -> str | None:
    """Why the donor gets no summary, known before touching the ledger (None: they may)."""
    if not lines:
        return "nothing_to_report"
    if donor.erased:
        return "erased"
    if not donor.email or "@" not in donor.email:
        return "no_email"
    return None


def _claim(db: Database, donor: Donor, year: int, *, dry_run: bool) -> str | None:
    """Claim (donor, year) in its own committed transaction: None when claimed, else the tally word
    (``suppressed``, ``already_sent``, or in a dry run ``would_send``, which claims nothing)."""
    with db.transaction() as session:
        if is_suppressed(session, donor.email or ""):
            return "suppressed"
        if dry_run:
            done = session.scalar(
                select(YearlyReceipt.state).where(
                    YearlyReceipt.donor_key == donor.key, YearlyReceipt.year == year
                )
            )
            return "would_send" if done is None else "already_sent"
        claimed = insert_ignore(
            session,
            YearlyReceipt,
            {"donor_key": donor.key, "year": year, "state": "claimed", "claimed_at": clock.now()},
            ["donor_key", "year"],
        )
    return None if claimed else "already_sent"


def _send(db: Database, transport: SmtpTransport, donor: Donor, year: int, msg: Message) -> str:
    """Send a claimed summary and record the outcome: its tally word (``sent``, ``failed``,
    ``unknown``), or ``deferred`` when nothing was sent and the claim was given back."""
    row = (YearlyReceipt.donor_key == donor.key, YearlyReceipt.year == year)
    try:
        delivery = transport.send(msg)
    except (TransientFailure, MailConfigError) as exc:
        with db.transaction() as session:  # nothing was sent: let a rerun try again
            session.execute(delete(YearlyReceipt).where(*row))
        if isinstance(exc, MailConfigError):
            raise
        return "deferred"
    state = {"sent": "sent", "unknown": "unknown", "refused": "failed"}[delivery.status]
    with db.transaction() as session:
        session.execute(
            update(YearlyReceipt)
            .where(*row)
            .values(
                state=state,
                finished_at=clock.now(),
                message_id=msg["Message-ID"],
                error=delivery.error or None,
            )
        )
        if delivery.hard_bounce:
            suppress(session, donor.email or "", reason="hard_bounce", detail=delivery.error)
    return state
