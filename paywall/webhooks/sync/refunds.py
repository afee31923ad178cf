"""Stripe refunds -> ``refunds``; the refunded amount of their payment is re-derived."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from paywall.models import Refund
from paywall.webhooks.sync.derived import relink_payments
from paywall.webhooks.sync.fields import Obj, read_amount, read_currency, read_id, read_text, read_timestamp
from paywall.webhooks.sync.ordering import Source, assign, outcome_of, stamp, wins
from paywall.webhooks.sync.rows import find_row, remember

REFUND_STATUS_RANK = {"pending": 0, "requires_action": 0, "succeeded": 1, "failed": 1, "canceled": 1}


def _refund_rank(get: Callable[[str], Any]) -> tuple[int]:
    return (REFUND_STATUS_RANK.get(get("status") or "", 0),)


def upsert_refund(session: Session, re: Obj, src: Source) -> str:
    """A refund -> ``refunds``; the payment's refunded amount is re-derived."""
    rid = read_id(re)
    if rid is None:
        raise ValueError("refund without an id")
    values: dict[str, Any] = {
        "stripe_charge_id": read_id(re.get("charge")),
        "stripe_payment_intent_id": read_id(re.get("payment_intent")),
        "stripe_balance_transaction_id": read_id(re.get("balance_transaction")),
        "amount_minor": read_amount(re, "amount") or 0,
        "currency": read_currency(re),
        "status": read_text(re.get("status"), 32),
        "reason": read_text(re.get("reason"), 64),
        "stripe_created": read_timestamp(re.get("created")) or src.at,
    }
    row = find_row(session, Refund, Refund.stripe_refund_id, rid)
    created = row is None
    if row is None:
        row = Refund(stripe_refund_id=rid, **values)
        remember(session, row, rid)
        changed = True
    elif wins(row, src, _refund_rank(values.get), _refund_rank(lambda k: getattr(row, k))):
        changed = assign(
            row,
            values,
            links=("stripe_charge_id", "stripe_payment_intent_id", "stripe_balance_transaction_id"),
        )
    else:
        return "stale"
    stamp(row, src)
    if created or changed:
        relink_payments(
            session, charge_id=row.stripe_charge_id, payment_intent_id=row.stripe_payment_intent_id
        )
    return outcome_of(created, changed)
