"""What the account page shows and does, without Flask, so tests call it without HTTP.

Every function takes the caller's session and never commits; the views open one transaction per
request. The reader is always one the caller already proved (an account session's reader token).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from paywall.access.rules import meter_period
from paywall.access.settings import access_settings
from paywall.campaigns.unsubscribe import unsubscribe
from paywall.checkout.sessions import find_stripe_customer
from paywall.clock import isoformat
from paywall.config import Settings
from paywall.erasure import erase_reader
from paywall.models import AppealDismissal, Comp, MeterRead, Payment, Reader, Subscription
from paywall.readers.service import find_reader
from paywall.signin.codes import CodeRefused, check_code
from paywall.supporter import supporter_summary
from paywall.webhooks.readers import subscription_summary


@dataclass(frozen=True)
class Overview:
    """Everything the account page needs, read in one transaction."""

    reader: str
    email: str | None
    verified: bool
    appeal_mail: bool
    has_customer: bool
    supporter: dict[str, Any]


def live_reader(session: Session, external_id: str) -> Reader | None:
    """The reader row behind an account session, unless it is gone or erased."""
    reader = find_reader(session, external_id)
    return reader if reader is not None and reader.erased_at is None else None


def appeal_mail_on(reader: Reader) -> bool:
    """Whether appeals may be mailed: opted in and not unsubscribed (the appeal mailer's own test)."""
    return reader.marketing_opt_in and reader.unsubscribed_at is None


def overview(session: Session, settings: Settings, reader: Reader) -> Overview:
    """The account page's data for ``reader``: support from the rows, and what the reader may do."""
    return Overview(
        reader=reader.external_id,
        email=reader.verified_email or reader.email,
        verified=reader.verified_email is not None,
        appeal_mail=appeal_mail_on(reader),
        has_customer=find_stripe_customer(session, settings, reader) is not None,
        supporter=supporter_summary(session, reader),
    )


def set_appeal_mail(session: Session, reader: Reader, on: bool, now: dt.datetime) -> str:
    """Turn appeal mail on or off with the fields one-click unsubscribe uses: 'on', 'off', 'unchanged'."""
    if on == appeal_mail_on(reader):
        return "unchanged"
    if not on:
        unsubscribe(session, reader.external_id)
        return "off"
    # Asking for appeals here is a fresh consent, as PUT /v1/readers marketing_opt_in is.
    reader.marketing_opt_in = True
    reader.unsubscribed_at = None
    reader.updated_at = now
    session.flush()
    return "on"


def donation(session: Session, reader: Reader, stripe_charge_id: str) -> Payment | None:
    """One of ``reader``'s donations by its charge id (for its receipt); None when not theirs."""
    return session.scalar(
        select(Payment).where(
            Payment.stripe_charge_id == stripe_charge_id,
            Payment.reader_id == reader.id,
            Payment.kind == "donation",
        )
    )


def _payment(p: Payment) -> dict[str, Any]:
    return {
        "stripe_charge_id": p.stripe_charge_id,
        "kind": p.kind,
        "recurring": p.recurring,
        "plan": p.plan,
        "campaign": p.campaign,
        "amount": p.amount_minor,
        "currency": p.currency,
        "refunded": p.refunded_minor,
        "dispute_status": p.dispute_status,
        "paid_at": isoformat(p.paid_at),
        "email": p.email,
    }


def export_data(session: Session, settings: Settings, reader: Reader, now: dt.datetime) -> dict[str, Any]:
    """ "Download my data": the reader, subscriptions, payments, comp, and this month's meter."""
    subs = session.scalars(
        select(Subscription).where(Subscription.reader_id == reader.id).order_by(Subscription.id)
    )
    payments = session.scalars(
        select(Payment).where(Payment.reader_id == reader.id).order_by(Payment.paid_at, Payment.id)
    )
    comp = session.scalar(select(Comp).where(Comp.reader_id == reader.id))
    period, _ = meter_period(now, access_settings(settings))
    reads = session.scalars(
        select(MeterRead)
        .where(MeterRead.reader == reader.external_id, MeterRead.period == period)
        .order_by(MeterRead.read_at)
    )
    dismissed = session.get(AppealDismissal, reader.external_id)
    return {
        "exported_at": isoformat(now),
        "reader": {
            "reader": reader.external_id,
            "email": reader.email,
            "name": reader.name,
            "verified_email": reader.verified_email,
            "email_verified_at": isoformat(reader.email_verified_at),
            "registered_at": isoformat(reader.registered_at),
            "marketing_opt_in": reader.marketing_opt_in,
            "unsubscribed_at": isoformat(reader.unsubscribed_at),
            "created_at": isoformat(reader.created_at),
        },
        "subscriptions": [subscription_summary(s, now) for s in subs],
        "payments": [_payment(p) for p in payments],
        "comps": [{"until": isoformat(comp.until), "granted_at": isoformat(comp.granted_at)}] if comp else [],
        "meter": {
            "period": period,
            "articles": [{"article": r.article, "read_at": isoformat(r.read_at)} for r in reads],
        },
        "appeal_dismissed_at": isoformat(dismissed.dismissed_at) if dismissed else None,
    }


def confirm_deletion(
    session: Session, settings: Settings, reader: Reader, code: str, now: dt.datetime
) -> str:
    """Erase ``reader`` once ``code`` (mailed to the verified address, purpose "delete") proves it is them.

    Raises CodeRefused for a wrong, used, expired or locked code (the wrong try is counted)."""
    if reader.verified_email is None:
        raise CodeRefused("wrong", "We have no confirmed address for you to send a code to.")
    check_code(session, settings, reader.verified_email, code, now=now, purpose="delete")
    # Erasure also ends every session (the session version) and takes the verified address.
    return erase_reader(session, reader.external_id)
