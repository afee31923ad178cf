"""The simulation of issue 18's Done-when: synthetic readers with known true rates per variant go
through assignment, the widget's events and attributed payments; the results name the truly best
variant with the stated confidence, the holdback sees no appeal, and the lift is right.

Deterministic (one seed) and fast: 6,000 readers, 48,000 views and about 90,000 events.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from paywall.app import create_app
from paywall.config import Settings
from paywall.db import Database
from paywall.experiments.asks import Ask, encode_ask
from paywall.experiments.assignment import assign, assignment_for
from paywall.experiments.definition import HOLDBACK
from paywall.experiments.results import experiment_results, refresh_counts
from paywall.experiments.stats import TRUST, lift, per_unit, wilson
from paywall.models.appeals import AppealAsk, AppealEvent
from paywall.widget.settings import appeal_settings
from tests.support.appeal_events import record_events
from tests.support.billing_rows import payment, utc

# Fixed, so the test is deterministic. Swept over seeds 1-9 and 18 when written: every one named
# urgent best and trustworthy; seed 18 alone had a figure outside its 99.9 % interval (urgent's
# revenue per view, 2 standard errors low in both its payment rate and its mean gift).
SEED = 1
Z999 = 3.29  # two-sided 99.9 %
READERS = 6000
PAGES = 8  # page views per reader over the first 20 days
START, NOW = utc(2026, 12, 1), utc(2026, 12, 21, 12)


@dataclass(frozen=True)
class Truth:
    """What a view of this arm really does: seen on screen, clicked, paid (per view), gift size."""

    seen: float
    click: float
    pay: float
    gift: int  # mean, minor units of EUR


TRUTH = {
    "plain": Truth(seen=0.8, click=0.04, pay=0.006, gift=800),
    "urgent": Truth(seen=0.8, click=0.06, pay=0.012, gift=1200),
    "story": Truth(seen=0.8, click=0.05, pay=0.007, gift=900),
    # The holdback sees nothing; a few give anyway, straight to /donate (intention to treat).
    HOLDBACK: Truth(seen=0.0, click=0.0, pay=0.004, gift=1000),
}
EXPERIMENT = {
    "footer-copy": {
        "holdback": 0.2,
        "start": "2026-12-01",
        "end": "2027-01-31",
        "channels": ["footer"],
        "variants": {
            "plain": {"headline": "Help keep us open"},
            "urgent": {"headline": "We are in survival mode"},
            "story": {"headline": "Read how your money is spent"},
        },
    }
}


def _revenue_per_view(arm: str) -> float:
    return TRUTH[arm].pay * TRUTH[arm].gift


def _gift(rng: random.Random, mean: int) -> int:
    sigma = 0.7  # skewed like real gifts: most small, a few large
    return max(100, round(rng.lognormvariate(math.log(mean) - sigma * sigma / 2, sigma)))


def _simulate(settings: Settings, db: Database) -> Counter[str]:
    """Every reader's page views: the widget's events as POST /support/events records them, and
    the payments the webhook sync would store with the Checkout metadata. Returns views per arm."""
    rng = random.Random(SEED)
    experiment = appeal_settings(settings).experiments["footer-copy"]
    views: Counter[str] = Counter()
    by_day: dict[dt.datetime, list[dict[str, Any]]] = {}
    payments: list[dict[str, Any]] = []
    for n in range(READERS):
        subject = f" anon:browser-{n}" if n % 3 else f"reader-{n}"
        for _ in range(PAGES):
            at = START + dt.timedelta(days=rng.randrange(20), minutes=rng.randrange(12 * 60))
            arm = assignment_for(settings, "footer", subject, at)
            assert arm is not None and arm.variant == assign(experiment, subject).variant
            truth = TRUTH[arm.variant]
            ask = encode_ask(settings, Ask("footer", "footer-copy", arm.variant, subject, at))
            batch = by_day.setdefault(at.replace(hour=23, minute=59), [])
            views[arm.variant] += 1
            batch.append({"ask": ask, "type": "view"})
            if rng.random() < truth.seen:
                batch.append({"ask": ask, "type": "impression"})
                if rng.random() < truth.click:
                    batch.append({"ask": ask, "type": "click", "action": "donate"})
            if rng.random() < truth.pay:
                channel = "direct" if arm.holdback else "footer"
                payments.append(
                    {
                        "amount_minor": _gift(rng, truth.gift),
                        "currency": "eur",
                        "paid_at": at + dt.timedelta(minutes=5),
                        "appeal_experiment": "footer-copy",
                        "appeal_variant": arm.variant,
                        "appeal_channel": channel,
                    }
                )
    with db.transaction() as session:
        for arrived, batch in sorted(by_day.items()):
            recorded, dropped = record_events(session, settings, batch, arrived)
            assert (recorded, dropped) == (len(batch), 0)
        for values in payments:
            payment(session, **values)
        # A payment outside the experiment's window is not credited to it, nor one of another experiment.
        payment(session, appeal_experiment="footer-copy", appeal_variant="urgent", paid_at=utc(2026, 11, 30))
        payment(session, appeal_experiment="old-test", appeal_variant="urgent", paid_at=NOW)
    return views


@pytest.fixture
def sim_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        {"PAYWALL_SESSION_SECRET": "simulation-session-secret"}, appeal={"experiments": EXPERIMENT}
    )


def test_the_results_name_the_truly_best_variant(sim_settings: Settings, db: Database) -> None:
    views = _simulate(sim_settings, db)
    refresh_counts(db, sim_settings, NOW)
    with db.transaction(readonly=True) as session:
        (result,) = experiment_results(session, sim_settings, NOW)
        # The holdback was never shown the appeal: views, but no impression, click or footer ask.
        held = session.scalar(
            select(func.count()).where(AppealEvent.variant == HOLDBACK, AppealEvent.type != "view")
        )
        asked = session.scalar(select(func.count()).select_from(AppealAsk))
    assert held == 0
    assert list(result.arms) == ["eur"]
    arms = {r.arm: r for r in result.arms["eur"]}
    assert list(arms) == ["plain", "urgent", "story", HOLDBACK]
    # Every view was counted, and each arm got about its share (80 % split three ways, 20 % held back).
    assert {a: r.counts.views for a, r in arms.items()} == dict(views)
    total = sum(views.values())
    assert total == READERS * PAGES
    assert abs(views[HOLDBACK] / total - 0.2) < 0.02
    assert arms[HOLDBACK].counts.impressions == 0 and arms[HOLDBACK].counts.clicks == 0
    assert arms[HOLDBACK].per_1000_impressions is None and arms[HOLDBACK].p_best is None
    assert asked == sum(r.counts.impressions for r in arms.values())  # each footer impression spent one ask

    # Every figure is within 3.3 standard errors of the truth (99.9 % intervals: with a dozen figures
    # checked, 95 % ones would miss one now and then by design; test_stats.py checks their coverage).
    for arm, r in arms.items():
        truth = TRUTH[arm]
        pay = wilson(r.sums.payments, r.counts.views, z=Z999)
        assert pay is not None and pay.low <= truth.pay <= pay.high, arm
        revenue = per_unit(r.sums.total, r.sums.squares, r.counts.views, z=Z999)
        assert revenue is not None and revenue.low <= _revenue_per_view(arm) <= revenue.high, arm
        if arm != HOLDBACK:
            clicks = wilson(r.counts.clicks, r.counts.impressions, z=Z999)
            assert clicks is not None and clicks.low <= truth.click <= clicks.high, arm

    # The truly best variant, with the stated confidence, and trustworthy by the stated rule.
    verdict = result.verdicts["eur"]
    assert verdict.best == "urgent" and verdict.trustworthy, verdict.why
    assert arms["urgent"].p_best is not None and arms["urgent"].p_best >= TRUST.min_p_best
    assert sum(r.p_best or 0 for r in arms.values()) == pytest.approx(1.0)
    # Lift over the holdback: its 99.9 % interval holds the true lift for every variant; the best
    # one's is right in sign (its 95 % interval is above 0) and roughly in size (the ratio within
    # a factor of 2 of the truth: about three standard errors with the holdback's few dozen gifts).
    for arm in ("plain", "urgent", "story"):
        r = arms[arm]
        wide = lift(
            (r.sums.total, r.sums.squares, r.counts.views),
            (arms[HOLDBACK].sums.total, arms[HOLDBACK].sums.squares, arms[HOLDBACK].counts.views),
            z=Z999,
        )
        true_lift = _revenue_per_view(arm) / _revenue_per_view(HOLDBACK) - 1
        assert wide is not None and wide.low <= true_lift <= wide.high, (arm, wide)
    urgent, true_urgent = arms["urgent"].lift, _revenue_per_view("urgent") / _revenue_per_view(HOLDBACK)
    assert urgent is not None and urgent.low > 0
    assert abs(math.log((urgent.value + 1) / true_urgent)) < math.log(2), urgent

    _the_page_and_the_report_say_so(sim_settings, db)


def _the_page_and_the_report_say_so(settings: Settings, db: Database) -> None:
    """The /reports page names urgent as best, trustworthy, with the rule in words; the JSON says the same."""
    from paywall import auth, clock

    app: Flask = create_app(settings, db=db)
    app.config["TESTING"] = True
    client = app.test_client()
    with db.transaction() as s:
        _, key = auth.create_key(s, role="finance", name="simulation-desk")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(clock, "now", lambda: NOW)
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/reports").get_data(as_text=True))
        assert token
        client.post("/reports/sign-in", data={"key": key, "csrf_token": token.group(1)})
        html = client.get("/reports").get_data(as_text=True)
        rows = client.get("/v1/reports/experiments", headers={"Authorization": f"Bearer {key}"}).get_json()
    assert (
        'id="experiments"' in html
        and "EUR:\n        trustworthy</strong> — urgent is best with P(best)" in html
    )
    assert "at least 30 payments" in html and 'svg viewBox="0 0 760 220"' in html
    best = [r for r in rows["rows"] if r["p_best"] is not None and r["p_best"] >= 0.95]
    assert [r["arm"] for r in best] == ["urgent"] and all(r["trustworthy"] for r in rows["rows"])
