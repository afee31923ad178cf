"""The reader view's supporter section from synced rows, and erasure of the sync's personal data."""

from __future__ import annotations

import copy

from flask.testing import FlaskClient
from sqlalchemy import select

from paywall.db import Database
from paywall.models import CheckoutSession, Payment, StripeEvent
from tests.support.stripe_events import deliver_all, load_scenario


def test_reader_view_shows_subscription_then_canceled(client: FlaskClient, site_key: dict[str, str]) -> None:
    deliver_all(client, load_scenario("monthly_subscription_checkout"))
    body = client.get("/v1/readers/member_8731", headers=site_key).get_json()
    sub = body["supporter"]["subscription"]
    assert sub["status"] == "active" and sub["plan"] == "supporter_monthly_usd"
    assert (sub["amount"], sub["currency"], sub["interval"]) == (1500, "usd", "month")
    assert sub["current_period_end"] == "2026-10-01T14:00:40Z"
    assert sub["cancel_at_period_end"] is False
    assert body["supporter"]["donations"] == []

    deliver_all(
        client,
        load_scenario("cancel_at_period_end_then_deleted")[
            len(load_scenario("monthly_subscription_checkout")) :
        ],
    )
    body = client.get("/v1/readers/member_8731", headers=site_key).get_json()
    assert body["supporter"]["subscription"] is None
    (ended,) = body["supporter"]["subscriptions"]
    assert ended["status"] == "canceled" and ended["ended_at"] == "2026-10-01T14:00:40Z"


def donation_for(reader: str) -> list[dict[str, object]]:
    events = copy.deepcopy(load_scenario("one_time_donation_checkout"))
    events[-1]["data"]["object"]["client_reference_id"] = reader
    return events


def test_donations_listed_and_erasure_blanks_personal_data(
    client: FlaskClient, db: Database, site_key: dict[str, str], admin_key: dict[str, str]
) -> None:
    deliver_all(client, donation_for("donor_7"))
    body = client.get("/v1/readers/donor_7", headers=site_key).get_json()
    (donation,) = body["supporter"]["donations"]
    assert donation["amount"] == 5000 and donation["campaign"] == "fall-appeal-2026"
    assert donation["recurring"] is False and donation["refunded"] == 0

    assert client.delete("/v1/readers/donor_7", headers=admin_key).status_code == 200
    with db.transaction(readonly=True) as session:
        payment = session.scalar(select(Payment))
        assert payment is not None and (payment.email, payment.name) == (None, None)
        assert payment.amount_minor == 5000, "financial facts stay"
        cs = session.scalar(select(CheckoutSession))
        assert cs is not None and (cs.email, cs.name) == (None, None)
        for event in session.scalars(select(StripeEvent)):
            assert "sam.okafor@example.net" not in str(event.payload)


def test_reader_view_shows_payment_failed_at_current_period_start_and_cancel_at(
    client: FlaskClient, site_key: dict[str, str]
) -> None:
    monthly = load_scenario("monthly_subscription_checkout")
    # Then cancel_at_period_end_then_deleted's first event: set to cancel at the period end
    # (it and renewal_failed_then_recovered are both futures of the monthly checkout).
    deliver_all(client, monthly + load_scenario("cancel_at_period_end_then_deleted")[len(monthly) :][:1])
    sub = client.get("/v1/readers/member_8731", headers=site_key).get_json()["supporter"]["subscription"]
    assert sub["cancel_at_period_end"] is True and sub["cancel_at"] == "2026-10-01T14:00:40Z"
    assert sub["current_period_start"] == "2026-09-01T14:00:40Z"
    assert sub["payment_failed_at"] is None

    # Then renewal_failed_then_recovered (newer events) up to the Nov 1 renewal failing: past_due.
    renewals = load_scenario("renewal_failed_then_recovered")[len(monthly) :]
    failing = next(i for i, e in enumerate(renewals) if e["data"]["object"].get("status") == "past_due")
    deliver_all(client, renewals[: failing + 1])
    sub = client.get("/v1/readers/member_8731", headers=site_key).get_json()["supporter"]["subscription"]
    assert sub["status"] == "past_due" and sub["cancel_at"] is None
    assert sub["current_period_start"] == "2026-11-01T14:00:40Z"
    assert sub["payment_failed_at"] is not None and sub["payment_failed_at"].startswith("2026-11-01")
