"""The goal line: its figures, its text, and the per-process cache (paywall/experiments/goal.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from paywall.config import Settings
from paywall.db import Database
from paywall.experiments import goal
from paywall.experiments.goal import goal_text, raised, supporters
from tests.support import access_rows as f

NOW = dt.datetime(2026, 12, 15, 12, 0, tzinfo=dt.UTC)
LAST_MONTH = dt.datetime(2026, 11, 30, 23, 0, tzinfo=dt.UTC)


def _rows(db: Database) -> None:
    with db.transaction() as s:
        ana, bob, cy = f.reader(s, "ana"), f.reader(s, "bob"), f.reader(s, "cy")
        f.subscription(s, ana, status="active")
        f.subscription(s, bob, status="canceled")
        f.subscription(s, cy, kind="donation", status="active")  # a recurring donation
        # One-off donations this month: bob twice (one donor), a guest by address, one refunded.
        f.payment(s, bob, NOW - dt.timedelta(days=2), amount_minor=1000)
        f.payment(s, bob, NOW - dt.timedelta(days=1), amount_minor=500)
        guest = f.payment(s, bob, NOW - dt.timedelta(days=1), amount_minor=2000, email="Guest@Example.org")
        guest.reader_id = None
        f.payment(s, cy, NOW - dt.timedelta(days=3), amount_minor=700, refunded_minor=700)
        f.payment(s, cy, LAST_MONTH, amount_minor=9999)  # last month
        f.payment(s, ana, NOW, amount_minor=300, currency="usd")  # another currency
        # A subscription payment counts toward the amount, and a partial refund is netted out.
        f.payment(
            s,
            ana,
            NOW,
            kind="subscription",
            amount_minor=800,
            refunded_minor=100,
            stripe_subscription_id="sub_x",
        )


def test_supporters_and_amount(db: Database) -> None:
    _rows(db)
    with db.transaction() as s:
        # ana's subscription, cy's recurring donation; bob, the guest and ana (in USD: a subscriber
        # who also gave counts twice, as documented) gave once this month; cy's gift was refunded.
        assert supporters(s, NOW) == 5
        assert raised(s, NOW, "eur") == 1000 + 500 + 2000 + 0 + 700
        assert raised(s, NOW, "usd") == 300


def test_the_text_is_filled_and_money_formatted(db: Database, make_settings: Callable[..., Settings]) -> None:
    _rows(db)
    amount = make_settings(
        appeal={
            "goal": {
                "kind": "amount",
                "text": "{raised} of {target} raised",
                "target": 600000,
                "currency": "eur",
            }
        }
    )
    assert goal_text(amount, db, NOW) == "42.00 EUR of 6000.00 EUR raised"
    count = make_settings(appeal={"goal": {"kind": "supporters", "text": "{count} readers support us {oops"}})
    assert goal_text(count, db, NOW) == "5 readers support us {oops"
    assert goal_text(make_settings(), db, NOW) is None  # no goal configured


def test_the_figure_is_cached_for_refresh_seconds(
    db: Database, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(
        appeal={"goal": {"kind": "supporters", "text": "{count}", "refresh_seconds": 60}}
    )
    clock = [1000.0]
    monkeypatch.setattr(goal, "monotonic", lambda: clock[0])
    queries = []
    real = goal.goal_figure

    def counted(*args: Any) -> int:
        queries.append(1)
        return real(*args)

    monkeypatch.setattr(goal, "goal_figure", counted)
    assert goal_text(settings, db, NOW) == "0"
    with db.transaction() as s:
        f.subscription(s, f.reader(s, "ana"), status="active")
    clock[0] += 59
    assert [goal_text(settings, db, NOW) for _ in range(5)] == ["0"] * 5  # no query per view
    assert len(queries) == 1
    clock[0] += 1
    assert goal_text(settings, db, NOW) == "1" and len(queries) == 2


def test_a_failure_keeps_the_last_figure_and_logs(
    db: Database,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(appeal={"goal": {"kind": "supporters", "text": "{count}", "refresh_seconds": 1}})
    clock = [1000.0]
    monkeypatch.setattr(goal, "monotonic", lambda: clock[0])
    assert goal_text(settings, db, NOW) == "0"

    def broken(*args: object) -> int:
        raise RuntimeError("database gone")

    monkeypatch.setattr(goal, "goal_figure", broken)
    clock[0] += 5
    assert goal_text(settings, db, NOW) == "0"
    assert "could not compute the supporters figure" in caplog.text


def test_no_figure_yet_and_a_failure_means_no_line(
    db: Database, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(appeal={"goal": {"kind": "supporters", "text": "{count}"}})

    def broken(*args: object) -> int:
        raise RuntimeError("database gone")

    monkeypatch.setattr(goal, "goal_figure", broken)
    assert goal_text(settings, db, NOW) is None


def test_the_appeal_answer_carries_the_goal_line(
    db: Database, make_settings: Callable[..., Settings]
) -> None:
    from paywall.app import create_app
    from tests.checkout.test_pages import access_token

    settings = make_settings(appeal={"goal": {"kind": "supporters", "text": "{count} readers support us"}})
    client = create_app(settings, db=db).test_client()
    body = client.get(
        "/support/appeal", query_string={"token": access_token(settings, "reader-1")}
    ).get_json()
    assert body["show"] is True and body["goal_text"] == "0 readers support us"


def test_threads_share_one_computation(
    db: Database, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many request threads at once: one computes, the others wait for the first figure only."""
    import threading

    settings = make_settings(appeal={"goal": {"kind": "supporters", "text": "{count}"}})
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow(*args: Any) -> int:
        calls.append(1)
        started.set()
        release.wait(5)
        return 7

    monkeypatch.setattr(goal, "goal_figure", slow)
    results: list[str | None] = []
    threads = [
        threading.Thread(target=lambda: results.append(goal_text(settings, db, NOW))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    assert started.wait(5)
    release.set()
    for t in threads:
        t.join(5)
    assert results == ["7"] * 8 and len(calls) == 1


def test_the_goal_counts_the_reports_mode_and_never_a_negative_payment(
    db: Database, make_settings: Callable[..., Settings]
) -> None:
    """Test-mode payments made while trying the site out never reach a live goal line (and the
    other way round); a payment that lost more to a dispute than it brought counts 0."""
    with db.transaction() as s:
        ana, bob = f.reader(s, "ana"), f.reader(s, "bob")
        f.subscription(s, ana, status="active", livemode=True)
        f.subscription(s, bob, status="active", livemode=False)
        f.payment(s, ana, NOW, amount_minor=1000, livemode=True)
        f.payment(s, bob, NOW, amount_minor=4000, livemode=False)
        # Refunded in full and then lost a dispute (with its fee): kept -1500, counted 0.
        f.payment(s, ana, NOW, amount_minor=1500, refunded_minor=1500, disputed_minor=1500, livemode=True)
    with db.transaction() as s:
        assert raised(s, NOW, "eur", livemode=True) == 1000
        assert raised(s, NOW, "eur", livemode=False) == 4000
        assert raised(s, NOW, "eur") == 5000  # both modes; the lost payment is 0, not -1500
        assert supporters(s, NOW, livemode=True) == 2 and supporters(s, NOW, livemode=False) == 2
    goal = {"kind": "amount", "text": "{raised}", "target": 100, "currency": "eur"}
    live = make_settings({"PAYWALL_STRIPE_SECRET_KEY": "sk_live_goal"}, appeal={"goal": goal})
    test = make_settings({"PAYWALL_STRIPE_SECRET_KEY": "sk_test_goal"}, appeal={"goal": goal})
    assert goal_text(live, db, NOW) == "10.00 EUR"
    assert goal_text(test, db, NOW) == "40.00 EUR"
