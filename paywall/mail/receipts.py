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
        lines = [
            {"currency": cur, "amount": money.display(net, cur), "count": n}
            for cur, (net, n) in sorted(donor.totals.items())
            if net > 0
        ]
        if not lines:
            tally["nothing_to_report"] += 1
            continue
        if donor.erased:
            tally["erased"] += 1
            continue
        if not donor.email or "@" not in donor.email:
            tally["no_email"] += 1
            continue
        if limit is not None and sent_count >= limit:
            tally["over_limit"] += 1
            continue
        with db.transaction() as session:
            if is_suppressed(session, donor.email):
                tally["suppressed"] += 1
                continue
            if dry_run:
                done = session.scalar(
                    select(YearlyReceipt.state).where(
                        YearlyReceipt.donor_key == donor.key, YearlyReceipt.year == year
                    )
                )
                tally["would_send" if done is None else "already_sent"] += 1
                continue
            claimed = insert_ignore(
                session,
                YearlyReceipt,
                {"donor_key": donor.key, "year": year, "state": "claimed", "claimed_at": clock.now()},
                ["donor_key", "year"],
            )
        if not claimed:
            tally["already_sent"] += 1
            continue
        if transport is None:
            raise ValueError("a transport is needed unless dry_run")
        sent_count += 1
        context = {"name": donor.name, "year": year, "totals": lines, "organisation": organisation}
        subject, text, html = render_supporter_mail("yearly_receipt", context)
        msg = build_message(
            sender=settings.mail.mail_from,
            to=donor.email,
            to_name=donor.name,
            subject=subject,
            text=text,
            html=html,
        )
        row = (YearlyReceipt.donor_key == donor.key, YearlyReceipt.year == year)
        try:
            delivery = transport.send(msg)
        except (TransientFailure, MailConfigError) as exc:
            with db.transaction() as session:  # nothing was sent: let a rerun try again
                session.execute(delete(YearlyReceipt).where(*row))
            tally["deferred"] += 1
            if isinstance(exc, MailConfigError):
                raise
            break  # the server is unwell: stop, rerun later
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
                suppress(session, donor.email, reason="hard_bounce", detail=delivery.error)
        tally["failed" if state == "failed" else state] += 1
    return tally
