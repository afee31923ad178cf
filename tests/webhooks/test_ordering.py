"""Order-free results beyond the scenarios: same-second ties, and values that used to be taken from
whichever event happened to be processed first (issue 13, point 3 and point 19)."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask
from sqlalchemy import select

from paywall.db import Database
from paywall.models import CheckoutSession, Dispute, StripeCustomer, Subscription
from paywall.reports.periods import Period
from paywall.reports.revenue import revenue_report
from tests.conftest import truncate_all
from tests.support.stripe_events import assert_same_rows, deliver_all, load_scenario, mirror_rows

MONTHLY_CUSTOMER = "cus_ZDb1GURItsMuYl"
MONTHLY_SUB = "sub_1JfGyCQz8wLm3xTn55wOrYqR"


def event_of(scenario: str, event_type: str, index: int = 0) -> dict[str, Any]:
    """A deep copy of the ``index``-th event of ``event_type`` in a scenario (base included)."""
    found = [e for e in load_scenario(scenario) if e["type"] == event_type]
    return copy.deepcopy(found[index])


def at(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def replay_each_order(
    app: Flask, db: Database, orders: list[list[dict[str, Any]]]
) -> dict[str, list[dict[str, Any]]]:
    """Replay each order on an empty database; every one must store the same rows, which are returned."""
    client = app.test_client()
    results = []
    for order in orders:
        truncate_all(db)
        deliver_all(client, order)
        with db.transaction(readonly=True) as session:
            results.append(mirror_rows(session))
    for got in results[1:]:
        assert_same_rows(got, results[0])
    return results[0]


def variant(
    event: dict[str, Any], event_id: str, event_type: str, created: int, **changes: Any
) -> dict[str, Any]:
    """The same object in another event: a new id, type and time, and some fields changed."""
    out = copy.deepcopy(event)
    out.update(id=event_id, type=event_type, created=created)
    out["data"]["object"].update(changes)
    return out


def test_same_second_states_tie_break_on_event_id_not_delivery_order(app: Flask, db: Database) -> None:
    """Two states in one second that neither one's progress orders: the larger event id wins,
    whichever was delivered last (without the id tie-break, the last delivery would win)."""
    created = event_of("monthly_subscription_checkout", "customer.created")
    sub = event_of("monthly_subscription_checkout", "customer.subscription.created")
    second = created["created"] + 100
    customer_low = variant(created, "evt_tie_customer_a", "customer.updated", second, email="low@example.com")
    customer_high = variant(
        created, "evt_tie_customer_b", "customer.updated", second, email="high@example.com"
    )
    sub_second = sub["created"] + 100
    sub_low = variant(
        sub, "evt_tie_sub_a", "customer.subscription.updated", sub_second, cancel_at_period_end=False
    )
    sub_high = variant(
        sub, "evt_tie_sub_b", "customer.subscription.updated", sub_second, cancel_at_period_end=True
    )
    client = app.test_client()
    for order in (
        [customer_low, customer_high, sub_low, sub_high],
        [customer_high, customer_low, sub_high, sub_low],
    ):
        truncate_all(db)
        deliver_all(client, [created, sub, *order])
        with db.transaction(readonly=True) as session:
            cus = session.scalar(
                select(StripeCustomer).where(StripeCustomer.stripe_customer_id == MONTHLY_CUSTOMER)
            )
            row = session.scalar(
                select(Subscription).where(Subscription.stripe_subscription_id == MONTHLY_SUB)
            )
            assert cus is not None and row is not None
            assert (cus.email, cus.synced_event_id) == ("high@example.com", "evt_tie_customer_b"), order
            assert (row.cancel_at_period_end, row.synced_event_id) == (True, "evt_tie_sub_b"), order


def test_customer_deleted_processed_first_still_stores_email_name_and_metadata(
    app: Flask, db: Database
) -> None:
    """customer.deleted carries the customer as it was: whatever order the customer's events come
    in, the newest email, name and metadata are stored, and deleted_at is the deletion's time."""
    created = event_of("monthly_subscription_checkout", "customer.created")
    updated = variant(
        created,
        "evt_cus_updated",
        "customer.updated",
        created["created"] + 60,
        email="maria.new@example.com",
        metadata={"reader": "member_8731"},
    )
    deleted = variant(updated, "evt_cus_deleted", "customer.deleted", created["created"] + 120)
    rows = replay_each_order(app, db, [list(p) for p in itertools.permutations([created, updated, deleted])])
    (cus,) = rows["stripe_customers"]
    assert (cus["email"], cus["name"], cus["metadata"]) == (
        "maria.new@example.com",
        "Maria Lopez",
        {"reader": "member_8731"},
    )
    assert (cus["reader_id"], cus["deleted_at"]) == ("member_8731", at(deleted["created"]))


def test_dispute_closed_at_is_the_earliest_event_showing_it_closed(app: Flask, db: Database) -> None:
    """A later update of a closed dispute processed first must not become its close time."""
    events = load_scenario("dispute_lost")
    closed = next(e for e in events if e["type"] == "charge.dispute.closed")
    later = variant(
        closed,
        "evt_dispute_later",
        "charge.dispute.updated",
        closed["created"] + 86400,
        metadata={"note": "x"},
    )
    rows = replay_each_order(app, db, [[later, *events], [*events, later], [closed, later, *events]])
    (dispute,) = rows["disputes"]
    assert (dispute["status"], dispute["closed_at"]) == ("lost", at(closed["created"]))
    with db.transaction(readonly=True) as session:
        row = session.scalar(select(Dispute))
        assert row is not None and row.funds_withdrawn_at is not None


def test_checkout_completed_at_is_the_earliest_event_showing_it_complete(app: Flask, db: Database) -> None:
    """A later event about a complete session processed first must not become its completion time."""
    events = load_scenario("one_time_donation_checkout")
    completed = next(e for e in events if e["type"] == "checkout.session.completed")
    later = variant(
        completed, "evt_cs_later", "checkout.session.async_payment_succeeded", completed["created"] + 3600
    )
    rows = replay_each_order(app, db, [[later, *events], [*events, later]])
    (cs,) = rows["checkout_sessions"]
    assert (cs["status"], cs["completed_at"]) == ("complete", at(completed["created"]))
    with db.transaction(readonly=True) as session:
        row = session.scalar(select(CheckoutSession))
        assert row is not None and row.synced_event_id == "evt_cs_later"


SUPPORTER = ("price_1mgNSEQz8wLm3xTnaWTeJ9B4", "supporter_monthly_usd")
CHAMPION = ("price_1ZyNYaQz8wLm3xTneCS2aMI3", "champion_monthly_usd")


def test_payment_plan_is_the_plan_it_paid_for_whatever_the_order(app: Flask, db: Database) -> None:
    """monthly_subscription_checkout, then upgrade_with_proration: the first month was paid on the supporter
    price, the proration on the champion price. Delivered in order, or with the upgrade (or all of
    upgrade_with_proration) before the first payment
    events, each payment keeps the price and plan it paid for, and so does the report by plan."""
    monthly_events, upgrade_events = (
        load_scenario("monthly_subscription_checkout"),
        load_scenario("upgrade_with_proration")[len(load_scenario("monthly_subscription_checkout")) :],
    )
    upgrade, upgrade_rest = upgrade_events[0], upgrade_events[1:]
    assert upgrade["type"] == "customer.subscription.updated"
    rows = replay_each_order(
        app,
        db,
        [
            monthly_events + upgrade_events,
            [upgrade, *monthly_events, *upgrade_rest],
            monthly_events[:1] + upgrade_events + monthly_events[1:],
            upgrade_events + monthly_events,
        ],
    )
    monthly_charge = next(e for e in monthly_events if e["type"] == "charge.succeeded")["data"]["object"][
        "id"
    ]
    paid = {p["stripe_charge_id"]: (p["stripe_price_id"], p["plan"]) for p in rows["payments"]}
    assert paid.pop(monthly_charge) == SUPPORTER
    assert list(paid.values()) == [CHAMPION]
    # The database holds the last order (all of g first): the first month counts under the old plan.
    period = Period(dt.date(2026, 9, 1), dt.date(2026, 10, 1), ZoneInfo("UTC"))
    with db.transaction(readonly=True) as session:
        report = revenue_report(session, period, "plan")
    by_plan = {(r.period, r.currency): (r.gross, r.payments) for r in report.rows}
    assert by_plan == {("supporter_monthly_usd", "usd"): (1500, 1), ("champion_monthly_usd", "usd"): (750, 1)}
