"""decide() at every level against every kind of reader, as a table (no database)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from paywall.access.levels import allowance
from paywall.access.rules import (
    LEVELS,
    CompFact,
    PaymentFact,
    ReaderState,
    SubscriptionFact,
    decide,
)
from paywall.access.settings import AccessSettings

NOW = dt.datetime(2026, 3, 15, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
CFG = AccessSettings()  # 3 free articles a month, 5 for a registered reader


def sub(status: str = "active", **kw: Any) -> SubscriptionFact:
    kw.setdefault("stripe_subscription_id", "sub_1")
    kw.setdefault("current_period_start", NOW - 10 * DAY)
    kw.setdefault("current_period_end", NOW + 20 * DAY)
    return SubscriptionFact(status=status, **kw)


def donation(**kw: Any) -> PaymentFact:
    kw.setdefault("stripe_charge_id", "ch_1")
    kw.setdefault("amount_minor", 500)
    return PaymentFact(kind="donation", paid_at=NOW - 2 * DAY, **kw)


def read(n: int) -> frozenset[str]:
    return frozenset(f"old-{i}" for i in range(n))


# Every kind of reader the access check meets. Each reads the new article "a".
READERS: dict[str, ReaderState] = {
    "anonymous browser": ReaderState(reader=" anon:abcdefghijklmnop", article="a", anonymous=True),
    "unknown site id": ReaderState(reader="cookie-1", article="a"),
    "registered": ReaderState(reader="r", article="a", registered=True),
    "comp": ReaderState(reader="r", article="a", comp=CompFact(NOW + DAY)),
    "subscriber": ReaderState(reader="r", article="a", subscriptions=(sub(),)),
    "trial": ReaderState(reader="r", article="a", subscriptions=(sub("trialing", trial_end=NOW + DAY),)),
    "grace": ReaderState(
        reader="r", article="a", subscriptions=(sub("past_due", payment_failed_at=NOW - DAY),)
    ),
    "paused": ReaderState(reader="r", article="a", subscriptions=(sub("paused"),)),
    "collection paused": ReaderState(
        reader="r", article="a", subscriptions=(sub(pause_collection_behavior="void"),)
    ),
    "donor": ReaderState(reader="r", article="a", payments=(donation(),)),
    "refunded donor": ReaderState(reader="r", article="a", payments=(donation(refunded_minor=500),)),
    "meter used up": ReaderState(reader="cookie-2", article="a", meter_articles=read(3), meter_slot=3),
    "anonymous meter used up": ReaderState(
        reader=" anon:x", article="a", anonymous=True, meter_articles=read(3), meter_slot=3
    ),
    "registered past the anonymous allowance": ReaderState(
        reader="r", article="a", registered=True, meter_articles=read(3), meter_slot=3
    ),
    "registered meter used up": ReaderState(
        reader="r", article="a", registered=True, meter_articles=read(5), meter_slot=5
    ),
    "registered subscriber": ReaderState(reader="r", article="a", registered=True, subscriptions=(sub(),)),
}

# Readers with no entitlement who have not registered: signing up gives them more (5 > 3).
NOT_REGISTERED = ("anonymous browser", "unknown site id", "paused", "collection paused", "refunded donor")

# (reader kind) -> {level: (allowed, reason, register)}
EXPECTED: dict[str, dict[str, tuple[bool, str, bool]]] = {
    **{
        kind: {
            "free": (True, "free", True),
            "metered": (True, "metered", True),
            "registered": (False, "registration_required", True),
            "supporters": (False, "supporters_only", True),
        }
        for kind in NOT_REGISTERED
    },
    "registered": {
        "free": (True, "free", False),
        "metered": (True, "metered", False),
        "registered": (True, "metered", False),
        "supporters": (False, "supporters_only", False),
    },
    **{
        kind: {
            "free": (True, "free", False),
            "metered": (True, reason, False),
            "registered": (True, reason, False),
            "supporters": (True, reason, False),
        }
        for kind, reason in (
            ("comp", "comp"),
            ("subscriber", "subscription"),
            ("trial", "trial"),
            ("grace", "grace_period"),
            ("donor", "donation"),
            ("registered subscriber", "subscription"),
        )
    },
    **{
        kind: {
            "free": (True, "free", True),
            "metered": (False, "meter_exhausted", True),
            "registered": (False, "registration_required", True),
            "supporters": (False, "supporters_only", True),
        }
        for kind in ("meter used up", "anonymous meter used up")
    },
    "registered past the anonymous allowance": {
        "free": (True, "free", False),
        "metered": (True, "metered", False),
        "registered": (True, "metered", False),
        "supporters": (False, "supporters_only", False),
    },
    "registered meter used up": {
        "free": (True, "free", False),
        "metered": (False, "meter_exhausted", False),
        "registered": (False, "meter_exhausted", False),
        "supporters": (False, "supporters_only", False),
    },
}

TABLE = [(kind, level, *EXPECTED[kind][level]) for kind in READERS for level in LEVELS]


def test_the_table_covers_every_reader_at_every_level() -> None:
    assert set(EXPECTED) == set(READERS)
    assert all(set(levels) == set(LEVELS) for levels in EXPECTED.values())


@pytest.mark.parametrize(("kind", "level", "allowed", "reason", "register"), TABLE)
def test_level_table(kind: str, level: str, allowed: bool, reason: str, register: bool) -> None:
    decision = decide(READERS[kind], NOW, CFG, level)
    trace = [s.as_dict() for s in decision.trace]
    assert (decision.allowed, decision.reason, decision.register) == (allowed, reason, register), trace
    assert decision.level == level
    # The trace explains the level in one line, first.
    assert [s.rule for s in decision.trace].count("level") == 1 and trace[0]["rule"] == "level"
    assert trace[0]["why"].startswith(level + ":")
    # Only a metered answer for a new article spends the allowance.
    assert decision.records_read == (reason == "metered" and decision.allowed)
    if reason in ("free", "supporters_only", "registration_required"):
        assert decision.meter is None and decision.until is None


def test_registered_readers_spend_their_larger_allowance() -> None:
    state = READERS["registered past the anonymous allowance"]
    decision = decide(state, NOW, CFG, "metered")
    assert decision.meter is not None and (decision.meter.used, decision.meter.limit) == (4, 5)
    assert "a registered reader" in decision.trace[0].why


def test_an_anonymous_browser_is_never_looked_up_for_entitlements() -> None:
    # Even if facts were somehow present, an anonymous state grants nothing.
    state = dataclasses.replace(READERS["subscriber"], anonymous=True, reader=" anon:x")
    decision = decide(state, NOW, CFG, "supporters")
    assert (decision.allowed, decision.reason) == (False, "supporters_only")
    assert any(s.rule == "entitlements" and not s.applies for s in decision.trace)


def test_zero_registered_allowance_means_the_same_as_anonymous() -> None:
    cfg = AccessSettings(registered_free_articles_per_month=0)
    assert allowance(cfg, True) == allowance(cfg, False) == 3
    unknown = READERS["unknown site id"]
    # Signing up gives nothing more at the metered level, but is what the registered level needs.
    assert decide(unknown, NOW, cfg, "metered").register is False
    assert decide(unknown, NOW, cfg, "registered").register is True
    registered = READERS["registered past the anonymous allowance"]
    assert decide(registered, NOW, cfg, "metered").reason == "meter_exhausted"


def test_a_re_read_stays_free_at_the_registered_level() -> None:
    state = dataclasses.replace(READERS["registered meter used up"], article="old-1")
    decision = decide(state, NOW, CFG, "registered")
    assert (decision.allowed, decision.reason, decision.records_read) == (True, "metered", False)


def test_the_appeal_flag_does_not_depend_on_the_level() -> None:
    for kind, state in READERS.items():
        appeals = {decide(state, NOW, CFG, level).appeal for level in LEVELS}
        assert len(appeals) == 1, kind


def test_an_unknown_level_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown access level"):
        decide(READERS["registered"], NOW, CFG, "premium")
