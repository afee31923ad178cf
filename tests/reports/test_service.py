"""What every download says about itself: file name, first column, filters (service.report_table)."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from flask.testing import FlaskClient
from openpyxl import load_workbook

from paywall.db import Database
from paywall.models import CheckoutSession
from paywall.reports.service import filename
from tests.support.billing_rows import payment, refund, subscription, utc

PERIOD = "start=2026-03-01&end=2026-04-01&livemode=all"


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("revenue", {"group_by": "plan"}, "revenue-by-plan-2026-01-01_2027-01-01.csv"),
        (
            "payments",
            {"currency": "EUR", "kind": "donation"},
            "payments-eur-donation-2026-01-01_2027-01-01.csv",
        ),
        ("donors", {"year": 2026, "start": None}, "donors-2026.csv"),
    ],
)
def test_file_names_say_report_grouping_filters_and_period(
    name: str, args: dict[str, object], expected: str
) -> None:
    period = {"start": dt.date(2026, 1, 1), "end": dt.date(2027, 1, 1)}
    assert filename(name, period | args if "year" not in args else args, "csv") == expected


def _history(db: Database) -> None:
    with db.transaction() as s:
        p = payment(s, amount_minor=4000, kind="subscription", plan="monthly", campaign="spring")
        refund(s, p, amount_minor=500)
        payment(s, amount_minor=2500, kind="donation", plan=None, campaign=None, paid_at=utc(2026, 3, 12))
        payment(s, amount_minor=3000, currency="jpy", kind="donation", paid_at=utc(2026, 3, 14))
        subscription(s, started_at=utc(2026, 3, 2))
        s.add(
            CheckoutSession(
                stripe_checkout_session_id="cs_test_service_1",
                mode="payment",
                status="complete",
                kind="donation",
                campaign="spring",
                amount_total=2500,
                currency="usd",
                completed_at=utc(2026, 3, 12),
            )
        )


@pytest.mark.parametrize(
    ("query", "name", "first"),
    [
        ("revenue?group_by=plan", "revenue-by-plan-2026-03-01_2026-04-01", "plan"),
        ("revenue?group_by=campaign", "revenue-by-campaign-2026-03-01_2026-04-01", "campaign"),
        ("revenue?group_by=week", "revenue-by-week-2026-03-01_2026-04-01", "week"),
        ("subscriptions?group_by=day", "subscriptions-by-day-2026-03-01_2026-04-01", "day"),
        ("payments?kind=donation", "payments-donation-2026-03-01_2026-04-01", "paid_at"),
        ("donors?currency=usd", "donors-usd-2026-03-01_2026-04-01", "email"),
        ("campaigns?kind=subscription", "campaigns-subscription-2026-03-01_2026-04-01", "campaign"),
    ],
)
@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_each_report_names_its_file_and_first_column(
    client: FlaskClient,
    db: Database,
    finance_key: dict[str, str],
    query: str,
    name: str,
    first: str,
    fmt: str,
) -> None:
    _history(db)
    resp = client.get(f"/v1/reports/{query}&{PERIOD}&format={fmt}", headers=finance_key)
    assert resp.status_code == 200, resp.get_data()[:300]
    assert f'filename="{name}.{fmt}"' in resp.headers["Content-Disposition"]
    if fmt == "csv":
        header = next(csv.reader(io.StringIO(resp.get_data(as_text=True), newline="")))
    else:
        ws = load_workbook(io.BytesIO(resp.get_data())).active
        assert ws is not None
        header = [c.value for c in next(ws.iter_rows(max_row=1))]
    assert header[0] == first


def test_no_plan_or_campaign_reads_none_and_filters_apply(
    client: FlaskClient, db: Database, finance_key: dict[str, str]
) -> None:
    _history(db)
    base = f"/v1/reports/revenue?{PERIOD}&format=csv"
    text = client.get(base + "&group_by=plan", headers=finance_key).get_data(as_text=True)
    assert "(none),usd,25.00,0.00,0.00,0.59,24.41,1" in text.split("\r\n")
    assert "\r\n,usd" not in text  # no blank label
    only_donations = client.get(
        f"/v1/reports/revenue?{PERIOD}&group_by=campaign&kind=donation", headers=finance_key
    )
    rows = only_donations.get_json()["rows"]
    assert {(r["period"], r["currency"], r["gross"], r["refunds"]) for r in rows} == {
        ("(none)", "usd", 2500, 0),
        ("(none)", "jpy", 3000, 0),
    }
    usd = client.get(
        f"/v1/reports/revenue?{PERIOD}&currency=usd&kind=subscription", headers=finance_key
    ).get_json()
    assert [(t["currency"], t["gross"], t["refunds"]) for t in usd["totals"]] == [("usd", 4000, 500)]
    assert usd["currency"] == "usd" and usd["kind"] == "subscription"
    # A form's empty select means all.
    everything = client.get(f"/v1/reports/payments?{PERIOD}&currency=&kind=", headers=finance_key).get_json()
    assert len(everything["rows"]) == 3


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("revenue?start=2026-03-01&end=2026-04-01&currency=dollars", "currency"),
        ("payments?start=2026-03-01&end=2026-04-01&kind=gift", "kind"),
        ("donors?year=2026&start=2026-01-01&end=2026-02-01", "year"),
        ("donors?start=2026-01-01", "end"),
        ("donors?format=csv", "year"),
        ("campaigns?start=2026-03-01&end=2026-03-01", "end"),
    ],
)
def test_bad_filters_are_422_naming_the_field(
    client: FlaskClient, finance_key: dict[str, str], query: str, field: str
) -> None:
    resp = client.get(f"/v1/reports/{query}", headers=finance_key)
    assert resp.status_code == 422
    assert field in resp.get_json()["errors"]


@pytest.mark.parametrize(
    "query",
    [
        "revenue?group_by=plan",
        "subscriptions?group_by=month",
        "payments?kind=donation",
        "donors?currency=usd",
        "campaigns?currency=usd",
    ],
)
def test_json_answers_match_the_openapi_description(
    client: FlaskClient, db: Database, finance_key: dict[str, str], query: str
) -> None:
    # schemathesis's validator (the contract test validates with it too).
    import jsonschema_rs

    _history(db)
    spec = client.get("/openapi.json").get_json()
    path = "/v1/reports/" + query.split("?")[0]
    schema = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    body = client.get(f"/v1/reports/{query}&{PERIOD}", headers=finance_key).get_json()
    jsonschema_rs.validate(schema, body)
    assert body["rows"], query


def test_payments_export_ends_with_the_appeal_it_was_attributed_to(
    client: FlaskClient, db: Database, finance_key: dict[str, str]
) -> None:
    """The three appeal columns come last in every format (earlier columns keep their places)."""
    with db.transaction() as s:
        payment(
            s,
            amount_minor=2500,
            appeal_experiment="footer-copy",
            appeal_variant="urgent",
            appeal_channel="footer",
        )
        payment(s, amount_minor=1000, paid_at=utc(2026, 3, 11))
    base = f"/v1/reports/payments?{PERIOD}"
    rows = client.get(base, headers=finance_key).get_json()["rows"]
    assert [(r["appeal_experiment"], r["appeal_variant"], r["appeal_channel"]) for r in rows] == [
        ("footer-copy", "urgent", "footer"),
        (None, None, None),
    ]
    lines = list(
        csv.reader(io.StringIO(client.get(base + "&format=csv", headers=finance_key).get_data(as_text=True)))
    )
    assert lines[0][-4:] == ["unmatched", "appeal_experiment", "appeal_variant", "appeal_channel"]
    assert lines[1][-3:] == ["footer-copy", "urgent", "footer"] and lines[2][-3:] == ["", "", ""]
    ws = load_workbook(io.BytesIO(client.get(base + "&format=xlsx", headers=finance_key).get_data())).active
    assert ws is not None
    cells = [[c.value for c in row] for row in ws.iter_rows(max_row=2)]
    assert cells[0][-3:] == ["appeal_experiment", "appeal_variant", "appeal_channel"]
    assert cells[1][-3:] == ["footer-copy", "urgent", "footer"]
