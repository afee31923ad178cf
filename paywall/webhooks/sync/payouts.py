"""Stripe payouts -> ``payouts``, and the balance transactions of a payout -> ``payout_transactions``.

The webhook (``payout.paid``, ``payout.failed``, ``payout.reconciliation_completed``, ...) records
the payout only: listing its transactions is an API call, which a webhook transaction should not
wait on (Stripe retries a slow answer). ``paywall stripe sync`` lists them for every automatic
payout whose state changed since it last did (see ``reconcile.fetch_payout_transactions``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from paywall.models import Payout, PayoutTransaction
from paywall.webhooks.sync.fields import Obj, read_amount, read_currency, read_id, read_text, read_timestamp
from paywall.webhooks.sync.ordering import Source, assign, fill, outcome_of, stamp, wins
from paywall.webhooks.sync.rows import find_row, remember

# Within one second, a state further along wins: pending < in_transit < paid/failed/canceled, and
# a finished reconciliation after one in progress.
PAYOUT_STATUS_RANK = {"pending": 0, "in_transit": 1, "paid": 2, "failed": 3, "canceled": 3}
RECONCILIATION_RANK = {"in_progress": 0, "not_applicable": 1, "completed": 1}

# Stripe's reporting_category -> the report's column (Stripe advises grouping by it, not by type).
CATEGORY_OF_REPORTING = {
    "charge": "charge",
    "refund": "refund",
    "refund_failure": "refund",
    "dispute": "dispute",
    "dispute_reversal": "dispute",
    "fee": "fee",
    "payout": "payout",
    "payout_reversal": "payout",
}
# When a transaction has no reporting_category (older API versions): its type.
CATEGORY_OF_TYPE = {
    "charge": "charge",
    "payment": "charge",
    "refund": "refund",
    "payment_refund": "refund",
    "refund_failure": "refund",
    "payment_failure_refund": "refund",
    "stripe_fee": "fee",
    "stripe_fx_fee": "fee",
    "tax_fee": "fee",
    "payout": "payout",
    "payout_cancel": "payout",
    "payout_failure": "payout",
}
CATEGORIES = ("charge", "refund", "dispute", "fee", "payout", "other")


# Facts a payout gains and never loses: kept from any event that carries them (see upsert_payout).
PAYOUT_LINKS = ("stripe_balance_transaction_id", "failure_code")


def _payout_rank(get: Callable[[str], Any]) -> tuple[int, int]:
    return (
        PAYOUT_STATUS_RANK.get(get("status") or "", 0),
        RECONCILIATION_RANK.get(get("reconciliation_status") or "", 0),
    )


def payout_state(row: Payout) -> str:
    """What decides whether its transactions must be listed again: ``status/reconciliation``."""
    return f"{row.status}/{row.reconciliation_status or ''}"


def upsert_payout(session: Session, po: Obj, src: Source) -> str:
    """A payout -> ``payouts`` (keyed by its id; the newest state wins, see ``ordering``)."""
    pid = read_id(po)
    if pid is None:
        raise ValueError("payout without an id")
    values: dict[str, Any] = {
        "amount_minor": read_amount(po, "amount", signed=True) or 0,
        "currency": read_currency(po),
        "status": read_text(po.get("status"), 32) or "pending",
        "reconciliation_status": read_text(po.get("reconciliation_status"), 32),
        "automatic": po.get("automatic") is not False,
        "arrival_date": read_timestamp(po.get("arrival_date")) or read_timestamp(po.get("created")) or src.at,
        "stripe_created": read_timestamp(po.get("created")),
        "stripe_balance_transaction_id": read_id(po.get("balance_transaction")),
        "failure_code": read_text(po.get("failure_code"), 64),
    }
    row = find_row(session, Payout, Payout.stripe_payout_id, pid)
    created = row is None
    if row is None:
        row = Payout(stripe_payout_id=pid, **values)
        remember(session, row, pid)
        changed = True
    elif wins(row, src, _payout_rank(values.get), _payout_rank(lambda k: getattr(row, k))):
        changed = assign(row, values, links=PAYOUT_LINKS)
    else:
        # A stale state still brings its facts: payout.created and payout.failed of a payout that
        # failed at once share a second and a status, the event id breaks the tie, and the loser
        # may be the only one carrying the failure code (whichever the applier takes first).
        filled = [fill(row, key, values[key]) for key in PAYOUT_LINKS]
        if any(filled):
            session.flush()
            return "updated"
        return "stale"
    stamp(row, src)
    session.flush()
    return outcome_of(created, changed)


def category_of(bt: Obj, source: str | None) -> str:
    """The report column of a balance transaction (see ``CATEGORY_OF_REPORTING``)."""
    reporting = bt.get("reporting_category")
    if isinstance(reporting, str) and reporting in CATEGORY_OF_REPORTING:
        return CATEGORY_OF_REPORTING[reporting]
    kind = bt.get("type")
    if isinstance(kind, str) and kind in CATEGORY_OF_TYPE:
        return CATEGORY_OF_TYPE[kind]
    if kind == "adjustment" and source and source.startswith(("dp_", "du_")):
        return "dispute"
    return "other"


def upsert_payout_transaction(session: Session, bt: Obj, payout_id: str, livemode: bool) -> str:
    """A balance transaction listed for ``payout_id`` -> ``payout_transactions`` (a transaction is
    paid out once, so a later listing only corrects it)."""
    tid = read_id(bt)
    if tid is None:
        raise ValueError("balance transaction without an id")
    source = read_id(bt.get("source"))
    amount = read_amount(bt, "amount", signed=True) or 0
    fee = read_amount(bt, "fee", signed=True) or 0
    net = read_amount(bt, "net", signed=True)
    values: dict[str, Any] = {
        "stripe_payout_id": payout_id,
        "stripe_source_id": source,
        "type": read_text(bt.get("type"), 64) or "unknown",
        "reporting_category": read_text(bt.get("reporting_category"), 64),
        "category": category_of(bt, source),
        "amount_minor": amount,
        "fee_minor": fee,
        "net_minor": amount - fee if net is None else net,
        "currency": read_currency(bt),
        "stripe_created": read_timestamp(bt.get("created")),
        "livemode": livemode,
    }
    row = find_row(session, PayoutTransaction, PayoutTransaction.stripe_balance_transaction_id, tid)
    if row is None:
        remember(session, PayoutTransaction(stripe_balance_transaction_id=tid, **values), tid)
        return "created"
    return "updated" if assign(row, values) else "unchanged"
