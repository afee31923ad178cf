"""Known totals: the shared Stripe scenarios, delivered through the webhook endpoint, then reported.

The expected figures are read off the scenario files (fixtures/stripe/scenarios), not off our code:
- monthly_subscription_checkout: monthly plan, ch_1uTR… 15.00 USD on 2026-09-01
- one_time_donation_checkout: one-time donation, ch_1CqR… 50.00 USD on 2026-09-05
- renewal_failed_then_recovered (after the monthly checkout): renewal 15.00 on 2026-10-01; a failed
  charge on 2026-11-01; recovered 15.00 on 2026-11-04
- cancel_at_period_end_then_deleted (after the monthly checkout): no new money
- donation_refund (after the donation): the donation refunded in full on 2026-09-08
- dispute_lost (after the donation): disputed on 2026-09-25 and lost; Stripe's dispute fee 15.00
- upgrade_with_proration (after the monthly checkout): a 7.50 USD proration charge on 2026-09-16
- annual_trial_eur: annual plan in EUR after a trial, 120.00 EUR on 2026-09-24
- partial_refund_on_the_charge_only (after the donation): 20.00 of the donation refunded on
  2026-09-08, known only from charge.refunded
"""

from __future__ import annotations

import copy
import csv
import io
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from paywall.db import Database
from paywall.models import Payment, Refund
from tests.support.stripe_events import deliver_all, load_scenario, scenario_file

QUERY = "/v1/reports/revenue?start=2026-08-01&end=2027-01-01&livemode=all"

# scenario -> {currency: (gross, refunds, disputes, fees, net, payments)} over the whole period
EXPECTED: dict[str, dict[str, tuple[int, int, int, int, int, int]]] = {
    "monthly_subscription_checkout": {"usd": (1500, 0, 0, 0, 1500, 1)},
    "one_time_donation_checkout": {"usd": (5000, 0, 0, 0, 5000, 1)},
    "renewal_failed_then_recovered": {"usd": (4500, 0, 0, 0, 4500, 3)},
    "cancel_at_period_end_then_deleted": {"usd": (1500, 0, 0, 0, 1500, 1)},
    "donation_refund": {"usd": (5000, 5000, 0, 0, 0, 1)},
    "dispute_lost": {"usd": (5000, 0, 5000, 1500, -1500, 1)},
    "upgrade_with_proration": {"usd": (2250, 0, 0, 0, 2250, 2)},
    "annual_trial_eur": {"eur": (12000, 0, 0, 0, 12000, 1)},
    "partial_refund_on_the_charge_only": {"usd": (5000, 2000, 0, 0, 3000, 1)},
}
KEYS = ("gross", "refunds", "disputes", "fees", "net", "payments")


def _totals(body: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    return {t["currency"]: tuple(t[k] for k in KEYS) for t in body["totals"]}


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_scenario_totals(client: FlaskClient, finance_key: dict[str, str], scenario: str) -> None:
    deliver_all(client, load_scenario(scenario))
    body = client.get(QUERY, headers=finance_key).get_json()
    assert _totals(body) == EXPECTED[scenario]
    # The payments export adds up to the same gross, refunds and disputes.
    rows = client.get(QUERY.replace("revenue", "payments"), headers=finance_key).get_json()["rows"]
    for currency, expected in EXPECTED[scenario].items():
        mine = [r for r in rows if r["currency"] == currency]
        assert sum(r["amount"] for r in mine) == expected[0]
        assert sum(r["refunded"] for r in mine) == expected[1]
        assert sum(r["disputed"] for r in mine) == expected[2]
        assert sum((r["fee"] or 0) + r["dispute_fee"] for r in mine) == expected[3]


def test_each_month_gets_its_own_money(client: FlaskClient, finance_key: dict[str, str]) -> None:
    # Each after its base: the monthly checkout, then the donation.
    deliver_all(client, load_scenario("renewal_failed_then_recovered"))
    deliver_all(client, load_scenario("donation_refund"))
    body = client.get(QUERY, headers=finance_key).get_json()
    months = {
        r["period"]: (r["gross"], r["refunds"], r["payments"]) for r in body["rows"] if r["currency"] == "usd"
    }
    assert months == {
        "2026-08": (0, 0, 0),
        "2026-09": (6500, 5000, 2),
        "2026-10": (1500, 0, 1),
        "2026-11": (1500, 0, 1),
        "2026-12": (0, 0, 0),
    }


def test_annual_trial_subscription_and_donor(client: FlaskClient, finance_key: dict[str, str]) -> None:
    deliver_all(client, load_scenario("annual_trial_eur"))
    deliver_all(client, load_scenario("one_time_donation_checkout"))
    subs = client.get(
        "/v1/reports/subscriptions?start=2026-08-01&end=2027-01-01&livemode=all", headers=finance_key
    ).get_json()
    eur = [r for r in subs["rows"] if r["currency"] == "eur"]
    assert eur, subs
    # 120.00 EUR a year is 10.00 EUR of MRR once the trial is over.
    assert eur[-1]["active"] == 1 and eur[-1]["mrr"] == 1000
    donors = client.get("/v1/reports/donors?year=2026&livemode=all", headers=finance_key).get_json()
    assert [(d["currency"], d["total"], d["count"]) for d in donors["rows"]] == [("usd", 5000, 1)]


def _rows_for(client: FlaskClient, finance_key: dict[str, str], report: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = client.get(QUERY.replace("revenue", report), headers=finance_key).get_json()[
        "rows"
    ]
    return rows


def _refunds_everywhere(client: FlaskClient, finance_key: dict[str, str], db: Database) -> dict[str, Any]:
    """The refunded amount of the b donation as each consumer sees it."""
    body = client.get(QUERY, headers=finance_key).get_json()
    months = {r["period"]: r["refunds"] for r in body["rows"] if r["currency"] == "usd" and r["refunds"]}
    (line,) = _rows_for(client, finance_key, "payments")
    csv_text = client.get(QUERY.replace("revenue", "payments") + "&format=csv", headers=finance_key).text
    (csv_line,) = list(csv.DictReader(io.StringIO(csv_text)))
    with db.transaction(readonly=True) as s:
        (p,) = s.scalars(select(Payment))
        row_refunded = p.refunded_minor
    return {
        "report": _totals(body)["usd"][1],
        "months": months,
        "export": line["refunded"],
        "csv": csv_line["refunded"],
        "payment": row_refunded,
    }


def test_refund_known_only_from_charge_counts_in_revenue(
    client: FlaskClient, finance_key: dict[str, str], db: Database
) -> None:
    # b, then i: one charge.refunded (2000 of 5000) and no refund.* event (a pre-2024-10-28 endpoint).
    deliver_all(client, load_scenario("partial_refund_on_the_charge_only"))
    assert _refunds_everywhere(client, finance_key, db) == {
        "report": 2000,
        "months": {"2026-09": 2000},
        "export": 2000,
        "csv": "20.00",
        "payment": 2000,
    }


def _partial_refund_objects() -> list[dict[str, Any]]:
    """donation_refund's refund events (refund.created, refund.updated, charge.refund.updated) for
    partial_refund_on_the_charge_only's partial refund: the same refund, 2000 of the 5000 donation."""
    events = copy.deepcopy(
        [e for e in scenario_file("donation_refund") if e["data"]["object"]["object"] == "refund"]
    )
    for e in events:
        e["id"] += "_partial"
        e["data"]["object"]["amount"] = 2000
    return events


@pytest.mark.parametrize("order", ["charge first", "refund first", "interleaved"])
def test_partial_refund_from_charge_and_refund_object_counts_once(
    client: FlaskClient, finance_key: dict[str, str], db: Database, order: str
) -> None:
    (charge_refunded,) = scenario_file("partial_refund_on_the_charge_only")
    refunds = _partial_refund_objects()
    deliver_all(client, scenario_file("one_time_donation_checkout"))
    if order == "charge first":
        deliver_all(client, [charge_refunded, *refunds])
    elif order == "refund first":
        deliver_all(client, [*refunds, charge_refunded])
    else:
        deliver_all(client, [refunds[1], charge_refunded, refunds[0], refunds[2], charge_refunded])
    # The charge and the refund object tell of the same 2000: counted once, and it stays partial.
    assert _refunds_everywhere(client, finance_key, db) == {
        "report": 2000,
        "months": {"2026-09": 2000},
        "export": 2000,
        "csv": "20.00",
        "payment": 2000,
    }


def test_refund_of_a_charge_never_recorded_is_counted_and_listed_unmatched(
    client: FlaskClient, finance_key: dict[str, str]
) -> None:
    # donation_refund's refund events alone: the refunded donation's charge was never recorded as
    # a payment.
    refund_events = [e for e in scenario_file("donation_refund") if e["data"]["object"]["object"] == "refund"]
    deliver_all(client, refund_events)
    body = client.get(QUERY, headers=finance_key).get_json()
    assert _totals(body) == {"usd": (0, 5000, 0, 0, -5000, 0)}
    assert [r["period"] for r in body["rows"] if r["refunds"]] == ["2026-09"]
    (line,) = _rows_for(client, finance_key, "payments")
    assert line["unmatched"] is True
    assert (line["charge"], line["paid_at"], line["kind"]) == ("ch_1CqRspQz8wLm3xTnAmmTDyRh", None, None)
    assert (line["currency"], line["amount"], line["refunded"], line["net"]) == ("usd", 0, 5000, -5000)
    csv_text = client.get(QUERY.replace("revenue", "payments") + "&format=csv", headers=finance_key).text
    (csv_line,) = list(csv.DictReader(io.StringIO(csv_text)))
    assert (csv_line["unmatched"], csv_line["refunded"], csv_line["net"]) == ("true", "50.00", "-50.00")

    # Its charge arrives (the donation's events, or `paywall stripe sync` fetching it): the refund
    # goes with its payment, counted once, still in its own month.
    deliver_all(client, scenario_file("one_time_donation_checkout"))
    body = client.get(QUERY, headers=finance_key).get_json()
    assert _totals(body) == {"usd": (5000, 5000, 0, 0, 0, 1)}
    (line,) = _rows_for(client, finance_key, "payments")
    assert (line["unmatched"], line["amount"], line["refunded"]) == (False, 5000, 5000)


@pytest.mark.parametrize("reverse", [False, True])
def test_charge_only_refunds_count_in_the_month_each_was_made(
    client: FlaskClient, finance_key: dict[str, str], db: Database, reverse: bool
) -> None:
    # partial_refund_on_the_charge_only's charge.refunded (2000 on 2026-09-08), then a second one a
    # month later (3000 in all).
    (first,) = scenario_file("partial_refund_on_the_charge_only")
    second = copy.deepcopy(first)
    second["id"] += "_second"
    second["created"] += 30 * 86400
    second["data"]["object"]["amount_refunded"] = 3000
    second["data"]["previous_attributes"] = {"amount_refunded": 2000}
    deliver_all(client, scenario_file("one_time_donation_checkout"))
    deliver_all(client, [second, first] if reverse else [first, second])
    seen = _refunds_everywhere(client, finance_key, db)
    assert (seen["report"], seen["months"], seen["payment"]) == (
        3000,
        {"2026-09": 2000, "2026-10": 1000},
        3000,
    )
    # The refund object of the first one arrives late: it takes September's share, nothing doubles.
    deliver_all(client, _partial_refund_objects())
    seen = _refunds_everywhere(client, finance_key, db)
    assert (seen["report"], seen["months"], seen["payment"]) == (
        3000,
        {"2026-09": 2000, "2026-10": 1000},
        3000,
    )


def test_refunds_embedded_in_the_charge_are_recorded(
    client: FlaskClient, finance_key: dict[str, str], db: Database
) -> None:
    # API versions before 2022-11-15 embed the refund objects in the charge (`refunds.data`).
    (charge_refunded,) = copy.deepcopy(scenario_file("partial_refund_on_the_charge_only"))
    refund_object = _partial_refund_objects()[0]["data"]["object"]
    charge_refunded["data"]["object"]["refunds"] = {
        "object": "list",
        "data": [refund_object],
        "has_more": False,
    }
    deliver_all(client, [*scenario_file("one_time_donation_checkout"), charge_refunded])
    seen = _refunds_everywhere(client, finance_key, db)
    assert (seen["report"], seen["months"], seen["payment"]) == (2000, {"2026-09": 2000}, 2000)
    with db.transaction(readonly=True) as s:
        rows = {r.stripe_refund_id: r.amount_minor for r in s.scalars(select(Refund))}
    assert rows == {refund_object["id"]: 2000, "ch_1CqRspQz8wLm3xTnAmmTDyRh:refunded:2000": 0}
