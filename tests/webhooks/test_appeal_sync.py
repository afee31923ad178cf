"""The appeal a Checkout was attributed to (metadata appeal_experiment/appeal_variant/appeal_channel)
reaches checkout_sessions, subscriptions and payments whatever the delivery order, renewals
included, and is never blanked by a later state without it. The shared scenarios, with the
metadata added where paywall's Checkout puts it (``with_metadata``)."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from paywall.config import Settings
from paywall.db import Database
from paywall.models import CheckoutSession, Payment, StripeEvent, Subscription
from paywall.webhooks import applier, inbox
from tests.conftest import truncate_all
from tests.support.stripe_events import (
    assert_same_rows,
    body_of,
    deliver_all,
    load_scenario,
    mirror_rows,
    scenario_file,
    to_legacy,
    with_metadata,
)
from tests.webhooks.test_reconcile import FakeStripe, stripe_state, sync_cmd
from tests.webhooks.test_statements import FIRST_PURCHASE_BATCH_MAX, counted

APPEAL = {"appeal_experiment": "footer-copy", "appeal_variant": "urgent", "appeal_channel": "footer"}
HOLDBACK = {"appeal_experiment": "footer-copy", "appeal_variant": "holdback", "appeal_channel": "direct"}
MONTHLY_SUB = "sub_1JfGyCQz8wLm3xTn55wOrYqR"


def appeal(row: Any) -> dict[str, str | None]:
    return {key: getattr(row, key) for key in APPEAL}


def check_attributed(session: Session, want: dict[str, str], *, payments: int) -> None:
    found = list(session.scalars(select(Payment)))
    assert len(found) == payments
    for p in found:
        assert appeal(p) == want, p.stripe_charge_id
    for cs in session.scalars(select(CheckoutSession)):
        assert appeal(cs) == want
    for sub in session.scalars(select(Subscription)):
        assert appeal(sub) == want


def run(app: Flask, db: Database, events: list[dict[str, Any]], want: dict[str, str], payments: int) -> Any:
    outcomes = deliver_all(app.test_client(), events)
    assert "failed" not in outcomes
    with db.transaction(readonly=True) as session:
        check_attributed(session, want, payments=payments)
        return mirror_rows(session)


SCENARIOS = {
    # scenario -> (metadata, payments it ends with)
    "one_time_donation_checkout": (APPEAL, 1),
    "monthly_subscription_checkout": (HOLDBACK, 1),
    # Base monthly_subscription_checkout: the renewals of an attributed subscription count for it.
    "renewal_failed_then_recovered": (APPEAL, 3),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_an_attributed_checkout_ends_with_attributed_payments(
    app: Flask, db: Database, scenario: str
) -> None:
    meta, payments = SCENARIOS[scenario]
    run(app, db, with_metadata(load_scenario(scenario), meta), meta, payments)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_whatever_the_delivery_order(app: Flask, db: Database, scenario: str, data: st.DataObject) -> None:
    meta, payments = SCENARIOS[scenario]
    events = with_metadata(load_scenario(scenario), meta)
    truncate_all(db)
    want = run(app, db, events, meta, payments)
    truncate_all(db)
    dupes = data.draw(st.lists(st.sampled_from(events), max_size=len(events) // 2), label="duplicates")
    order = data.draw(st.permutations(events + dupes), label="delivery order")
    assert_same_rows(run(app, db, list(order), meta, payments), want)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_in_the_pre_2025_shape(app: Flask, db: Database, scenario: str) -> None:
    meta, payments = SCENARIOS[scenario]
    events = to_legacy(with_metadata(load_scenario(scenario), meta))
    run(app, db, list(reversed(events)), meta, payments)


@pytest.mark.parametrize("scenario", ["one_time_donation_checkout", "monthly_subscription_checkout"])
def test_the_session_alone_attributes_the_payment(app: Flask, db: Database, scenario: str) -> None:
    """A Checkout whose intent or subscription carries no metadata: the session's reaches the payment."""
    events = with_metadata(load_scenario(scenario), APPEAL, session_only=True)
    run(app, db, list(reversed(events)), APPEAL, 1)


def test_later_states_without_the_metadata_never_blank_it(app: Flask, db: Database) -> None:
    """The renewals' subscription states carry no metadata here (say, edited in the Dashboard):
    the link stays, and the renewals are attributed through the subscription."""
    base = with_metadata(load_scenario("monthly_subscription_checkout"), APPEAL)
    renewals = scenario_file("renewal_failed_then_recovered")
    assert not any(e["data"]["object"].get("metadata") for e in renewals)
    run(app, db, base + renewals, APPEAL, 3)
    truncate_all(db)
    # Renewals first, the purchase last: the same end.
    run(app, db, renewals + base, APPEAL, 3)


def test_a_payment_without_an_appeal_stays_unattributed(app: Flask, db: Database) -> None:
    deliver_all(app.test_client(), load_scenario("renewal_failed_then_recovered"))
    with db.transaction(readonly=True) as session:
        assert all(appeal(p) == dict.fromkeys(APPEAL) for p in session.scalars(select(Payment)))


def test_an_absurd_appeal_value_fails_the_event_naming_the_field(app: Flask, db: Database) -> None:
    events = with_metadata(load_scenario("one_time_donation_checkout"), {"appeal_variant": "v" * 65})
    outcomes = deliver_all(app.test_client(), events)
    assert "failed" in outcomes
    with db.transaction(readonly=True) as session:
        errors = [e.error for e in session.scalars(select(StripeEvent)) if e.status == "failed"]
    assert errors and all("metadata.appeal_variant" in (error or "") for error in errors), errors


def test_an_attributed_purchase_costs_no_more_statements(db: Database, settings: Settings) -> None:
    events = with_metadata(load_scenario("monthly_subscription_checkout"), APPEAL)
    for event in events:
        inbox.accept(db, settings, body_of(event), event)
    with counted(db) as seen:
        outcomes = applier.drain(db, settings)
    assert outcomes == {"processed": len(events)}
    assert len(seen) <= FIRST_PURCHASE_BATCH_MAX + 3, (len(seen), seen)


def test_stripe_sync_stores_the_appeal_as_the_webhooks_do(runner: CliRunner, db: Database) -> None:
    """``paywall stripe sync`` (the repair for missed webhooks) goes through the same upserts."""
    events = with_metadata(load_scenario("renewal_failed_then_recovered"), APPEAL)
    fake = FakeStripe(stripe_state(events))
    fake.thread.start()
    try:
        result = sync_cmd(runner, fake)
    finally:
        fake.server.shutdown()
        fake.server.server_close()
    assert result.exit_code == 0, result.output
    with db.transaction(readonly=True) as session:
        check_attributed(session, APPEAL, payments=3)
