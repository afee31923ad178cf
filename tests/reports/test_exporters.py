"""Exports: formula-safe CSV and XLSX, exact money, the payments export, donors and subscriptions."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st
from openpyxl import load_workbook

from paywall import money
from paywall.db import Database
from paywall.reports.exporters import csv_chunks, major, safe_text, write_xlsx
from paywall.reports.periods import Period
from paywall.reports.subscriptions import subscriptions_table
from paywall.reports.tables import MONEY, TEXT, Column, Table
from tests.support.billing_rows import dispute, payment, refund, subscription, utc

UTC = ZoneInfo("UTC")
DANGEROUS = ["=1+1", "+1", "-1+2", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://x")', "-"]


@pytest.mark.parametrize("value", DANGEROUS)
def test_safe_text_neutralises_formula_starts(value: str) -> None:
    assert safe_text(value) == "'" + value


@pytest.mark.parametrize("value", ["Ana", "ana@example.org", "", "1+1", "x=1", "'quoted"])
def test_safe_text_leaves_plain_text(value: str) -> None:
    assert safe_text(value) == value


@given(st.integers(min_value=-(10**15), max_value=10**15), st.sampled_from(["usd", "jpy", "kwd", "eur"]))
def test_major_matches_money_format_major(amount: int, currency: str) -> None:
    assert major(amount, money.exponent(currency)) == money.format_major(amount, currency)


def _table() -> Table:
    rows = [(name, "usd", -1250) for name in DANGEROUS] + [("Bob", "jpy", -500), (None, "kwd", 1234)]
    return Table("t", [Column("name", TEXT), Column("currency"), Column("amount", MONEY)], rows)


def test_csv_neutralises_text_but_keeps_negative_numbers() -> None:
    text = b"".join(csv_chunks(_table(), UTC)).decode()
    assert text.startswith("name,currency,amount\r\n")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    for row, dangerous in zip(rows[1:], DANGEROUS, strict=False):
        assert row[0] == "'" + dangerous
        assert row[2] == "-12.50"
    assert rows[-2] == ["Bob", "jpy", "-500"]
    assert rows[-1] == ["", "kwd", "1.234"]


def test_xlsx_text_is_never_a_formula_and_money_is_numeric(tmp_path: pytest.TempPathFactory) -> None:
    out = io.BytesIO()
    write_xlsx(_table(), out, UTC)
    ws = load_workbook(io.BytesIO(out.getvalue())).active
    assert ws is not None
    rows = list(ws.iter_rows())
    assert ws.freeze_panes == "A2"
    for row, dangerous in zip(rows[1:], DANGEROUS, strict=False):
        assert row[0].data_type == "s"
        assert row[0].value == "'" + dangerous.replace("\r", "") if "\r" not in dangerous else True
        assert row[2].data_type == "n" and Decimal(str(row[2].value)) == Decimal("-12.50")
        assert row[2].number_format == '#,##0.00 "USD"'
    assert (
        Decimal(str(rows[-1][2].value)) == Decimal("1.234") and rows[-1][2].number_format == '#,##0.000 "KWD"'
    )


def test_payments_export_lines_and_injection(
    client: FlaskClient, db: Database, finance_key: dict[str, str]
) -> None:
    with db.transaction() as s:
        p = payment(
            s,
            amount_minor=5000,
            fee_minor=175,
            email="=cmd|' /C calc'!A0",
            name="-Eve",
            campaign="@spring",
            paid_at=utc(2026, 3, 2, 10),
        )
        refund(s, p, amount_minor=1200, stripe_created=utc(2026, 4, 1))
        dispute(s, p, amount_minor=3800, status="needs_response", fee_minor=1500)
        payment(s, amount_minor=700, currency="jpy", fee_minor=None, paid_at=utc(2026, 3, 3))
    resp = client.get("/v1/reports/payments?start=2026-03-01&end=2026-04-01&format=csv", headers=finance_key)
    assert resp.status_code == 200
    assert resp.headers["Cache-Control"] == "no-store"
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True), newline="")))
    assert len(rows) == 2
    first = rows[0]
    assert (
        first["email"] == "'=cmd|' /C calc'!A0"
        and first["name"] == "'-Eve"
        and first["campaign"] == "'@spring"
    )
    assert (first["amount"], first["refunded"], first["disputed"], first["fee"], first["dispute_fee"], first["net"]) == (
        "50.00", "12.00", "38.00", "1.75", "15.00", "-16.75",
    )  # fmt: skip
    assert first["paid_at"] == "2026-03-02T10:00:00+00:00"
    assert rows[1]["fee"] == "" and rows[1]["amount"] == "700" and rows[1]["net"] == "700"
    body = client.get("/v1/reports/payments?start=2026-03-01&end=2026-04-01", headers=finance_key).get_json()
    assert body["rows"][0]["net"] == -1675 and body["rows"][0]["paid_at"] == "2026-03-02T10:00:00Z"
    xlsx = client.get("/v1/reports/payments?start=2026-03-01&end=2026-04-01&format=xlsx", headers=finance_key)
    ws = load_workbook(io.BytesIO(xlsx.get_data())).active
    assert ws is not None
    values = list(ws.iter_rows(values_only=True))
    assert values[1][0] == utc(2026, 3, 2, 10).replace(tzinfo=None)  # Excel: local wall time
    assert values[1][values[0].index("email")] == "'=cmd|' /C calc'!A0"


def test_donors_net_of_refunds_per_currency(
    client: FlaskClient, db: Database, finance_key: dict[str, str]
) -> None:
    with db.transaction() as s:
        payment(s, amount_minor=1000, email="Ana@example.org", name="Ana", paid_at=utc(2026, 1, 5))
        p = payment(s, amount_minor=3000, email="ana@example.org", name="Ana B", paid_at=utc(2026, 6, 5))
        refund(s, p, amount_minor=1000)
        gone = payment(s, amount_minor=500, email="ana@example.org", paid_at=utc(2026, 7, 1))
        refund(s, gone)  # fully refunded: not a gift
        payment(s, amount_minor=2000, currency="eur", email="ana@example.org", paid_at=utc(2026, 2, 1))
        payment(s, amount_minor=5000, email="bo@example.org", name="Bo", paid_at=utc(2026, 3, 1))
        payment(s, amount_minor=9999, email="bo@example.org", paid_at=utc(2025, 12, 31, 23))  # other year
        payment(s, amount_minor=9999, kind="subscription", email="bo@example.org", paid_at=utc(2026, 3, 1))
    body = client.get("/v1/reports/donors?year=2026", headers=finance_key).get_json()
    got = {(r["email"].lower(), r["currency"]): r for r in body["rows"]}
    assert got[("ana@example.org", "usd")]["total"] == 3000
    assert got[("ana@example.org", "usd")]["count"] == 2
    assert got[("ana@example.org", "usd")]["name"] == "Ana B"
    assert got[("ana@example.org", "usd")]["first"] == "2026-01-05T00:00:00Z"
    assert got[("ana@example.org", "usd")]["last"] == "2026-06-05T00:00:00Z"
    assert got[("ana@example.org", "eur")]["total"] == 2000
    assert got[("bo@example.org", "usd")]["total"] == 5000
    assert {t["currency"]: t["total"] for t in body["totals"]} == {"eur": 2000, "usd": 8000}
    bad = client.get("/v1/reports/donors?year=abc", headers=finance_key)
    assert bad.status_code == 422 and "year" in bad.get_json()["errors"]


def test_subscriptions_active_new_churned_mrr(db: Database) -> None:
    with db.transaction() as s:
        subscription(s, amount_minor=800, started_at=utc(2026, 1, 15))  # monthly, still active
        subscription(s, plan="annual", interval="year", amount_minor=9000, started_at=utc(2026, 2, 1))
        subscription(
            s,
            started_at=utc(2026, 1, 20),
            status="canceled",
            canceled_at=utc(2026, 2, 10),
            ended_at=utc(2026, 3, 10),
        )
        subscription(s, started_at=utc(2026, 2, 20), trial_end=utc(2026, 3, 20))  # trial through March 20th
        subscription(s, started_at=utc(2026, 2, 25), status="incomplete_expired")
        subscription(
            s, kind="donation", plan=None, amount_minor=500, currency="eur", started_at=utc(2026, 1, 1)
        )
    with db.transaction(readonly=True) as s:
        table = subscriptions_table(s, Period(dt.date(2026, 1, 1), dt.date(2026, 5, 1), UTC), "month", None)
    rows = {(r[0], r[1], r[2], r[3]): r[4:] for r in table.rows}
    # (active, new, churned, trialing, paused, mrr)
    assert rows[("2026-01", "subscription", "monthly", "usd")] == (2, 2, 0, 0, 0, 1600)
    assert rows[("2026-02", "subscription", "monthly", "usd")] == (2, 0, 0, 1, 0, 1600)
    assert rows[("2026-03", "subscription", "monthly", "usd")] == (2, 1, 1, 0, 0, 1600)
    assert rows[("2026-02", "subscription", "annual", "usd")] == (1, 1, 0, 0, 0, 750)
    assert rows[("2026-04", "donation", "(none)", "eur")] == (1, 0, 0, 0, 0, 500)
    # Active at the end = active at the start + new - churned, for every group.
    by_group: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    for r in table.rows:
        by_group.setdefault(r[1:4], []).append(r)
    for series in by_group.values():
        previous = 0
        for r in series:
            assert r[4] == previous + r[5] - r[6]
            previous = r[4]
    assert {t[3]: t[4] for t in table.totals} == {"usd": 3, "eur": 1}


def test_subscriptions_http(
    client: FlaskClient, finance_key: dict[str, str], make_key: Callable[[str], dict[str, str]]
) -> None:
    resp = client.get(
        "/v1/reports/subscriptions?start=2026-01-01&end=2026-03-01&group_by=week&format=csv",
        headers=finance_key,
    )
    assert resp.status_code == 200 and resp.get_data(as_text=True).startswith(
        "week,kind,plan,currency,active"
    )
    assert 'filename="subscriptions-by-week-2026-01-01_2026-03-01.csv"' in resp.headers["Content-Disposition"]
    assert (
        client.get(
            "/v1/reports/subscriptions?start=2026-01-01&end=2026-03-01&group_by=kind", headers=finance_key
        ).status_code
        == 422
    )


def test_paused_subscriptions_are_counted_apart_from_active_and_out_of_mrr(db: Database) -> None:
    with db.transaction() as s:
        subscription(s, started_at=utc(2026, 1, 5))  # paying throughout
        # The portal's pause from Feb 10th, no end: Stripe's status stays active.
        subscription(
            s,
            started_at=utc(2026, 1, 5),
            pause_collection_behavior="mark_uncollectible",
            paused_at=utc(2026, 2, 10),
        )
        # Paused Feb 20th, resuming Mar 15th.
        subscription(
            s,
            started_at=utc(2026, 1, 5),
            pause_collection_behavior="void",
            paused_at=utc(2026, 2, 20),
            pause_collection_resumes_at=utc(2026, 3, 15),
        )
        # A trial that ended on Feb 5th without a payment method: status paused.
        subscription(
            s,
            started_at=utc(2026, 1, 22),
            trial_end=utc(2026, 2, 5),
            status="paused",
            paused_at=utc(2026, 2, 5),
        )
    with db.transaction(readonly=True) as s:
        table = subscriptions_table(s, Period(dt.date(2026, 1, 1), dt.date(2026, 4, 1), UTC), "month", None)
    assert [c.key for c in table.columns][4:] == ["active", "new", "churned", "trialing", "paused", "mrr"]
    # (active, new, churned, trialing, paused, mrr)
    assert [r[4:] for r in table.rows] == [
        (3, 3, 0, 1, 0, 2400),
        (1, 1, 0, 0, 3, 800),
        (2, 0, 0, 0, 2, 1600),
    ]
    # Active + paused at the end = active + paused at the start + new - churned.
    previous = 0
    for r in table.rows:
        assert r[4] + r[8] == previous + r[5] - r[6]
        previous = r[4] + r[8]
    assert [t[4:] for t in table.totals] == [(2, 4, 0, 0, 2, 1600)]
