"""Stripe payouts and the balance transactions they pay out, in Stripe's shapes, for tests.

The shared fixtures hold no payout; its key set is the API reference's Payout object (2026-07-29
dahlia). Balance transactions start from the shared ``balance_transaction.json`` (every key), with
the values a test names. ``paid_out`` builds a payout from its transactions the way Stripe does: the
amount is the sum of their ``net``, and the payout's own transaction (``source`` the payout,
``amount`` its negation) is listed with them.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from tests.conftest import FIXTURES

BALANCE_TRANSACTION = json.loads((FIXTURES / "balance_transaction.json").read_text())


def balance_transaction(
    txn_id: str,
    *,
    type_: str,
    reporting_category: str,
    amount: int,
    fee: int = 0,
    currency: str = "usd",
    source: str | None = None,
    created: int = 1_790_000_000,
) -> dict[str, Any]:
    """A balance transaction: ``amount`` gross (negative: money out), ``fee`` positive when charged."""
    bt: dict[str, Any] = copy.deepcopy(BALANCE_TRANSACTION)
    bt.update(
        id=txn_id,
        type=type_,
        reporting_category=reporting_category,
        amount=amount,
        fee=fee,
        fee_details=[{"amount": fee, "currency": currency, "type": "stripe_fee"}] if fee else [],
        net=amount - fee,
        currency=currency,
        source=source,
        created=created,
        available_on=created,
        description=None,
    )
    return bt


def payout(
    payout_id: str,
    *,
    amount: int,
    currency: str,
    arrival_date: int,
    status: str = "paid",
    automatic: bool = True,
    reconciliation_status: str = "completed",
    failure_code: str | None = None,
) -> dict[str, Any]:
    """A payout object with the API reference's keys."""
    return {
        "id": payout_id,
        "object": "payout",
        "amount": amount,
        "application_fee": None,
        "application_fee_amount": None,
        "arrival_date": arrival_date,
        "automatic": automatic,
        "balance_transaction": f"txn_{payout_id}",
        "created": arrival_date - 2 * 86400,
        "currency": currency,
        "description": "STRIPE PAYOUT",
        "destination": "ba_1Qz8wLm3xTnBankAcct",
        "failure_balance_transaction": f"txn_{payout_id}_failure" if status == "failed" else None,
        "failure_code": failure_code,
        "failure_message": "The bank account has been closed." if failure_code else None,
        "livemode": False,
        "metadata": {},
        "method": "standard",
        "original_payout": None,
        "payout_method": None,
        "reconciliation_status": reconciliation_status,
        "reversed_by": None,
        "source_type": "card",
        "statement_descriptor": None,
        "status": status,
        "trace_id": None,
        "type": "bank_account",
    }


def paid_out(
    payout_id: str, transactions: list[dict[str, Any]], *, currency: str, arrival_date: int, **kwargs: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the payout, the list Stripe gives for ``?payout=``): the payout's amount is the sum of the
    transactions' net, and its own transaction (the money leaving the balance) is listed too."""
    amount = sum(t["net"] for t in transactions)
    po = payout(payout_id, amount=amount, currency=currency, arrival_date=arrival_date, **kwargs)
    own = balance_transaction(
        f"txn_{payout_id}",
        type_="payout",
        reporting_category="payout",
        amount=-amount,
        currency=currency,
        source=payout_id,
        created=arrival_date - 2 * 86400,
    )
    return po, [*transactions, own]
