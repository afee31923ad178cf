"""decide(): every rule, its boundaries, and the appeal flag, as a table (no database)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from paywall.access.rules import (
    CompFact,
    PaymentFact,
    ReaderState,
    SubscriptionFact,
    decide,
    meter_period,
)
from paywall.access.settings import AccessSettings
from paywall.config import ConfigError

NOW = dt.datetime(2026, 3, 15, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
SEC = dt.timedelta(seconds=1)
CFG = AccessSettings()


def sub(status: str = "active", **kw: Any) -> SubscriptionFact:
    kw.setdefault("stripe_subscription_id", "sub_1")
    kw.setdefault("current_period_start", NOW - 10 * DAY)
    kw.setdefault("current_period_end", NOW + 20 * DAY)
    return SubscriptionFact(status=status, **kw)


def pay(paid_at: dt.datetime, kind: str = "donation", **kw: Any) -> PaymentFact:
    kw.setdefault("stripe_charge_id", "ch_1")
    kw.setdefault("amount_minor", 500)
    return PaymentFact(kind=kind, paid_at=paid_at, **kw)


def state(**kw: Any) -> ReaderState:
    kw.setdefault("reader", "r")
    kw.setdefault("article", "a")
    return ReaderState(**kw)


# (id, state, now, settings overrides, allowed, reason, until, appeal)
CASES: list[tuple[str, ReaderState, dt.datetime, dict[str, Any], bool, str, dt.datetime | None, bool]] = [
    # comp
    ("comp", state(comp=CompFact(NOW + DAY)), NOW, {}, True, "comp", NOW + DAY, False),
    (
        "comp one second before its end",
        state(comp=CompFact(NOW + SEC)),
        NOW,
        {},
        True,
        "comp",
        NOW + SEC,
        False,
    ),
    ("comp at exactly until has ended", state(comp=CompFact(NOW)), NOW, {}, True, "metered", None, True),
    (
        "comp beats a subscription",
        state(comp=CompFact(NOW + DAY), subscriptions=(sub(),)),
        NOW,
        {},
        True,
        "comp",
        NOW + DAY,
        False,
    ),
    (
        "expired comp falls through to the subscription",
        state(comp=CompFact(NOW - DAY), subscriptions=(sub(),)),
        NOW,
        {},
        True,
        "subscription",
        NOW + 20 * DAY,
        False,
    ),
    # subscription
    (
        "active subscription",
        state(subscriptions=(sub(),)),
        NOW,
        {},
        True,
        "subscription",
        NOW + 20 * DAY,
        False,
    ),
    (
        "active with no period end",
        state(subscriptions=(sub(current_period_end=None),)),
        NOW,
        {},
        True,
        "subscription",
        None,
        False,
    ),
    (
        "renewing subscription in the renewal leeway",
        state(subscriptions=(sub(current_period_end=NOW - DAY + SEC),)),
        NOW,
        {},
        True,
        "subscription",
        NOW + SEC,
        False,
    ),
    (
        "renewing subscription past the leeway",
        state(subscriptions=(sub(current_period_end=NOW - DAY),)),
        NOW,
        {},
        True,
        "metered",
        None,
        True,
    ),
    (
        "no leeway: ends exactly at period end",
        state(subscriptions=(sub(current_period_end=NOW),)),
        NOW,
        {"renewal_leeway_hours": 0},
        True,
        "metered",
        None,
        True,
    ),
    (
        "cancel at period end keeps access until the end",
        state(subscriptions=(sub(cancel_at_period_end=True, current_period_end=NOW + SEC),)),
        NOW,
        {},
        True,
        "subscription",
        NOW + SEC,
        False,
    ),
    (
        "cancel at period end: at exactly the end access stops",
        state(subscriptions=(sub(cancel_at_period_end=True, current_period_end=NOW),)),
        NOW,
        {},
        True,
        "metered",
        None,
        True,
    ),
    (
        "canceled subscription",
        state(subscriptions=(sub("canceled", ended_at=NOW - DAY),)),
        NOW,
        {},
        True,
        "metered",
        None,
        True,
    ),
    (
        "incomplete subscription",
        state(subscriptions=(sub("incomplete"),)),
        NOW,
        {},
        True,
        "metered",
        None,
        True,
    ),
    ("paused subscription", state(subscriptions=(sub("paused"),)), NOW, {}, True, "metered", None, True),
    (
        "the later of two subscriptions",
        state(subscriptions=(sub(), sub(stripe_subscription_id="sub_2", current_period_end=NOW + 40 * DAY))),
        NOW,
        {},
        True,
        "subscription",
        NOW + 40 * DAY,
        False,
    ),
    # trial
    (
        "trial",
        state(subscriptions=(sub("trialing", trial_end=NOW + 3 * DAY),)),
        NOW,
        {},
        True,
        "trial",
        NOW + 3 * DAY,
        False,
    ),
    (
        "trial set to cancel ends at trial end",
        state(subscriptions=(sub("trialing", trial_end=NOW, cancel_at_period_end=True),)),
        NOW,
        {},
        True,
        "metered",
        None,
        True,
    ),
    (
        "subscription beats trial",
        state(subscriptions=(sub("trialing", trial_end=NOW + 30 * DAY), sub(stripe_subscription_id="sub_2"))),
        NOW,
        {},
        True,
        "subscription",
        NOW + 20 * DAY,
        False,
    ),
    # grace period
    (
        "past_due within grace",
        state(subscriptions=(sub("past_due", payment_failed_at=NOW - 2 * DAY),)),
        NOW,
        {},
        True,
        "grace_period",
        NOW + 5 * DAY,
        False,
    ),
    (
        "unpaid within grace",
        state(subscriptions=(sub("unpaid", payment_failed_at=NOW - 6 * DAY),)),
        NOW,
        {},
        True,
        "grace_period",
        NOW + DAY,
        False,
    ),
    (
        "grace ends exactly at failure + grace days",
        state(subscriptions=(sub("past_due", payment_failed_at=NOW - 7 * DAY),)),
        NOW,
        {},
        True,
        "metered",
        None,
        True,
    ),
    (
        "no failure date: grace from the period start",
        state(subscriptions=(sub("past_due", payment_failed_at=None, current_period_start=NOW - DAY),)),
        NOW,
        {},
        True,
        "grace_period",
        NOW + 6 * DAY,
        False,
    ),
    (
        "no failure date nor start: grace from the period end",
        state(
            subscriptions=(
                sub(
                    "past_due",
                    payment_failed_at=None,
                    current_period_start=None,
                    current_period_end=NOW - 3 * DAY,
                ),
            )
        ),
        NOW,
        {},
        True,
        "grace_period",
        NOW + 4 * DAY,
        False,
    ),
    (
        "grace_period_days 0 turns grace off",
        state(subscriptions=(sub("past_due", payment_failed_at=NOW - SEC),)),
        NOW,
        {"grace_period_days": 0},
        True,
        "metered",
        None,
        True,
    ),
    (
        "a live subscription beats grace on another",
        state(subscriptions=(sub("past_due", payment_failed_at=NOW), sub(stripe_subscription_id="sub_2"))),
        NOW,
        {},
        True,
        "subscription",
        NOW + 20 * DAY,
        False,
    ),
    # refunds and disputes end the access they paid for
    (
        "refunded subscription payment ends access",
        state(
            subscriptions=(sub(),),
            payments=(
                pay(NOW - 10 * DAY, "subscription", stripe_subscription_id="sub_1", refunded_minor=500),
            ),
        ),
        NOW,
        {},
        True,
        "metered",
        None,
        True,
    ),
    (
        "partly refunded subscription payment keeps access",
        state(
            subscriptions=(sub(),),
            payments=(
                pay(NOW - 10 * DAY, "subscription", stripe_subscription_id="sub_1", refunded_minor=100),
            ),
        ),
        NOW,
        {},
        True,
        "subscription",
        NOW + 20 * DAY,
        False,
    ),
    (
        "lost dispute on the subscription payment ends access",
        state(
            subscriptions=(sub(),),
            payments=(
                pay(NOW - 9 * DAY, "subscription", stripe_subscription_id="sub_1", dispute_status="lost"),
            ),
        ),
        NOW,
        {},
        True,
        "metered",
        None,
        True,
    ),
    (
        "a later good payment restores access",
        state(
            subscriptions=(sub(),),
            payments=(
                pay(NOW - 9 * DAY, "subscription", stripe_subscription_id="sub_1", refunded_minor=500),
                pay(NOW - 8 * DAY, "subscription", stripe_subscription_id="sub_1", stripe_charge_id="ch_2"),
            ),
        ),
        NOW,
        {},
        True,
        "subscription",
        NOW + 20 * DAY,
        False,
    ),
    (
        "a refund of the previous period does not matter",
        state(
            subscriptions=(sub(),),
            payments=(
                pay(NOW - 40 * DAY, "subscription", stripe_subscription_id="sub_1", refunded_minor=500),
            ),
        ),
        NOW,
        {},
        True,
        "subscription",
        NOW + 20 * DAY,
        False,
    ),
    (
        "refund during grace ends grace",
        state(
            subscriptions=(sub("past_due", payment_failed_at=NOW - DAY),),
            payments=(
                pay(NOW - 5 * DAY, "subscription", stripe_subscription_id="sub_1", refunded_minor=500),
            ),
        ),
        NOW,
        {},
        True,
        "metered",
        None,
        True,
    ),
    # donation
    ("donation", state(payments=(pay(NOW - 10 * DAY),)), NOW, {}, True, "donation", NOW + 20 * DAY, False),
    (
        "donation ends exactly paid_at + days",
        state(payments=(pay(NOW - 30 * DAY),)),
        NOW,
        {},
        True,
        "metered",
        None,
        False,
    ),
    (
        "donation one second before its end",
        state(payments=(pay(NOW - 30 * DAY + SEC),)),
        NOW,
        {},
        True,
        "donation",
        NOW + SEC,
        False,
    ),
    (
        "donation_access_days 0 turns donor access off",
        state(payments=(pay(NOW - DAY),)),
        NOW,
        {"donation_access_days": 0},
        True,
        "metered",
        None,
        False,
    ),
    (
        "refunded donation grants nothing",
        state(payments=(pay(NOW - DAY, refunded_minor=500),)),
        NOW,
        {},
        True,
        "metered",
        None,
        True,
    ),
    (
        "lost-dispute donation grants nothing",
        state(payments=(pay(NOW - DAY, disputed_minor=500, dispute_status="lost"),)),
        NOW,
        {},
        True,
        "metered",
        None,
        True,
    ),
    (
        "disputed amount lost grants nothing",
        state(payments=(pay(NOW - DAY, disputed_minor=200),)),
        NOW,
        {},
        True,
        "metered",
        None,
        True,
    ),
    (
        "won dispute still grants",
        state(payments=(pay(NOW - DAY, dispute_status="won"),)),
        NOW,
        {},
        True,
        "donation",
        NOW + 29 * DAY,
        False,
    ),
    (
        "an older good donation still grants when the newer was refunded",
        state(payments=(pay(NOW - DAY, refunded_minor=500), pay(NOW - 20 * DAY, stripe_charge_id="ch_2"))),
        NOW,
        {},
        True,
        "donation",
        NOW + 10 * DAY,
        False,
    ),
    (
        "the latest donation sets until",
        state(payments=(pay(NOW - 20 * DAY), pay(NOW - 2 * DAY, stripe_charge_id="ch_2"))),
        NOW,
        {},
        True,
        "donation",
        NOW + 28 * DAY,
        False,
    ),
    (
        "recurring donation subscription is not a subscription",
        state(subscriptions=(sub(kind="donation"),)),
        NOW,
        {},
        True,
        "metered",
        None,
        False,
    ),
    (
        "subscription beats donation",
        state(subscriptions=(sub(),), payments=(pay(NOW - DAY),)),
        NOW,
        {},
        True,
        "subscription",
        NOW + 20 * DAY,
        False,
    ),
    # metered
    ("first article", state(), NOW, {}, True, "metered", None, True),
    ("third article", state(meter_articles=frozenset({"x", "y"})), NOW, {}, True, "metered", None, True),
    (
        "meter exhausted",
        state(meter_articles=frozenset({"x", "y", "z"})),
        NOW,
        {},
        False,
        "meter_exhausted",
        None,
        True,
    ),
    (
        "a re-read is free when exhausted",
        state(article="y", meter_articles=frozenset({"x", "y", "z"})),
        NOW,
        {},
        True,
        "metered",
        None,
        True,
    ),
    ("no free articles", state(), NOW, {"free_articles_per_month": 0}, False, "meter_exhausted", None, True),
    # appeal pause and dismissal
    (
        "donation pauses the appeal beyond its access",
        state(payments=(pay(NOW - 89 * DAY),)),
        NOW,
        {},
        True,
        "metered",
        None,
        False,
    ),
    (
        "appeal pause ends exactly paid_at + pause",
        state(payments=(pay(NOW - 90 * DAY),)),
        NOW,
        {},
        True,
        "metered",
        None,
        True,
    ),
    ("dismissed appeal", state(dismissed_at=NOW - 6 * DAY), NOW, {}, True, "metered", None, False),
    (
        "dismissal ends exactly after dismiss_days",
        state(dismissed_at=NOW - 7 * DAY),
        NOW,
        {},
        True,
        "metered",
        None,
        True,
    ),
    (
        "dismissal hides the appeal when exhausted too",
        state(dismissed_at=NOW, meter_articles=frozenset({"x", "y", "z"})),
        NOW,
        {},
        False,
        "meter_exhausted",
        None,
        False,
    ),
    (
        "past_due recurring donor is not asked",
        state(subscriptions=(sub("past_due", kind="donation"),)),
        NOW,
        {},
        True,
        "metered",
        None,
        False,
    ),
    (
        "canceled recurring donor is asked again",
        state(subscriptions=(sub("canceled", kind="donation"),)),
        NOW,
        {},
        True,
        "metered",
        None,
        True,
    ),
]


@pytest.mark.parametrize(
    ("case", "st", "now", "overrides", "allowed", "reason", "until", "appeal"),
    CASES,
    ids=[c[0] for c in CASES],
)
def test_decide(
    case: str,
    st: ReaderState,
    now: dt.datetime,
    overrides: dict[str, Any],
    allowed: bool,
    reason: str,
    until: dt.datetime | None,
    appeal: bool,
) -> None:
    decision = decide(st, now, AccessSettings(**overrides))
    assert (decision.allowed, decision.reason, decision.until, decision.appeal) == (
        allowed,
        reason,
        until,
        appeal,
    ), [s.as_dict() for s in decision.trace]
    # The trace names the level first, every rule family once at least, and the appeal last.
    rules = [s.rule for s in decision.trace]
    assert (
        rules[:2] == ["level", "comp"]
        and rules[-1] == "appeal"
        and "donation" in rules
        and "metered" in rules
    )
    assert decision.meter is None if reason not in ("metered", "meter_exhausted") else decision.meter


PAUSED = {"pause_collection_behavior": "mark_uncollectible"}
# (id, state, now, allowed, reason, until, appeal): a pause grants no subscription access.
PAUSE_CASES: list[tuple[str, ReaderState, dt.datetime, bool, str, dt.datetime | None, bool]] = [
    ("collection paused", state(subscriptions=(sub(**PAUSED),)), NOW, True, "metered", None, True),
    (
        "collection paused with keep_as_draft, resuming later",
        state(
            subscriptions=(
                sub(pause_collection_behavior="keep_as_draft", pause_collection_resumes_at=NOW + SEC),
            )
        ),
        NOW,
        True,
        "metered",
        None,
        True,
    ),
    (
        "a collection pause is over at resumes_at",
        state(subscriptions=(sub(pause_collection_behavior="void", pause_collection_resumes_at=NOW),)),
        NOW,
        True,
        "subscription",
        NOW + 20 * DAY,
        False,
    ),
    (
        "paused trial",
        state(subscriptions=(sub("trialing", trial_end=NOW + DAY, **PAUSED),)),
        NOW,
        True,
        "metered",
        None,
        True,
    ),
    (
        "paused in dunning gets no grace",
        state(subscriptions=(sub("past_due", payment_failed_at=NOW - DAY, **PAUSED),)),
        NOW,
        True,
        "metered",
        None,
        True,
    ),
    (
        "status paused (trial ended without a payment method)",
        state(subscriptions=(sub("paused", current_period_end=NOW + DAY),)),
        NOW,
        True,
        "metered",
        None,
        True,
    ),
    (
        "a paused subscription beside an active one",
        state(subscriptions=(sub(**PAUSED), sub(stripe_subscription_id="sub_2"))),
        NOW,
        True,
        "subscription",
        NOW + 20 * DAY,
        False,
    ),
    (
        "a paused recurring donation is not a current donor",
        state(subscriptions=(sub(kind="donation", **PAUSED),)),
        NOW,
        True,
        "metered",
        None,
        True,
    ),
]


@pytest.mark.parametrize(
    ("case", "st", "now", "allowed", "reason", "until", "appeal"),
    PAUSE_CASES,
    ids=[c[0] for c in PAUSE_CASES],
)
def test_paused_subscription_grants_no_access_and_the_trace_says_so(
    case: str,
    st: ReaderState,
    now: dt.datetime,
    allowed: bool,
    reason: str,
    until: dt.datetime | None,
    appeal: bool,
) -> None:
    decision = decide(st, now, CFG)
    trace = [s.as_dict() for s in decision.trace]
    assert (decision.allowed, decision.reason, decision.until, decision.appeal) == (
        allowed,
        reason,
        until,
        appeal,
    ), trace
    paused = [s for s in decision.trace if "paused" in s.why]
    if reason == "metered" and st.subscriptions[0].kind == "subscription":
        # The trace names the pause, on the rule it stopped, and says it grants nothing.
        assert paused and all(not s.applies for s in paused), trace
        assert paused[0].rule in ("subscription", "trial", "grace_period"), trace
        assert "no access while paused" in paused[0].why, trace


def test_meter_counts_and_records_only_new_articles() -> None:
    first = decide(state(article="a"), NOW, CFG)
    assert first.records_read and first.meter is not None and first.meter.used == 1
    reread = decide(state(article="a", meter_articles=frozenset({"a"})), NOW, CFG)
    assert not reread.records_read and reread.meter is not None and reread.meter.used == 1
    peek = decide(state(article=None, meter_articles=frozenset({"a"})), NOW, CFG)
    assert peek.allowed and not peek.records_read and peek.meter is not None and peek.meter.used == 1
    exhausted = decide(state(article=None, meter_articles=frozenset({"a", "b", "c"})), NOW, CFG)
    assert not exhausted.allowed and not exhausted.records_read


def test_trace_explains_the_paywall() -> None:
    st = state(
        comp=CompFact(NOW - DAY),
        subscriptions=(sub("canceled", ended_at=NOW - DAY),),
        payments=(pay(NOW - DAY, refunded_minor=500),),
        meter_articles=frozenset({"x", "y", "z"}),
    )
    trace = {s.rule: s for s in decide(st, NOW, CFG).trace}
    assert "expired" in trace["comp"].why
    assert "canceled" in trace["subscription"].why
    assert "refunded" in trace["donation"].why
    assert not trace["metered"].applies and "3" in trace["metered"].why
    assert trace["appeal"].applies


@pytest.mark.parametrize(
    ("tz", "now", "period", "resets"),
    [
        ("UTC", NOW, "2026-03", dt.datetime(2026, 4, 1, tzinfo=dt.UTC)),
        (
            "UTC",
            dt.datetime(2026, 12, 31, 23, 59, tzinfo=dt.UTC),
            "2026-12",
            dt.datetime(2027, 1, 1, tzinfo=dt.UTC),
        ),
        (
            "Europe/Paris",
            dt.datetime(2026, 3, 31, 22, 30, tzinfo=dt.UTC),
            "2026-04",
            dt.datetime(2026, 4, 30, 22, 0, tzinfo=dt.UTC),
        ),
        (
            "America/New_York",
            dt.datetime(2026, 3, 1, 3, 0, tzinfo=dt.UTC),
            "2026-02",
            dt.datetime(2026, 3, 1, 5, 0, tzinfo=dt.UTC),
        ),
    ],
)
def test_meter_period_follows_the_local_calendar(
    tz: str, now: dt.datetime, period: str, resets: dt.datetime
) -> None:
    assert meter_period(now, AccessSettings(meter_timezone=tz)) == (period, resets)


@pytest.mark.parametrize(
    "bad",
    [{"meter_timezone": "Mars/Olympus"}, {"free_articles_per_month": -1}, {"token_ttl_seconds": 0}],
)
def test_bad_settings_fail_at_start(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        AccessSettings(**bad)
