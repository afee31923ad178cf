"""Every shared scenario (with its base): in order, shuffled with duplicates (hypothesis), and in the
pre-2025 API shape. The expected rows are written out per scenario below."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from paywall.db import Database
from paywall.models import Dispute, Invoice, OutboxMessage, Payment, Reader, Refund, StripeEvent, Subscription
from tests.conftest import truncate_all
from tests.support.stripe_events import assert_same_rows, deliver_all, load_scenario, mirror_rows, to_legacy

MONTHLY_SUB = "sub_1JfGyCQz8wLm3xTn55wOrYqR"
ANNUAL_TRIAL_SUB = "sub_12jjy0Qz8wLm3xTnmmNtYbMo"
DONATION_CHARGE = "ch_1CqRspQz8wLm3xTnAmmTDyRh"


def at(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def reader_of(session: Session, reader_id: int | None) -> str | None:
    if reader_id is None:
        return None
    return session.scalar(select(Reader.external_id).where(Reader.id == reader_id))


def payments(session: Session) -> dict[str, Payment]:
    return {p.stripe_charge_id: p for p in session.scalars(select(Payment))}


def subscription(session: Session, sid: str) -> Subscription:
    sub = session.scalar(select(Subscription).where(Subscription.stripe_subscription_id == sid))
    assert sub is not None
    return sub


def outbox(session: Session) -> dict[str, OutboxMessage]:
    return {m.dedupe_key: m for m in session.scalars(select(OutboxMessage))}


def check_monthly_subscription_checkout(session: Session, in_order: bool) -> None:
    sub = subscription(session, MONTHLY_SUB)
    assert (sub.status, sub.kind, sub.plan) == ("active", "subscription", "supporter_monthly_usd")
    assert (sub.amount_minor, sub.currency, sub.interval) == (1500, "usd", "month")
    assert sub.current_period_end == at(1790863240)
    assert reader_of(session, sub.reader_id) == "member_8731"
    assert sub.payment_failed_at is None
    (p,) = payments(session).values()
    assert (p.stripe_charge_id, p.amount_minor, p.currency, p.kind) == (
        "ch_1uTR50Qz8wLm3xTnXwfooTjn",
        1500,
        "usd",
        "subscription",
    )
    assert (p.stripe_invoice_id, p.stripe_subscription_id) == ("in_1JfITSQz8wLm3xTn1HXTOk6l", MONTHLY_SUB)
    assert reader_of(session, p.reader_id) == "member_8731"
    assert p.recurring is True
    assert p.stripe_balance_transaction_id == "txn_18J4AnQz8wLm3xTnyO9BtOt1"
    inv = session.scalar(select(Invoice).where(Invoice.stripe_invoice_id == "in_1JfITSQz8wLm3xTn1HXTOk6l"))
    assert inv is not None and inv.status == "paid" and reader_of(session, inv.reader_id) == "member_8731"
    assert outbox(session) == {}


def check_one_time_donation_checkout(session: Session, in_order: bool) -> None:
    (p,) = payments(session).values()
    assert (p.stripe_charge_id, p.amount_minor, p.currency, p.kind) == (
        DONATION_CHARGE,
        5000,
        "usd",
        "donation",
    )
    assert (p.email, p.name, p.campaign) == ("sam.okafor@example.net", "Sam Okafor", "fall-appeal-2026")
    assert p.reader_id is None and p.recurring is False
    assert p.stripe_checkout_session_id is not None
    (msg,) = outbox(session).values()
    assert (msg.kind, msg.dedupe_key, msg.to_email) == (
        "donation_receipt",
        f"receipt:{DONATION_CHARGE}",
        "sam.okafor@example.net",
    )
    assert msg.data["amount_minor"] == 5000 and msg.data["campaign"] == "fall-appeal-2026"


def check_renewal_failed_then_recovered(session: Session, in_order: bool | None) -> None:
    sub = subscription(session, MONTHLY_SUB)
    assert sub.status == "active" and sub.payment_failed_at is None
    assert sub.current_period_end == at(1796133640)
    found = payments(session)
    assert set(found) == {
        "ch_1uTR50Qz8wLm3xTnXwfooTjn",
        "ch_1RTfnsQz8wLm3xTnAiw3ccl6",
        "ch_1jprc4Qz8wLm3xTn9me8fi1l",
    }, "the failed charge is not a payment"
    retry = found["ch_1jprc4Qz8wLm3xTn9me8fi1l"]
    assert (retry.stripe_invoice_id, retry.kind, retry.amount_minor) == (
        "in_1teJULQz8wLm3xTnvbelwbGr",
        "subscription",
        1500,
    )
    assert all(reader_of(session, p.reader_id) == "member_8731" for p in found.values())
    inv = session.scalar(select(Invoice).where(Invoice.stripe_invoice_id == "in_1teJULQz8wLm3xTnvbelwbGr"))
    assert inv is not None and (inv.status, inv.attempt_count) == ("paid", 2)
    # None from a fetch (``in_order is None``): a paid invoice does not show when it once failed.
    assert inv.payment_failed_at == (None if in_order is None else at(1793545249))
    # The failure notice may have been queued (and then withdrawn once paid) or never queued.
    notices = [m for m in outbox(session).values() if m.kind == "payment_failed"]
    assert all(m.status == "skipped" for m in notices)
    if in_order:
        assert len(notices) == 1


def check_cancel_at_period_end_then_deleted(session: Session, in_order: bool) -> None:
    sub = subscription(session, MONTHLY_SUB)
    assert (sub.status, sub.cancel_at_period_end) == ("canceled", True)
    assert (sub.canceled_at, sub.ended_at) == (at(1789933330), at(1790863240))
    assert len(payments(session)) == 1


def check_donation_refund(session: Session, in_order: bool) -> None:
    p = payments(session)[DONATION_CHARGE]
    assert (p.refunded_minor, p.kind, p.campaign) == (5000, "donation", "fall-appeal-2026")
    (re,) = session.scalars(select(Refund).where(Refund.charge_amount_refunded.is_(None)))
    assert (re.stripe_refund_id, re.status, re.amount_minor) == (
        "re_110PeHQz8wLm3xTnV6mCuoJX",
        "succeeded",
        5000,
    )
    # charge.refunded said 5000 too: the refund object accounts for all of it.
    (charge_only,) = session.scalars(select(Refund).where(Refund.charge_amount_refunded.is_not(None)))
    assert (charge_only.charge_amount_refunded, charge_only.amount_minor) == (5000, 0)


def check_partial_refund_on_the_charge_only(session: Session, in_order: bool) -> None:
    p = payments(session)[DONATION_CHARGE]
    assert (p.amount_minor, p.refunded_minor, p.charge_refunded_minor) == (5000, 2000, 2000)
    # No refund object: the charge-only refund row carries it, dated by the charge.refunded event.
    (re,) = session.scalars(select(Refund))
    assert (re.stripe_charge_id, re.amount_minor, re.currency, re.status) == (
        DONATION_CHARGE,
        2000,
        "usd",
        "succeeded",
    )
    assert (re.charge_amount_refunded, re.stripe_created) == (2000, at(1788862501))


def check_dispute_lost(session: Session, in_order: bool) -> None:
    p = payments(session)[DONATION_CHARGE]
    assert (p.dispute_status, p.disputed_minor, p.dispute_fee_minor) == ("lost", 5000, 1500)
    (d,) = session.scalars(select(Dispute))
    assert (d.status, d.fee_minor, d.amount_minor, d.reason) == ("lost", 1500, 5000, "fraudulent")
    assert d.closed_at is not None and d.funds_withdrawn_at is not None


def check_upgrade_with_proration(session: Session, in_order: bool) -> None:
    sub = subscription(session, MONTHLY_SUB)
    assert (sub.stripe_price_id, sub.amount_minor, sub.status) == (
        "price_1ZyNYaQz8wLm3xTneCS2aMI3",
        3000,
        "active",
    )
    found = payments(session)
    assert len(found) == 2
    p = found["ch_1kSu4zQz8wLm3xTnfbAHog7M"]
    assert (p.amount_minor, p.kind, p.stripe_invoice_id) == (
        750,
        "subscription",
        "in_164YuQQz8wLm3xTnDhfW6qVi",
    )


def check_annual_trial_eur(session: Session, in_order: bool) -> None:
    sub = subscription(session, ANNUAL_TRIAL_SUB)
    assert (sub.status, sub.currency, sub.amount_minor, sub.interval) == ("active", "eur", 12000, "year")
    assert reader_of(session, sub.reader_id) == "reader_lena"
    assert (sub.trial_end, sub.current_period_end) == (at(1790262120), at(1821798120))
    (p,) = payments(session).values()
    assert (p.stripe_charge_id, p.amount_minor, p.currency, p.kind) == (
        "ch_1JfPK3Qz8wLm3xTnWl9Oxtvn",
        12000,
        "eur",
        "subscription",
    )
    assert reader_of(session, p.reader_id) == "reader_lena"
    trial = [m for m in outbox(session).values() if m.kind == "trial_ending"]
    if in_order:
        (msg,) = trial
        assert (msg.dedupe_key, msg.to_email) == (
            f"trial_ending:{ANNUAL_TRIAL_SUB}:1790262120",
            "lena.becker@example.de",
        )
    assert len(trial) <= 1


CHECKS: dict[str, Callable[[Session, bool], None]] = {
    "monthly_subscription_checkout": check_monthly_subscription_checkout,
    "one_time_donation_checkout": check_one_time_donation_checkout,
    "renewal_failed_then_recovered": check_renewal_failed_then_recovered,
    "cancel_at_period_end_then_deleted": check_cancel_at_period_end_then_deleted,
    "donation_refund": check_donation_refund,
    "dispute_lost": check_dispute_lost,
    "upgrade_with_proration": check_upgrade_with_proration,
    "annual_trial_eur": check_annual_trial_eur,
    "partial_refund_on_the_charge_only": check_partial_refund_on_the_charge_only,
}


def run_and_check(
    app: Flask, db: Database, scenario: str, events: list[dict[str, Any]], in_order: bool
) -> dict[str, list[dict[str, Any]]]:
    """Deliver, check the scenario's expected rows, and return every stored column (mirror_rows)."""
    client = app.test_client()
    outcomes = deliver_all(client, events)
    assert "failed" not in outcomes
    with db.transaction(readonly=True) as session:
        CHECKS[scenario](session, in_order)
        stored = list(session.scalars(select(StripeEvent)))
        assert len(stored) == len({e["id"] for e in events})
        assert all(e.status in ("processed", "ignored") for e in stored), [(e.type, e.error) for e in stored]
        return mirror_rows(session)


# The rows an in-order replay stores, per (scenario, shape): what every shuffled replay must match.
IN_ORDER_ROWS: dict[tuple[str, bool], dict[str, list[dict[str, Any]]]] = {}


def in_order_rows(app: Flask, db: Database, scenario: str, legacy: bool) -> dict[str, list[dict[str, Any]]]:
    if (scenario, legacy) not in IN_ORDER_ROWS:
        truncate_all(db)
        events = to_legacy(load_scenario(scenario)) if legacy else load_scenario(scenario)
        IN_ORDER_ROWS[scenario, legacy] = run_and_check(app, db, scenario, events, in_order=True)
        truncate_all(db)
    return IN_ORDER_ROWS[scenario, legacy]


@pytest.mark.parametrize("scenario", sorted(CHECKS))
def test_scenario_in_order(app: Flask, db: Database, scenario: str) -> None:
    run_and_check(app, db, scenario, load_scenario(scenario), in_order=True)


@pytest.mark.parametrize("scenario", sorted(CHECKS))
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_scenario_shuffled_with_duplicates(
    app: Flask, db: Database, scenario: str, data: st.DataObject
) -> None:
    want = in_order_rows(app, db, scenario, legacy=False)
    truncate_all(db)
    events = load_scenario(scenario)
    dupes = data.draw(st.lists(st.sampled_from(events), max_size=len(events) // 2), label="duplicates")
    order = data.draw(st.permutations(events + dupes), label="delivery order")
    assert_same_rows(run_and_check(app, db, scenario, list(order), in_order=False), want)


@pytest.mark.parametrize("scenario", sorted(CHECKS))
def test_scenario_in_pre_2025_shape(app: Flask, db: Database, scenario: str) -> None:
    events = to_legacy(load_scenario(scenario))
    assert not any(e["type"] == "invoice_payment.paid" for e in events)
    run_and_check(app, db, scenario, events, in_order=True)


@pytest.mark.parametrize(
    "scenario", ["monthly_subscription_checkout", "renewal_failed_then_recovered", "annual_trial_eur"]
)
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_pre_2025_shape_shuffled(app: Flask, db: Database, scenario: str, data: st.DataObject) -> None:
    want = in_order_rows(app, db, scenario, legacy=True)
    truncate_all(db)
    events = to_legacy(load_scenario(scenario))
    order = data.draw(st.permutations(events + events[:3]), label="delivery order")
    assert_same_rows(run_and_check(app, db, scenario, list(order), in_order=False), want)


def test_grace_period_starts_at_first_failure_and_clears_when_paid(app: Flask, db: Database) -> None:
    events = load_scenario("renewal_failed_then_recovered")
    client = app.test_client()
    cut = next(i for i, e in enumerate(events) if e["id"] == "evt_1UX9HmQz8wLm3xTnRWokBpWl") + 1
    deliver_all(client, events[:cut])
    with db.transaction(readonly=True) as session:
        sub = subscription(session, MONTHLY_SUB)
        assert sub.status == "past_due"
        assert sub.payment_failed_at == at(1793545249)
        (msg,) = [m for m in outbox(session).values() if m.kind == "payment_failed"]
        assert (msg.dedupe_key, msg.to_email, msg.status) == (
            "payment_failed:in_1teJULQz8wLm3xTnvbelwbGr",
            "maria.lopez@example.com",
            "pending",
        )
        assert msg.data["hosted_invoice_url"].startswith("https://invoice.stripe.com/")
        assert msg.data["amount_minor"] == 1500
    deliver_all(client, events[cut:])
    with db.transaction(readonly=True) as session:
        sub = subscription(session, MONTHLY_SUB)
        assert (sub.status, sub.payment_failed_at) == ("active", None)
