"""Order-free results beyond the scenarios: same-second ties, and values that used to be taken from
whichever event happened to be processed first (issue 13, point 3 and point 19)."""

from __future__ import annotations

import copy
from typing import Any

from flask import Flask
from sqlalchemy import select

from paywall.db import Database
from paywall.models import StripeCustomer, Subscription
from tests.conftest import truncate_all
from tests.stripe_helpers import deliver_all, load_scenario

CUSTOMER_A = "cus_ZDb1GURItsMuYl"
SUB_A = "sub_1JfGyCQz8wLm3xTn55wOrYqR"


def event_of(letter: str, event_type: str, index: int = 0) -> dict[str, Any]:
    """A deep copy of the ``index``-th event of ``event_type`` in a scenario (base included)."""
    found = [e for e in load_scenario(letter) if e["type"] == event_type]
    return copy.deepcopy(found[index])


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
    created = event_of("a", "customer.created")
    sub = event_of("a", "customer.subscription.created")
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
                select(StripeCustomer).where(StripeCustomer.stripe_customer_id == CUSTOMER_A)
            )
            row = session.scalar(select(Subscription).where(Subscription.stripe_subscription_id == SUB_A))
            assert cus is not None and row is not None
            assert (cus.email, cus.synced_event_id) == ("high@example.com", "evt_tie_customer_b"), order
            assert (row.cancel_at_period_end, row.synced_event_id) == (True, "evt_tie_sub_b"), order
