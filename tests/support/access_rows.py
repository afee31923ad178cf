"""Rows the Stripe sync would write, created directly for the access tests (no tests here)."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from sqlalchemy.orm import Session

from paywall.models import Payment, Reader, Subscription

_ids = itertools.count(1)


def reader(session: Session, external_id: str) -> Reader:
    row = Reader(external_id=external_id)
    session.add(row)
    session.flush()
    return row


def subscription(session: Session, owner: Reader, **fields: Any) -> Subscription:
    values: dict[str, Any] = {
        "stripe_subscription_id": f"sub_{next(_ids)}",
        "reader_id": owner.id,
        "kind": "subscription",
        "status": "active",
    }
    values.update(fields)
    row = Subscription(**values)
    session.add(row)
    session.flush()
    return row


def payment(session: Session, owner: Reader, paid_at: dt.datetime, **fields: Any) -> Payment:
    values: dict[str, Any] = {
        "stripe_charge_id": f"ch_{next(_ids)}",
        "reader_id": owner.id,
        "kind": "donation",
        "amount_minor": 1000,
        "currency": "eur",
        "paid_at": paid_at,
    }
    values.update(fields)
    row = Payment(**values)
    session.add(row)
    session.flush()
    return row
