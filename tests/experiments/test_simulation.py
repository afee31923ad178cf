"""The simulation of issue 18's Done-when: synthetic readers with known true rates per variant go
through assignment, the ask budget and Checkout attribution; the results page names the truly best
variant with the stated confidence, the holdback sees no appeal, and nobody is asked more than the
budget across page and mail.

Everything goes through the real pieces, over three simulated weeks moved with the clock the tests
use (``paywall.clock.now``):

- each page view: the access check (``evaluate`` / ``evaluate_anonymous``: the rules, the ask budget
  with ``[appeal] max_asks``/``per_days``, ``min_articles`` and the footer arm) signed into the access
  token, then GET /support/appeal with that token (the Flask test client) for the footer's ask;
- the widget's beacon (view; impression when seen; click on Donate) through ``parse_beacon`` and
  ``record`` (paywall/experiments/events.py), which also spends the footer impressions' asks;
- a gift: the Checkout metadata from ``attribution(...)`` (the clicked ask, or none: the reader's arm,
  ``direct``), stored on the payment as the webhook sync would, with the reader's id (a donor's
  appeals then pause, as in production);
- on day 10, the appeal mail campaign ``keep-us-open`` (a channel of the same experiment) through
  ``send_campaign`` to a local SMTP sink: it skips readers at the budget, mails each reader their
  variant, not the holdback; gifts from a mail follow the ask in the mailed link's token.

Deterministic (one seed): 5,400 readers (a third site readers who can be mailed, the rest anonymous
browsers; so many that every arm, the holdback's fifth too, reaches the trust rule's 1,000 readers),
6 page views each. The rates are far above a real site's (a few per cent click, half
of the clickers give) so that a few thousand views per arm decide, in seconds.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import random
import re
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.wrappers import Response as BaseResponse

from paywall import clock, signing
from paywall.access.anonymous import anonymous_key
from paywall.access.service import evaluate, evaluate_anonymous
from paywall.access.tokens import sign_decision
from paywall.app import create_app
from paywall.campaigns.definition import load_campaign
from paywall.campaigns.sending import send_campaign
from paywall.config import Settings
from paywall.db import Database
from paywall.experiments.asks import decode_ask
from paywall.experiments.assignment import assign
from paywall.experiments.attribution import attribution
from paywall.experiments.definition import HOLDBACK
from paywall.experiments.events import parse_beacon, record
from paywall.experiments.results import experiment_results, refresh_counts
from paywall.experiments.stats import TRUST, lift, per_unit, wilson
from paywall.mail.smtp import SmtpTransport
from paywall.models import AppealSend, Reader
from paywall.models.appeals import AppealAsk, AppealEvent
from paywall.widget import views as widget_views
from paywall.widget.settings import appeal_settings
from tests.support.billing_rows import payment, utc
from tests.support.mail import SmtpSink, body_text, smtp_env

# Fixed, so the test is deterministic.
SEED = 1
Z999 = 3.29  # two-sided 99.9 %
READERS = 5400
PAGES = 6  # page views per reader over the first 20 days
START, NOW = utc(2026, 12, 1), utc(2026, 12, 21, 12)
MAIL_AT = utc(2026, 12, 10, 9)
CAMPAIGN = "keep-us-open"
MAX_ASKS, PER_DAYS, MIN_ARTICLES = 3, 7, 2
APPEAL_KEYS = ("appeal_experiment", "appeal_variant", "appeal_channel")


@dataclass(frozen=True)
class Truth:
    """What one ask of this arm really does: seen, clicked once seen, paid per ask, gift size.

    A gift follows a click (``pay / (seen * click)`` of the clicks), so ``pay`` is per view on
    every channel; the holdback sees nothing and a few give anyway, straight to /donate."""

    seen: float
    click: float
    pay: float
    gift: int  # mean, minor units of EUR

    @property
    def pay_after_click(self) -> float:
        return self.pay / (self.seen * self.click)


TRUTH = {
    "plain": Truth(seen=0.8, click=0.10, pay=0.025, gift=800),
    "urgent": Truth(seen=0.8, click=0.14, pay=0.06, gift=1200),
    "story": Truth(seen=0.8, click=0.12, pay=0.03, gift=900),
    HOLDBACK: Truth(seen=0.0, click=0.0, pay=0.015, gift=1000),
}
EXPERIMENT = {
    "footer-copy": {
        "holdback": 0.2,
        "start": "2026-12-01",
        "end": "2027-01-31",
        "channels": ["footer", CAMPAIGN],
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


@dataclass
class Tally:
    """What the simulation did, to check the service's counts against."""

    views: Counter[str]
    impressions: Counter[str]
    clicks: Counter[str]
    gifts: Counter[str]
    hidden: Counter[str]  # footer appeals the access check hid, by the trace's last rule
    mail: Counter[str]  # the campaign's tally


class World:
    """The simulated site: the service's app, its clock, the readers, and what each did."""

    def __init__(self, settings: Settings, db: Database, app: Flask, sink: SmtpSink) -> None:
        self.settings, self.db, self.app, self.sink = settings, db, app, sink
        self.client = app.test_client()
        self.answers = 0
        self.rng = random.Random(SEED)
        self.experiment = appeal_settings(settings).experiments["footer-copy"]
        self.reader_ids: dict[str, int] = {}
        self.tally = Tally(Counter(), Counter(), Counter(), Counter(), Counter(), Counter())

    def headline(self, arm: str) -> str:
        variant = self.experiment.variant(arm)
        assert variant is not None
        return variant.copy["headline"]

    def subject(self, n: int) -> str:
        """Reader ``n``'s access subject: a site reader id, or an anonymous browser's key."""
        return f"reader-{n}" if n % 3 == 0 else anonymous_key(f"browser-{n:010d}-sim")

    def add_readers(self) -> None:
        """The site readers, opted in to appeal mail."""
        with self.db.transaction() as session:
            for n in range(0, READERS, 3):
                row = Reader(
                    external_id=self.subject(n), email=f"reader-{n}@example.org", marketing_opt_in=True
                )
                session.add(row)
                session.flush()
                self.reader_ids[row.external_id] = row.id

    def appeal_answer(self, token: str) -> dict[str, Any]:
        """GET /support/appeal's answer: every tenth over HTTP (the test client, the whole stack),
        the others from the view function itself in a request context (the same code, a fifth of
        the time: the test client's request costs about 4 ms)."""
        url = f"/support/appeal?token={token}"
        self.answers += 1
        resp: BaseResponse
        if self.answers % 10 == 1:
            resp = self.client.get(url)
        else:
            with self.app.test_request_context(url):
                resp = self.app.make_response(widget_views.appeal())
        assert resp.status_code == 200, resp.get_json()
        body: dict[str, Any] = resp.get_json()
        return body

    def page_view(self, n: int, article: str, at: dt.datetime) -> None:
        """One article read: the access check, the appeal answer, the widget's beacon, maybe a gift."""
        subject = self.subject(n)
        with self.db.transaction() as session:
            if n % 3 == 0:
                decision = evaluate(session, self.settings, subject, article, at)
            else:
                decision = evaluate_anonymous(
                    session, self.settings, subject.removeprefix(" anon:"), article, at
                )
        # Signed on the real clock: the service checks a token's iat/exp with PyJWT, against the real time.
        _set_clock(None)
        token, _ = sign_decision(self.settings, subject, decision, at, article=article, anonymous=n % 3 != 0)
        _set_clock(at)  # the appeal route's clock: the ask is issued at the view's time
        body = self.appeal_answer(token)
        arm = assign(self.experiment, subject).variant
        if "ask" not in body:
            assert decision.appeal is False and decision.variant != HOLDBACK, (body, decision.trace)
            self.tally.hidden[decision.trace[-1].rule] += 1
            return
        ask = decode_ask(self.settings, body["ask"], at)
        assert (ask.channel, ask.experiment, ask.variant, body["variant"]) == (
            "footer",
            "footer-copy",
            arm,
            arm,
        )
        truth = TRUTH[arm]
        self.tally.views[arm] += 1
        events = [{"ask": body["ask"], "type": "view"}]
        clicked = False
        if arm == HOLDBACK:
            assert body["show"] is False and "headline" not in body  # the holdback sees no appeal
        else:
            assert body["show"] is True and body["headline"] == self.headline(arm)
            assert f"ask={body['ask']}" in body["donate_url"]
            if self.rng.random() < truth.seen:
                events.append({"ask": body["ask"], "type": "impression"})
                self.tally.impressions[arm] += 1
                if self.rng.random() < truth.click:
                    events.append({"ask": body["ask"], "type": "click", "action": "donate"})
                    self.tally.clicks[arm] += 1
                    clicked = True
        outcome = record(
            self.db, self.settings, parse_beacon({"events": events}), at + dt.timedelta(seconds=2)
        )
        assert (outcome.recorded, outcome.dropped) == (len(events), 0)
        if clicked and self.rng.random() < truth.pay_after_click:
            self.give(subject, arm, body["ask"], "footer", at)
        elif arm == HOLDBACK and self.rng.random() < truth.pay:
            self.give(subject, arm, None, "direct", at)

    def give(self, subject: str, arm: str, ask: str | None, channel: str, at: dt.datetime) -> None:
        """A gift through Checkout, stored with the metadata Checkout carried (as the sync would)."""
        paid_at = at + dt.timedelta(minutes=5)
        metadata = attribution(self.settings, ask, subject, paid_at)
        assert metadata == dict(zip(APPEAL_KEYS, ("footer-copy", arm, channel), strict=True))
        with self.db.transaction() as session:
            payment(
                session,
                amount_minor=_gift(self.rng, TRUTH[arm].gift),
                currency="eur",
                paid_at=paid_at,
                reader_id=self.reader_ids.get(subject),
                **metadata,
            )
        self.tally.gifts[arm] += 1

    def send_mail(self) -> None:
        """The appeal campaign on day 10: the budget, the variants' copy, the holdback left out."""
        campaign = load_campaign(self.settings, CAMPAIGN, environ={})
        _set_clock(None)  # the mailed links' tokens, on the real clock (as the access tokens)
        with SmtpTransport(host="127.0.0.1", port=self.sink.port, security="none", backoff_seconds=0) as smtp:
            report = send_campaign(self.db, self.settings, campaign, smtp, force=True, now=lambda: MAIL_AT)
        self.tally.mail = report.tally
        for received in self.sink.received:
            text = body_text(received.message)
            link = next(w for w in text.split() if "/donate?token=" in w)
            claims = signing.verify(
                self.settings, parse_qs(urlparse(link).query)["token"][0], purpose="reader-link"
            )
            ask = decode_ask(self.settings, claims["ask"], MAIL_AT)
            arm = assign(self.experiment, ask.subject).variant
            assert (ask.channel, ask.experiment, ask.variant) == (CAMPAIGN, "footer-copy", arm)
            assert received.message["Subject"] == self.headline(arm)
            # A message is a view and an impression (the mailer records them); read, it may be clicked.
            self.tally.views[arm] += 1
            self.tally.impressions[arm] += 1
            truth = TRUTH[arm]
            if self.rng.random() < truth.seen * truth.click and self.rng.random() < truth.pay_after_click:
                self.give(ask.subject, arm, claims["ask"], CAMPAIGN, MAIL_AT + dt.timedelta(hours=2))
        with self.db.transaction(readonly=True) as session:
            held = session.scalars(
                select(Reader.external_id)
                .join(AppealSend, AppealSend.reader_id == Reader.id)
                .where(AppealSend.campaign == CAMPAIGN, AppealSend.state == HOLDBACK)
            ).all()
        for subject in held:  # not mailed, but counted as a view (the lift's baseline); some give anyway
            assert assign(self.experiment, subject).holdback
            self.tally.views[HOLDBACK] += 1
            if self.rng.random() < TRUTH[HOLDBACK].pay:
                self.give(subject, HOLDBACK, None, "direct", MAIL_AT + dt.timedelta(hours=2))

    def run(self) -> None:
        """Every reader's page views in time order, the mail campaign at its hour."""
        views = []
        for n in range(READERS):
            for page in range(PAGES):
                at = START + dt.timedelta(
                    days=self.rng.randrange(20), minutes=self.rng.randrange(12 * 60) + 8 * 60
                )
                views.append((at, n, f"story-{n % 50}-{page}"))
        views.sort()
        mailed = False
        for at, n, article in views:
            if not mailed and at >= MAIL_AT:
                self.send_mail()
                mailed = True
            self.page_view(n, article, at)


REAL_NOW = clock.now


def _set_clock(when: dt.datetime | None) -> None:
    """Pin ``paywall.clock.now`` to ``when`` (None: the real clock); the test's monkeypatch restores it."""
    clock.now = REAL_NOW if when is None else (lambda: when)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        yield s


@pytest.fixture
def sim_settings(make_settings: Callable[..., Settings], sink: SmtpSink) -> Settings:
    return make_settings(
        {"PAYWALL_SESSION_SECRET": "simulation-session-secret", **smtp_env(sink)},
        mailer={"backoff_seconds": 0.0},
        access={"free_articles_per_month": 100},
        ratelimit={"enabled": False},  # thousands of readers, all from the test client's one address
        appeal={
            "experiments": EXPERIMENT,
            "max_asks": MAX_ASKS,
            "per_days": PER_DAYS,
            "min_articles": MIN_ARTICLES,
        },
    )


def _over_budget(db: Database) -> list[tuple[str, int]]:
    """(subject, asks) for every window of ``per_days`` days holding more than ``max_asks`` asks."""
    with db.transaction(readonly=True) as session:
        by_subject: dict[str, list[dt.datetime]] = defaultdict(list)
        for subject, at in session.execute(select(AppealAsk.subject, AppealAsk.asked_at)):
            by_subject[subject].append(at if at.tzinfo else at.replace(tzinfo=dt.UTC))
    found = []
    for subject, times in by_subject.items():
        times.sort()
        for i, start in enumerate(times):
            inside = bisect_left(times, start + dt.timedelta(days=PER_DAYS)) - i
            if inside > MAX_ASKS:
                found.append((subject, inside))
    return found


@pytest.mark.slow  # about 70 s on SQLite: 5,400 readers, so that every arm reaches the trust rule's readers
def test_the_results_name_the_truly_best_variant(
    sim_settings: Settings, db: Database, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clock, "now", clock.now)  # restored after the test; World moves it
    app: Flask = create_app(sim_settings, db=db)
    app.config["TESTING"] = True
    world = World(sim_settings, db, app, sink)
    world.add_readers()
    world.run()
    tally = world.tally

    # The ask budget held across page and mail, and it did bind on both. (Read before the rollup:
    # it prunes asks older than per_days, which can no longer count.)
    assert _over_budget(db) == []
    assert tally.hidden["ask_budget"] > 0 and tally.hidden["min_articles"] > 0
    assert tally.mail["sent"] > 0 and tally.mail["over_budget"] > 0 and tally.mail["holdback"] > 0
    with db.transaction(readonly=True) as session:
        channels = Counter(session.scalars(select(AppealAsk.channel)))
        asked = set(session.scalars(select(AppealAsk.subject)))
    refresh_counts(db, sim_settings, NOW)
    with db.transaction(readonly=True) as session:
        held = session.scalar(
            select(func.count()).where(AppealEvent.variant == HOLDBACK, AppealEvent.type != "view")
        )
        (result,) = experiment_results(session, sim_settings, NOW)
    assert channels == {
        "footer": sum(tally.impressions.values()) - tally.mail["sent"],
        CAMPAIGN: tally.mail["sent"],
    }
    # The holdback was never shown the appeal, by page or mail: views only, and never asked.
    assert held == 0
    assert not [s for s in asked if assign(world.experiment, s).holdback]
    assert not [r for r in sink.recipients() if assign(world.experiment, r.split("@")[0]).holdback]

    assert list(result.arms) == ["eur"]
    arms = {r.arm: r for r in result.arms["eur"]}
    assert list(arms) == ["plain", "urgent", "story", HOLDBACK]
    # Every view, impression, click and gift was counted for its arm.
    assert {a: r.counts.views for a, r in arms.items()} == dict(tally.views)
    assert {a: r.counts.impressions for a, r in arms.items() if a != HOLDBACK} == dict(tally.impressions)
    assert {a: r.counts.clicks for a, r in arms.items() if a != HOLDBACK} == dict(tally.clicks)
    assert {a: r.sums.payments for a, r in arms.items()} == dict(tally.gifts)
    # A fifth of the readers is held back. Its share of the views is larger: it never spends asks,
    # so the budget never hides its (invisible) appeal.
    held_back = sum(assign(world.experiment, world.subject(n)).holdback for n in range(READERS))
    assert abs(held_back / READERS - 0.2) < 0.03
    assert tally.views[HOLDBACK] / sum(tally.views.values()) > held_back / READERS
    assert arms[HOLDBACK].counts.impressions == 0 and arms[HOLDBACK].counts.clicks == 0
    assert arms[HOLDBACK].per_1000_impressions is None and arms[HOLDBACK].p_best is None

    # Every figure is within 3.3 standard errors of the truth (99.9 % intervals: with a dozen figures
    # checked, 95 % ones would miss one now and then by design; test_stats.py checks their coverage).
    for arm, r in arms.items():
        pay = wilson(r.sums.payments, r.counts.views, z=Z999)
        assert pay is not None and pay.low <= TRUTH[arm].pay <= pay.high, arm
        revenue = per_unit(r.sums.total, r.sums.squares, r.counts.views, z=Z999)
        assert revenue is not None and revenue.low <= _revenue_per_view(arm) <= revenue.high, arm

    # The truly best variant, with the stated confidence, and trustworthy by the stated rule.
    if os.environ.get("PAYWALL_SIMULATION_TABLE"):  # the table in docs/experiments.md, with -s
        for arm, r in arms.items():
            lift_ = f"{r.lift.value:+.0%} [{r.lift.low:+.0%}, {r.lift.high:+.0%}]" if r.lift else ""
            per = r.per_reader.value / 100 if r.per_reader else 0.0
            print(f"| {arm} | {r.counts.readers:,} | {r.counts.views:,} | {r.counts.impressions:,} | "
                  f"{r.counts.clicks:,} | {r.sums.conversions} | {r.sums.total / 100:,.2f} | {per:.3f} | "
                  f"{lift_} | {r.p_best if r.p_best is not None else ''} |")  # fmt: skip
        print(dict(tally.hidden), dict(tally.mail))
    verdict = result.verdicts["eur"]
    assert verdict.best == "urgent" and verdict.trustworthy, verdict.why
    assert arms["urgent"].p_best is not None and arms["urgent"].p_best >= TRUST.min_p_best
    assert sum(r.p_best or 0 for r in arms.values()) == pytest.approx(1.0)
    # Lift over the holdback: its 99.9 % interval holds the true lift for every variant; the best
    # one's is right in sign (its 95 % interval is above 0).
    for arm in ("plain", "urgent", "story"):
        r = arms[arm]
        wide = lift(
            (r.sums.total, r.sums.squares, r.counts.views),
            (arms[HOLDBACK].sums.total, arms[HOLDBACK].sums.squares, arms[HOLDBACK].counts.views),
            z=Z999,
        )
        true_lift = _revenue_per_view(arm) / _revenue_per_view(HOLDBACK) - 1
        assert wide is not None and wide.low <= true_lift <= wide.high, (arm, wide)
    urgent = arms["urgent"].lift
    assert urgent is not None and urgent.low > 0

    _the_page_and_the_report_say_so(app, db)


def _the_page_and_the_report_say_so(app: Flask, db: Database) -> None:
    """The /reports page names urgent as best, trustworthy, with the rule in words; the JSON says the same."""
    from paywall import auth

    client = app.test_client()
    with db.transaction() as s:
        _, key = auth.create_key(s, role="finance", name="simulation-desk")
    clock.now = lambda: NOW
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/reports").get_data(as_text=True))
    assert token
    client.post("/reports/sign-in", data={"key": key, "csrf_token": token.group(1)})
    html = client.get("/reports").get_data(as_text=True)
    rows = client.get("/v1/reports/experiments", headers={"Authorization": f"Bearer {key}"}).get_json()
    assert (
        'id="experiments"' in html
        and "EUR:\n        trustworthy</strong> — urgent is best with P(best)" in html
    )
    assert "at least 30 conversions" in html and 'svg viewBox="0 0 760 220"' in html
    best = [r for r in rows["rows"] if r["p_best"] is not None and r["p_best"] >= 0.95]
    assert [r["arm"] for r in best] == ["urgent"] and all(r["trustworthy"] for r in rows["rows"])
