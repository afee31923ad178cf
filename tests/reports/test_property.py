"""Property: for random histories, the revenue report, the payments export and a plain sum agree.

Histories mix currencies (USD, EUR, zero-decimal JPY, three-decimal KWD), fees settled in another
currency, partial and failed refunds, and disputes lost, won, pending or mere inquiries.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paywall import money
from paywall.db import Database
from paywall.models import Payment
from paywall.reports.exporters import csv_chunks
from paywall.reports.payments import payments_table
from paywall.reports.periods import Period
from paywall.reports.revenue import revenue_report
from tests.conftest import truncate_all
from tests.support.billing_rows import dispute, payment, refund, utc

CURRENCIES = ["usd", "eur", "jpy", "kwd"]
START = utc(2025, 1, 1)
ZONES = [ZoneInfo("UTC"), ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")]

refund_st = st.fixed_dictionaries(
    {
        "share": st.integers(1, 100),
        "status": st.sampled_from(["succeeded", "pending", "failed", "canceled"]),
        "after_hours": st.integers(0, 24 * 60),
    }
)
dispute_st = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["lost", "won", "needs_response", "under_review", "warning_closed"]),
        "reinstated": st.booleans(),
        "fee": st.none() | st.integers(0, 2000),
        "after_hours": st.integers(0, 24 * 60),
    }
)
# A refund of a charge never recorded as a payment (older than the service, say).
orphan_st = st.fixed_dictionaries(
    {
        "amount": st.integers(1, 10**6),
        "currency": st.sampled_from(CURRENCIES),
        "status": st.sampled_from(["succeeded", "pending", "failed"]),
        "hours": st.integers(0, 24 * 365 * 2),
    }
)
payment_st = st.fixed_dictionaries(
    {
        "amount": st.integers(1, 10**7),
        "currency": st.sampled_from(CURRENCIES),
        "settled_in_usd": st.booleans(),
        "fee": st.none() | st.integers(0, 5000),
        "kind": st.sampled_from(["donation", "subscription"]),
        "hours": st.integers(0, 24 * 365 * 2),
        "refunds": st.lists(refund_st, max_size=2),
        "dispute": st.none() | dispute_st,
    }
)


def _insert(
    db: Database,
    history: list[dict[str, Any]],
    orphans: Sequence[dict[str, Any]] = (),
) -> dict[str, dict[str, int]]:
    """Write the history; return the independent per-currency sums of every amount."""
    sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    with db.transaction() as s:
        for i, o in enumerate(orphans):
            never_recorded = Payment(
                stripe_charge_id=f"ch_orphan_{i}", currency=o["currency"], livemode=False, paid_at=START
            )
            refund(
                s,
                never_recorded,
                amount_minor=o["amount"],
                status=o["status"],
                stripe_created=START + dt.timedelta(hours=o["hours"]),
            )
            if o["status"] != "failed":
                sums[o["currency"]]["refunds"] += o["amount"]
        for h in history:
            paid_at = START + dt.timedelta(hours=h["hours"])
            balance = "usd" if h["settled_in_usd"] else None
            p = payment(
                s, amount_minor=h["amount"], currency=h["currency"], fee_minor=h["fee"], kind=h["kind"],
                paid_at=paid_at, balance_currency=balance,
            )  # fmt: skip
            fee_currency = balance or h["currency"]
            sums[h["currency"]]["gross"] += h["amount"]
            sums[h["currency"]]["payments"] += 1
            sums[fee_currency]["fees"] += h["fee"] or 0
            for r in h["refunds"]:
                amount = max(1, h["amount"] * r["share"] // 100)
                refund(
                    s,
                    p,
                    amount_minor=amount,
                    status=r["status"],
                    stripe_created=paid_at + dt.timedelta(hours=r["after_hours"]),
                )
                if r["status"] in ("succeeded", "pending"):
                    sums[h["currency"]]["refunds"] += amount
            d = h["dispute"]
            if d is not None:
                reinstated = paid_at + dt.timedelta(days=90) if d["reinstated"] else None
                dispute(
                    s, p, status=d["status"], fee_minor=d["fee"], funds_reinstated_at=reinstated,
                    opened_at=paid_at + dt.timedelta(hours=d["after_hours"]),
                )  # fmt: skip
                if d["status"] in ("lost", "needs_response", "under_review") and not d["reinstated"]:
                    sums[h["currency"]]["disputes"] += h["amount"]
                sums[fee_currency]["fees"] += d["fee"] or 0
    for c in sums.values():
        c["net"] = c["gross"] - c["refunds"] - c["disputes"] - c["fees"]
    return {k: dict(v) for k, v in sums.items()}


def _keep(sums: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    keys = ("gross", "refunds", "disputes", "fees", "net", "payments")
    return {c: {k: v.get(k, 0) for k in keys} for c, v in sums.items()}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    history=st.lists(payment_st, max_size=25),
    orphans=st.lists(orphan_st, max_size=3),
    zone=st.sampled_from(ZONES),
    group_by=st.sampled_from(["month", "week", "kind"]),
)
def test_report_export_and_plain_sum_agree(
    db: Database, history: list[dict[str, Any]], orphans: list[dict[str, Any]], zone: ZoneInfo, group_by: str
) -> None:
    truncate_all(db)
    expected = _keep(_insert(db, history, orphans))
    # Wide enough for every payment, refund and dispute (events come at most 60 days after).
    period = Period(dt.date(2024, 12, 1), dt.date(2027, 4, 1), zone)
    with db.transaction(readonly=True) as s:
        report = revenue_report(s, period, group_by)
        # The report's rows add up to its totals, currency by currency.
        by_rows: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for r in report.rows:
            for k, v in r.as_dict().items():
                if k not in ("period", "currency"):
                    by_rows[r.currency][k] += v
        totals = {
            t.currency: {k: v for k, v in t.as_dict().items() if k not in ("period", "currency")}
            for t in report.totals
        }
        assert totals == _keep({c: dict(v) for c, v in by_rows.items()})
        assert {c: t for c, t in totals.items() if any(t.values())} == {
            c: t for c, t in expected.items() if any(t.values())
        }

        # The payments export (as CSV, in major units) adds up to the same, exactly.
        text = b"".join(csv_chunks(payments_table(s, period, None), zone)).decode()
    export: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for row in csv.DictReader(io.StringIO(text, newline="")):
        c, fc = row["currency"], row["fee_currency"]
        export[c]["gross"] += Decimal(row["amount"])
        export[c]["refunds"] += Decimal(row["refunded"])
        export[c]["disputes"] += Decimal(row["disputed"])
        export[c]["payments"] += row["unmatched"] == "false"
        export[fc]["fees"] += Decimal(row["fee"] or 0) + Decimal(row["dispute_fee"])
        if row["net"]:
            assert Decimal(row["net"]) == Decimal(row["amount"]) - Decimal(row["refunded"]) - Decimal(
                row["disputed"]
            ) - Decimal(row["fee"] or 0) - Decimal(row["dispute_fee"])
    for currency, t in expected.items():
        for k in ("gross", "refunds", "disputes", "fees"):
            assert export[currency][k] == money.to_major(t[k], currency), (currency, k)
        assert export[currency]["payments"] == t["payments"]
