"""Campaign results: starts per campaign and currency, from the shared Checkout scenarios and from rows."""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from click.testing import CliRunner
from flask.testing import FlaskClient
from openpyxl import load_workbook
from sqlalchemy.orm import Session

from paywall.cli import main
from paywall.db import Database
from paywall.models import CheckoutSession
from paywall.reports.campaigns import campaigns_table
from paywall.reports.periods import Period
from tests.support.billing_rows import utc
from tests.support.stripe_events import deliver_all, load_scenario

UTC = ZoneInfo("UTC")
SEPTEMBER = "start=2026-09-01&end=2026-10-01&livemode=all"
_ids = itertools.count(1)


def _started(session: Session, **kw: Any) -> CheckoutSession:
    """A completed Checkout Session as the sync stores it (checkout_sessions.campaign from metadata)."""
    values: dict[str, Any] = {
        "stripe_checkout_session_id": f"cs_test_{next(_ids)}",
        "mode": "payment",
        "status": "complete",
        "payment_status": "paid",
        "kind": "donation",
        "amount_total": 1000,
        "currency": "usd",
        "completed_at": utc(2026, 3, 10, 12),
        "livemode": False,
    }
    values.update(kw)
    row = CheckoutSession(**values)
    session.add(row)
    session.flush()
    return row


def test_scenarios_give_each_campaign_its_starts(client: FlaskClient, finance_key: dict[str, str]) -> None:
    """monthly_subscription_checkout: 15.00 USD, subscription mode, no campaign; one_time_donation_checkout:
    50.00 USD donation, metadata.campaign = fall-appeal-2026 (both September 2026)."""
    deliver_all(client, load_scenario("monthly_subscription_checkout"))
    deliver_all(client, load_scenario("one_time_donation_checkout"))
    body = client.get(f"/v1/reports/campaigns?{SEPTEMBER}", headers=finance_key).get_json()
    assert body["report"] == "campaigns"
    assert body["rows"] == [
        {"campaign": "fall-appeal-2026", "currency": "usd", "donations": 1, "subscriptions": 0, "count": 1,
         "recurring": 0, "recurring_share": 0.0, "total": 5000, "average": 5000},
        {"campaign": "(none)", "currency": "usd", "donations": 0, "subscriptions": 1, "count": 1,
         "recurring": 1, "recurring_share": 1.0, "total": 1500, "average": 1500},
    ]  # fmt: skip
    assert body["totals"] == [
        {"campaign": "total", "currency": "usd", "donations": 1, "subscriptions": 1, "count": 2,
         "recurring": 1, "recurring_share": 0.5, "total": 6500, "average": 3250},
    ]  # fmt: skip
    resp = client.get(f"/v1/reports/campaigns?{SEPTEMBER}&format=csv", headers=finance_key)
    assert 'filename="campaigns-2026-09-01_2026-10-01.csv"' in resp.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(resp.get_data(as_text=True), newline="")))
    assert rows[0][0] == "campaign" and rows[1][:2] == ["fall-appeal-2026", "usd"]
    assert rows[1][-2:] == ["50.00", "50.00"] and rows[3][6] == "0.5"
    xlsx = client.get(f"/v1/reports/campaigns?{SEPTEMBER}&format=xlsx", headers=finance_key)
    ws = load_workbook(io.BytesIO(xlsx.get_data())).active
    assert ws is not None
    values = list(ws.iter_rows(values_only=True))
    assert values[2][0] == "(none)" and Decimal(str(values[2][7])) == Decimal("15.00")
    assert values[3][6] == 0.5 and ws["H2"].number_format == '#,##0.00 "USD"'


def test_average_rounds_once_currencies_stay_apart_and_filters_apply(db: Database) -> None:
    with db.transaction() as s:
        for amount in (1000, 1000, 1001):  # 30.01 / 3 = 10.003... -> 10.00
            _started(s, campaign="spring", amount_total=amount)
        _started(
            s, campaign="spring", kind="donation", mode="subscription", amount_total=500
        )  # recurring gift
        _started(s, campaign="spring", currency="JPY", amount_total=3000)
        _started(s, campaign="spring", status="expired", amount_total=9999)  # never completed
        _started(s, campaign="spring", completed_at=utc(2026, 4, 1))  # the next period
        _started(s, campaign="spring", livemode=True)
    period = Period(dt.date(2026, 3, 1), dt.date(2026, 4, 1), UTC)
    with db.transaction(readonly=True) as s:
        rows = {r[:2]: r[2:] for r in campaigns_table(s, period, False).rows}
        recurring_only = campaigns_table(s, period, False, kind="subscription").rows
    # donations, subscriptions, count, recurring, share, total, average
    assert rows[("spring", "usd")] == (4, 0, 4, 1, 0.25, 3501, 875)
    assert rows[("spring", "jpy")] == (1, 0, 1, 0, 0.0, 3000, 3000)
    assert recurring_only == []


def test_the_currency_filter_keeps_one_currency(
    db: Database, client: FlaskClient, finance_key: dict[str, str]
) -> None:
    with db.transaction() as s:
        _started(s, campaign="spring", currency="eur", amount_total=700)
        _started(s, campaign="spring", amount_total=900)
    query = "/v1/reports/campaigns?start=2026-03-01&end=2026-04-01&livemode=all&currency=EUR"
    body = client.get(query, headers=finance_key).get_json()
    assert [r["currency"] for r in body["rows"] + body["totals"]] == ["eur", "eur"]
    assert body["currency"] == "eur"


def test_cli_twin_takes_the_same_filters(
    runner: CliRunner, db: Database, client: FlaskClient, finance_key: dict[str, str]
) -> None:
    with db.transaction() as s:
        _started(s, campaign="spring", amount_total=700, currency="eur")
        _started(s, campaign="spring", mode="subscription", kind="subscription", amount_total=900)
        _started(s, campaign="autumn", amount_total=300)
    period = ["--start", "2026-03-01", "--end", "2026-04-01", "--livemode", "all"]
    result = runner.invoke(main, ["report", "campaigns", *period, "--currency", "usd", "--kind", "donation"])
    assert result.exit_code == 0, result.output
    query = "start=2026-03-01&end=2026-04-01&livemode=all&currency=usd&kind=donation&format=csv"
    http = client.get(f"/v1/reports/campaigns?{query}", headers=finance_key).get_data()
    assert result.stdout_bytes == http
    assert http.decode().split("\r\n")[1].startswith("autumn,usd,1,0,1,0,0.0,3.00,3.00")
    donors = runner.invoke(main, ["report", "donors", *period, "--format", "json"])
    assert donors.exit_code == 0, donors.output
    bad = runner.invoke(main, ["report", "campaigns", *period, "--currency", "dollars"])
    assert bad.exit_code == 2 and "--currency" in bad.output
