"""Stripe disputes -> ``disputes`` (fee and funds movements from their balance transactions); the
dispute facts of their payment are re-derived."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from paywall.models import Dispute
from paywall.webhooks.sync.derived import relink_payments
from paywall.webhooks.sync.fields import Obj, read_amount, read_currency, read_id, read_text, read_timestamp
from paywall.webhooks.sync.ordering import Source, assign, earliest, outcome_of, stamp, wins
from paywall.webhooks.sync.rows import find_row, remember

DISPUTE_STATUS_RANK = {
    "warning_needs_response": 0,
    "needs_response": 0,
    "warning_under_review": 1,
    "under_review": 1,
    "won": 2,
    "lost": 2,
    "warning_closed": 2,
    "prevented": 2,
}
CLOSED = 2


def _dispute_rank(get: Callable[[str], Any]) -> tuple[int, ...]:
    return (DISPUTE_STATUS_RANK.get(get("status") or "", 0), 1 if get("funds_reinstated_at") else 0)


def upsert_dispute(session: Session, dp: Obj, src: Source) -> str:
    """A dispute -> ``disputes`` (fee from its balance transactions); the payment's dispute facts follow."""
    did = read_id(dp)
    if did is None:
        raise ValueError("dispute without an id")
    bts = [bt for bt in dp.get("balance_transactions") or [] if isinstance(bt, Mapping)]
    status = read_text(dp.get("status"), 32) or "needs_response"
    withdrawn_at, reinstated_at = _funds_movements(bts, src)
    values = _dispute_values(dp, bts, status, src)
    row = find_row(session, Dispute, Dispute.stripe_dispute_id, did)
    created = row is None
    changed = False
    if row is None:
        row = Dispute(stripe_dispute_id=did, **values)
        remember(session, row, did)
        changed = True
    old_rank = _dispute_rank(lambda k: getattr(row, k))
    new_rank = _dispute_rank({**values, "funds_reinstated_at": reinstated_at}.get)
    if created or wins(row, src, new_rank, old_rank):
        changed = (
            assign(row, values, links=("stripe_charge_id", "stripe_payment_intent_id", "fee_minor"))
            or changed
        )
        stamp(row, src)
        outcome = outcome_of(created, changed)
    else:
        outcome = "stale"
    changed = _record_times(row, src, status, withdrawn_at, reinstated_at) or changed
    if created or changed:
        relink_payments(session, charge_id=row.stripe_charge_id)
    return "updated" if outcome == "stale" and changed else outcome


def _funds_movements(bts: list[Obj], src: Source) -> tuple[dt.datetime | None, dt.datetime | None]:
    """When this state shows the funds withdrawn and reinstated: the earliest balance transaction
    taking money (withdrawn) and giving it back (reinstated, or the event that says so)."""
    withdrawn = [
        read_timestamp(bt.get("created")) for bt in bts if (read_amount(bt, "amount", signed=True) or 0) < 0
    ]
    reinstated = [
        read_timestamp(bt.get("created")) for bt in bts if (read_amount(bt, "amount", signed=True) or 0) > 0
    ]
    reinstated_at = min(filter(None, reinstated), default=None) or (
        src.at if src.event_type == "charge.dispute.funds_reinstated" else None
    )
    return min(filter(None, withdrawn), default=None), reinstated_at


def _dispute_values(dp: Obj, bts: list[Obj], status: str, src: Source) -> dict[str, Any]:
    """The columns of a dispute that its newest state decides."""
    return {
        "stripe_charge_id": read_id(dp.get("charge")),
        "stripe_payment_intent_id": read_id(dp.get("payment_intent")),
        "amount_minor": read_amount(dp, "amount") or 0,
        "currency": read_currency(dp),
        "fee_minor": sum(read_amount(bt, "fee", signed=True) or 0 for bt in bts) if bts else None,
        "status": status,
        "reason": read_text(dp.get("reason"), 64),
        "opened_at": read_timestamp(dp.get("created")) or src.at,
    }


def _record_times(
    row: Dispute,
    src: Source,
    status: str,
    withdrawn_at: dt.datetime | None,
    reinstated_at: dt.datetime | None,
) -> bool:
    """Funds movements and the close are facts: the earliest time any state shows them, so the
    result does not depend on which event was processed first (a stale one still counts)."""
    changed = earliest(row, "funds_withdrawn_at", withdrawn_at)
    if src.event_type == "charge.dispute.funds_withdrawn":
        changed = earliest(row, "funds_withdrawn_at", src.at) or changed
    changed = earliest(row, "funds_reinstated_at", reinstated_at) or changed
    if DISPUTE_STATUS_RANK.get(status) == CLOSED:
        # Stripe gives no close time: the event that first shows the dispute closed is the truth.
        changed = earliest(row, "closed_at", src.at) or changed
    return changed
