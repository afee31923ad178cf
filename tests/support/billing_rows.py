"""Factories for the report tests: billing rows made directly, as the Stripe sync would write them."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from sqlalchemy.orm import Session

from paywall.models import Dispute, Payment, Refund, Subscription

_ids = itertools.count(1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)


def payment(session: Session, **kw: Any) -> Payment:
    n = next(_ids)
    values: dict[str, Any] = {
        "stripe_charge_id": f"ch_{n}",
        "stripe_payment_intent_id": f"pi_{n}",
        "stripe_balance_transaction_id": f"txn_{n}",
        "kind": "donation",
        "amount_minor": 1000,
        "currency": "usd",
        "fee_minor": 59,
        "paid_at": utc(2026, 3, 10, 12),
        "livemode": False,
    }
    values.update(kw)
    row = Payment(**values)
    session.add(row)
    session.flush()
    return row


def refund(session: Session, pay: Payment, **kw: Any) -> Refund:
    n = next(_ids)
    values: dict[str, Any] = {
        "stripe_refund_id": f"re_{n}",
        "stripe_charge_id": pay.stripe_charge_id,
        "amount_minor": pay.amount_minor,
        "currency": pay.currency,
        "status": "succeeded",
        "stripe_created": pay.paid_at + dt.timedelta(days=1),
        "livemode": pay.livemode,
    }
    values.update(kw)
    row = Refund(**values)
    session.add(row)
    session.flush()
    return row


def dispute(session: Session, pay: Payment, **kw: Any) -> Dispute:
    n = next(_ids)
    values: dict[str, Any] = {
        "stripe_dispute_id": f"dp_{n}",
        "stripe_charge_id": pay.stripe_charge_id,
        "amount_minor": pay.amount_minor,
        "currency": pay.currency,
        "fee_minor": 1500,
        "status": "lost",
        "opened_at": pay.paid_at + dt.timedelta(days=2),
        "livemode": pay.livemode,
    }
    values.update(kw)
    row = Dispute(**values)
    session.add(row)
    session.flush()
    return row


def subscription(session: Session, **kw: Any) -> Subscription:
    n = next(_ids)
    values: dict[str, Any] = {
        "stripe_subscription_id": f"sub_{n}",
        "kind": "subscription",
        "status": "active",
        "plan": "monthly",
        "interval": "month",
        "amount_minor": 800,
        "currency": "usd",
        "started_at": utc(2026, 1, 15),
        "livemode": False,
    }
    values.update(kw)
    row = Subscription(**values)
    session.add(row)
    session.flush()
    return row
