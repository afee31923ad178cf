"""The revenue report: known totals, period rules, currencies, time zones, modes, HTTP and CLI."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from openpyxl import load_workbook

from paywall.app import create_app
from paywall.cli import main
from paywall.config import Settings
from paywall.db import Database
from paywall.reports.periods import Period, offset_changes
from paywall.reports.revenue import revenue_report
from tests.support.billing_rows import dispute, payment, refund, utc

UTC = ZoneInfo("UTC")


def _history(db: Database) -> None:
    """A small history with known totals (see test_known_totals)."""
    with db.transaction() as s:
        # March: two USD donations, one refunded in April; a EUR subscription payment.
        a = payment(s, amount_minor=2500, fee_minor=103, paid_at=utc(2026, 3, 3, 9), campaign="spring")
        payment(s, amount_minor=1000, fee_minor=59, paid_at=utc(2026, 3, 31, 23, 59), campaign="spring")
        payment(
            s,
            amount_minor=900,
            currency="eur",
            fee_minor=38,
            kind="subscription",
            plan="monthly",
            paid_at=utc(2026, 3, 5),
        )
        refund(s, a, amount_minor=500, stripe_created=utc(2026, 4, 2))
        # A failed refund returned nothing.
        refund(s, a, amount_minor=2000, status="failed", stripe_created=utc(2026, 4, 3))
        # April: a JPY donation (no decimals) disputed and lost, a USD one disputed and won.
        j = payment(s, amount_minor=3000, currency="jpy", fee_minor=108, paid_at=utc(2026, 4, 10))
        dispute(s, j, fee_minor=2000, opened_at=utc(2026, 4, 20))
        w = payment(s, amount_minor=4000, fee_minor=146, paid_at=utc(2026, 4, 11))
        dispute(
            s,
            w,
            status="won",
            fee_minor=1500,
            opened_at=utc(2026, 5, 1),
            funds_reinstated_at=utc(2026, 5, 30),
        )
        # Outside [March, May): ignored.
        payment(s, amount_minor=99999, paid_at=utc(2026, 5, 1))
        payment(s, amount_minor=99999, paid_at=utc(2026, 2, 28, 23, 59, 59))


def _rows(report: Any) -> dict[tuple[str | None, str], dict[str, Any]]:
    return {(r.period, r.currency): r.as_dict() for r in report.rows}


def test_known_totals(db: Database) -> None:
    _history(db)
    period = Period(dt.date(2026, 3, 1), dt.date(2026, 5, 1), UTC)
    with db.transaction(readonly=True) as s:
        report = revenue_report(s, period, "month")
    rows = _rows(report)
    assert rows[("2026-03", "usd")] == {
        "period": "2026-03", "currency": "usd", "gross": 3500, "refunds": 0, "disputes": 0,
        "fees": 162, "net": 3338, "payments": 2,
    }  # fmt: skip
    # The refund counts in April, when it was made; the failed one not at all.
    assert rows[("2026-04", "usd")] == {
        "period": "2026-04", "currency": "usd", "gross": 4000, "refunds": 500, "disputes": 0,
        "fees": 146, "net": 3354, "payments": 1,
    }  # fmt: skip
    assert rows[("2026-04", "jpy")]["disputes"] == 3000
    assert rows[("2026-04", "jpy")]["fees"] == 2108
    assert rows[("2026-04", "jpy")]["net"] == 3000 - 3000 - 2108
    assert rows[("2026-03", "eur")]["net"] == 862
    # Every month appears for every currency, zeros included.
    assert rows[("2026-03", "jpy")]["gross"] == 0
    totals = {t.currency: t.as_dict() for t in report.totals}
    assert totals["usd"]["gross"] == 7500 and totals["usd"]["net"] == 3338 + 3354
    assert totals["jpy"]["payments"] == 1
    assert set(totals) == {"eur", "jpy", "usd"}


def test_won_dispute_not_lost_but_fee_counts(db: Database) -> None:
    _history(db)
    with db.transaction(readonly=True) as s:
        report = revenue_report(s, Period(dt.date(2026, 5, 1), dt.date(2026, 6, 1), UTC), "month")
    usd = _rows(report)[("2026-05", "usd")]
    assert usd["disputes"] == 0
    # The won dispute's fee still counts (in the month it opened), plus the May 1st payment's fee.
    assert usd["fees"] == 1500 + 59
    assert usd["gross"] == 99999


def test_group_by_kind_and_campaign(db: Database) -> None:
    _history(db)
    period = Period(dt.date(2026, 3, 1), dt.date(2026, 5, 1), UTC)
    with db.transaction(readonly=True) as s:
        by_kind = _rows(revenue_report(s, period, "kind"))
        by_campaign = _rows(revenue_report(s, period, "campaign"))
    assert by_kind[("subscription", "eur")]["gross"] == 900
    assert by_kind[("donation", "usd")]["refunds"] == 500
    assert by_campaign[("spring", "usd")]["gross"] == 3500
    assert by_campaign[("spring", "usd")]["refunds"] == 500
    assert by_campaign[("(none)", "usd")]["gross"] == 4000


def test_fees_in_balance_currency_stay_in_that_currency(db: Database) -> None:
    with db.transaction() as s:
        # A EUR charge settled in USD: the fee is USD money and never leaves EUR's net.
        payment(
            s,
            amount_minor=1000,
            currency="eur",
            balance_currency="usd",
            fee_minor=61,
            paid_at=utc(2026, 3, 3),
        )
    with db.transaction(readonly=True) as s:
        rows = _rows(revenue_report(s, Period(dt.date(2026, 3, 1), dt.date(2026, 4, 1), UTC), "month"))
    assert rows[("2026-03", "eur")]["net"] == 1000
    assert rows[("2026-03", "usd")] | {} == {
        "period": "2026-03", "currency": "usd", "gross": 0, "refunds": 0, "disputes": 0, "fees": 61,
        "net": -61, "payments": 0,
    }  # fmt: skip


@pytest.mark.parametrize("dialect_free", [True])
def test_time_zone_buckets_follow_local_midnight_and_dst(db: Database, dialect_free: bool) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    with db.transaction() as s:
        # 2026-03-31 22:30 UTC is already April 1st in Berlin (CEST, UTC+2).
        payment(s, amount_minor=100, paid_at=utc(2026, 3, 31, 22, 30))
        # 2026-03-29 00:30 UTC: the DST night, 01:30 CET (UTC+1) on March 29th.
        payment(s, amount_minor=200, paid_at=utc(2026, 3, 29, 0, 30))
        # 2026-10-25 22:59 UTC: after the change back (CET), 23:59 on October 25th.
        payment(s, amount_minor=400, paid_at=utc(2026, 10, 25, 22, 59))
        # 2026-02-28 23:00 UTC is March 1st 00:00 in Berlin: inside [March 1, ...).
        payment(s, amount_minor=800, paid_at=utc(2026, 2, 28, 23, 0))
    period = Period(dt.date(2026, 3, 1), dt.date(2026, 11, 1), berlin)
    with db.transaction(readonly=True) as s:
        months = _rows(revenue_report(s, period, "month"))
        days = _rows(revenue_report(s, period, "day"))
        weeks = _rows(revenue_report(s, period, "week"))
    assert months[("2026-03", "usd")]["gross"] == 1000
    assert months[("2026-04", "usd")]["gross"] == 100
    assert months[("2026-10", "usd")]["gross"] == 400
    assert days[("2026-04-01", "usd")]["gross"] == 100
    assert days[("2026-03-29", "usd")]["gross"] == 200
    assert days[("2026-10-25", "usd")]["gross"] == 400
    assert days[("2026-03-01", "usd")]["gross"] == 800
    assert weeks[("2026-W13", "usd")]["gross"] == 200  # Sunday March 29th belongs to ISO week 13
    assert weeks[("2026-W14", "usd")]["gross"] == 100
    assert sum(r["gross"] for r in days.values()) == 1500


def test_offset_changes_finds_dst_transitions() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    changes = offset_changes(berlin, utc(2026, 1, 1), utc(2027, 1, 1))
    assert changes == [(utc(2026, 1, 1), 3600), (utc(2026, 3, 29, 1), 7200), (utc(2026, 10, 25, 1), 3600)]


def test_livemode_filter_follows_the_configured_key(
    db: Database, make_settings: Callable[..., Settings], finance_key: dict[str, str]
) -> None:
    with db.transaction() as s:
        payment(s, amount_minor=100, livemode=True)
        payment(s, amount_minor=7, livemode=False)
    query = "/v1/reports/revenue?start=2026-03-01&end=2026-04-01"

    def gross(env: dict[str, str], extra: str = "") -> int:
        app = create_app(make_settings(env), db=db)
        body = app.test_client().get(query + extra, headers=finance_key).get_json()
        return sum(t["gross"] for t in body["totals"])

    assert gross({"PAYWALL_STRIPE_SECRET_KEY": "sk_live_x"}) == 100
    assert gross({"PAYWALL_STRIPE_SECRET_KEY": "sk_test_x"}) == 7
    assert gross({}) == 107
    assert gross({"PAYWALL_STRIPE_SECRET_KEY": "sk_live_x"}, "&livemode=all") == 107
    assert gross({}, "&livemode=test") == 7


def test_http_json_csv_xlsx(client: FlaskClient, db: Database, finance_key: dict[str, str]) -> None:
    _history(db)
    base = "/v1/reports/revenue?start=2026-03-01&end=2026-05-01"
    resp = client.get(base, headers=finance_key)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["report"] == "revenue" and body["timezone"] == "UTC" and body["group_by"] == "month"
    usd = next(r for r in body["rows"] if r["period"] == "2026-04" and r["currency"] == "usd")
    assert usd["net"] == 3354 and isinstance(usd["net"], int)

    resp = client.get(base + "&format=csv", headers=finance_key)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/csv")
    assert 'filename="revenue-by-month-2026-03-01_2026-05-01.csv"' in resp.headers["Content-Disposition"]
    lines = resp.get_data(as_text=True).split("\r\n")
    assert lines[0] == "month,currency,gross,refunds,disputes,fees,net,payments"
    assert "2026-04,usd,40.00,5.00,0.00,1.46,33.54,1" in lines
    assert "2026-04,jpy,3000,0,3000,2108,-2108,1" in lines
    assert "total,usd,75.00,5.00,0.00,3.08,66.92,3" in lines

    resp = client.get(base + "&format=xlsx", headers=finance_key)
    assert resp.status_code == 200
    ws = load_workbook(io.BytesIO(resp.get_data())).active
    assert ws is not None
    values = list(ws.iter_rows(values_only=True))
    assert values[0] == ("month", "currency", "gross", "refunds", "disputes", "fees", "net", "payments")
    april_usd = next(r for r in values if r[0] == "2026-04" and r[1] == "usd")
    assert Decimal(str(april_usd[6])) == Decimal("33.54")
    assert ws.freeze_panes == "A2"
    cells = {
        c.value: c for c in next(r for r in ws.iter_rows() if r[0].value == "2026-04" and r[1].value == "jpy")
    }
    assert cells[-2108].number_format == '#,##0 "JPY"'


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("start=2026-13-01&end=2026-05-01", "start"),
        ("start=2026-03-01&end=2026-03-01", "end"),
        ("start=2026-03-01&end=2026-02-01", "end"),
        ("start=2026-03-01", "end"),
        ("start=2026-03-01&end=2026-05-01&group_by=year", "group_by"),
        ("start=2026-03-01&end=2026-05-01&format=pdf", "format"),
        ("start=2026-03-01&end=2026-05-01&livemode=maybe", "livemode"),
        ("start=2026-03-01&end=2026-05-01&colour=red", "colour"),
        ("start=0001-01-01&end=2026-05-01", "start"),
        ("start=2000-01-01&end=2030-01-02", "end"),
    ],
)
def test_bad_parameters_are_422_naming_the_field(
    client: FlaskClient, finance_key: dict[str, str], query: str, field: str
) -> None:
    resp = client.get(f"/v1/reports/revenue?{query}", headers=finance_key)
    assert resp.status_code == 422
    assert field in resp.get_json()["errors"]


def test_roles(client: FlaskClient, make_key: Callable[[str], dict[str, str]]) -> None:
    url = "/v1/reports/revenue?start=2026-03-01&end=2026-05-01"
    assert client.get(url).status_code == 401
    assert client.get(url, headers=make_key("site")).status_code == 403
    assert client.get(url, headers=make_key("finance")).status_code == 200
    assert client.get(url, headers=make_key("admin")).status_code == 200
    for report in ("subscriptions", "payments"):
        assert (
            client.get(
                f"/v1/reports/{report}?start=2026-03-01&end=2026-05-01", headers=make_key("site")
            ).status_code
            == 403
        )
    assert client.get("/v1/reports/donors?year=2026", headers=make_key("site")).status_code == 403


def test_cli_twin_gives_the_same_rows(
    runner: CliRunner, db: Database, client: FlaskClient, finance_key: dict[str, str], tmp_path: Any
) -> None:
    _history(db)
    args = ["report", "revenue", "--start", "2026-03-01", "--end", "2026-05-01"]
    result = runner.invoke(main, [*args, "--format", "csv"])
    assert result.exit_code == 0, result.output
    http = client.get("/v1/reports/revenue?start=2026-03-01&end=2026-05-01&format=csv", headers=finance_key)
    assert result.stdout_bytes == http.get_data()
    out = tmp_path / "r.json"
    result = runner.invoke(main, [*args, "--format", "json", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["rows"] == http_json(client, finance_key)["rows"]
    bad = runner.invoke(main, ["report", "revenue", "--start", "2026-03-01", "--end", "2026-02-01"])
    assert bad.exit_code == 2 and "--end" in bad.output


def http_json(client: FlaskClient, key: dict[str, str]) -> Any:
    return client.get("/v1/reports/revenue?start=2026-03-01&end=2026-05-01", headers=key).get_json()


def test_app_fixture_is_flask(app: Flask) -> None:
    assert "reports.revenue" in app.view_functions


def test_fixed_offset_zone(db: Database) -> None:
    tokyo = ZoneInfo("Asia/Tokyo")  # UTC+9 all year
    with db.transaction() as s:
        payment(s, amount_minor=100, paid_at=utc(2026, 3, 31, 15, 30))  # April 1st, 00:30 in Tokyo
        payment(s, amount_minor=200, paid_at=utc(2026, 3, 31, 14, 59))  # March 31st, 23:59
    with db.transaction(readonly=True) as s:
        months = _rows(revenue_report(s, Period(dt.date(2026, 3, 1), dt.date(2026, 5, 1), tokyo), "month"))
    assert months[("2026-03", "usd")]["gross"] == 200
    assert months[("2026-04", "usd")]["gross"] == 100
