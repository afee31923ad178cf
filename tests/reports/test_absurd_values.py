"""Reports never break on a stored value (issue 13, point 5): rows written by an older version,
before the webhook readers refused absurd values, still give a 200 in every format."""

from __future__ import annotations

import io

import pytest
from flask.testing import FlaskClient
from openpyxl import load_workbook

from paywall.db import Database
from tests.support.billing_rows import dispute, payment, refund, utc

HUGE = 9_000_000_000_000_000_000  # fits BIGINT; two of them overflow a 64-bit SUM


def _absurd_history(db: Database) -> None:
    with db.transaction() as s:
        a = payment(s, amount_minor=HUGE, fee_minor=HUGE, paid_at=utc(2026, 3, 3), email="a@example.org")
        b = payment(s, amount_minor=HUGE, fee_minor=HUGE, paid_at=utc(2026, 3, 4), email="a@example.org")
        payment(s, amount_minor=-HUGE, paid_at=utc(2026, 3, 5), campaign="=x\x1b\x07")
        payment(
            s,
            amount_minor=1000,
            currency="u\x01d",
            balance_currency='"\x0b',
            paid_at=utc(2026, 3, 6),
            name="N\x08",
        )
        refund(s, a, amount_minor=HUGE)
        refund(s, b, amount_minor=HUGE)
        dispute(s, a, amount_minor=HUGE, fee_minor=HUGE, opened_at=utc(2026, 3, 20))
        dispute(s, b, amount_minor=HUGE, fee_minor=HUGE, opened_at=utc(2026, 3, 21))


REPORTS = [
    "revenue?start=2026-03-01&end=2026-05-01",
    "revenue?start=2026-03-01&end=2026-05-01&group_by=campaign",
    "payments?start=2026-03-01&end=2026-05-01",
    "donors?year=2026",
    "subscriptions?start=2026-03-01&end=2026-05-01",
]


@pytest.mark.parametrize("fmt", ["json", "csv", "xlsx"])
@pytest.mark.parametrize("report", REPORTS)
def test_absurd_stored_values_never_break_a_report(
    client: FlaskClient, db: Database, finance_key: dict[str, str], report: str, fmt: str
) -> None:
    _absurd_history(db)
    resp = client.get(f"/v1/reports/{report}&format={fmt}", headers=finance_key)
    assert resp.status_code == 200, resp.get_data()[:500]
    data = resp.get_data()
    if fmt == "xlsx":
        ws = load_workbook(io.BytesIO(data)).active
        assert ws is not None and ws.max_row >= 1


def test_revenue_sums_beyond_64_bits_are_exact(
    client: FlaskClient, db: Database, finance_key: dict[str, str]
) -> None:
    """Amounts are added as Python ints: a total past 2**63 is exact, not a 503 or a float."""
    _absurd_history(db)
    body = client.get("/v1/reports/revenue?start=2026-03-01&end=2026-05-01", headers=finance_key).get_json()
    (usd,) = [t for t in body["totals"] if t["currency"] == "usd"]
    assert usd["gross"] == HUGE + HUGE - HUGE
    assert usd["refunds"] == 2 * HUGE
    assert usd["disputes"] == 2 * HUGE
    assert usd["payments"] == 3
