"""Appeal mail is an ask: the budget, min_articles, the experiment's copy and holdback, the pause."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from paywall import clock, signing
from paywall.access.facts import meter_period
from paywall.access.service import evaluate
from paywall.access.settings import access_settings
from paywall.campaigns.definition import Campaign, load_campaign
from paywall.campaigns.selection import candidates
from paywall.campaigns.sending import send_campaign
from paywall.config import Settings
from paywall.db import Database
from paywall.experiments.asks import decode_ask, subject_hash
from paywall.experiments.assignment import assign
from paywall.mail.smtp import SmtpTransport
from paywall.models import AppealAsk, AppealEvent, AppealSend, MeterRead
from paywall.widget.settings import appeal_settings
from tests.campaigns.test_sending import token_of
from tests.support.mail import SmtpSink, add_payment, add_reader, body_text, smtp_env

CAMPAIGN = "keep-us-open"
EXPERIMENT = {
    "holdback": 0.4,
    "start": "2020-01-01",
    "end": "2099-12-31",
    "channels": [CAMPAIGN],
    "variants": {"urgent": {"headline": "We are in survival mode", "donate_label": "Donate now"}},
}


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        yield s


@pytest.fixture
def make(make_settings: Callable[..., Settings], sink: SmtpSink) -> Callable[..., Settings]:
    def build(**appeal: Any) -> Settings:
        return make_settings(smtp_env(sink), mailer={"backoff_seconds": 0.0}, appeal=appeal)

    return build


def send(db: Database, settings: Settings, sink: SmtpSink) -> Counter[str]:
    campaign: Campaign = load_campaign(settings, CAMPAIGN, environ={})
    with SmtpTransport(host="127.0.0.1", port=sink.port, security="none", backoff_seconds=0) as t:
        return send_campaign(db, settings, campaign, t, force=True).tally


def asks(db: Database) -> list[tuple[str, str]]:
    with db.transaction(readonly=True) as s:
        return sorted((a.subject, a.channel) for a in s.scalars(select(AppealAsk)))


def events(db: Database) -> Counter[tuple[str, str, str]]:
    with db.transaction(readonly=True) as s:
        return Counter((e.type, e.channel, e.variant) for e in s.scalars(select(AppealEvent)))


def footer_ask(db: Database, subject: str, days_ago: float = 1) -> None:
    with db.transaction() as s:
        s.add(
            AppealAsk(subject=subject, asked_at=clock.now() - dt.timedelta(days=days_ago), channel="footer")
        )


def test_with_a_budget_every_sent_mail_is_an_ask(
    db: Database, make: Callable[..., Settings], sink: SmtpSink
) -> None:
    settings = make(max_asks=5)
    add_reader(db, "ana")
    add_reader(db, "bob")
    assert send(db, settings, sink) == Counter(sent=2)
    assert asks(db) == [("ana", CAMPAIGN), ("bob", CAMPAIGN)]
    assert events(db) == Counter({("view", CAMPAIGN, ""): 2, ("impression", CAMPAIGN, ""): 2})


def test_no_budget_no_ask_is_kept_but_every_sent_mail_has_its_events(
    db: Database, make: Callable[..., Settings], sink: SmtpSink
) -> None:
    settings = make(max_asks=0)
    add_reader(db, "ana")
    add_reader(db, "bob")
    assert send(db, settings, sink) == Counter(sent=2)
    assert asks(db) == []  # max_asks 0: nothing reads appeal_asks, so nothing is kept
    assert events(db) == Counter({("view", CAMPAIGN, ""): 2, ("impression", CAMPAIGN, ""): 2})
    with db.transaction(readonly=True) as s:
        hashes = {e.subject for e in s.scalars(select(AppealEvent))}
    assert hashes == {subject_hash(settings, "ana"), subject_hash(settings, "bob")}  # nobody in the clear
    # A rerun sends nothing and counts nothing again.
    assert send(db, settings, sink) == Counter(already_sent=2)
    assert asks(db) == [] and sum(events(db).values()) == 4


def test_budget_across_footer_and_mail(db: Database, make: Callable[..., Settings], sink: SmtpSink) -> None:
    settings = make(max_asks=2, per_days=7)
    for name in ("full", "one-left", "old-asks"):
        add_reader(db, name)
    footer_ask(db, "full", 1)
    footer_ask(db, "full", 2)
    footer_ask(db, "one-left", 3)
    footer_ask(db, "old-asks", 8)  # outside the window
    footer_ask(db, "old-asks", 9)
    assert send(db, settings, sink) == Counter(sent=2, over_budget=1)
    assert sorted(sink.recipients()) == ["old-asks@example.org", "one-left@example.org"]
    # The mail spent one-left's last ask: the footer now stays hidden for them.
    with db.transaction() as s:
        decision = evaluate(s, settings, "one-left", "a1", clock.now())
    assert decision.appeal is False and decision.trace[-1].rule == "ask_budget"
    assert "2 asks in the last 7 days reach max_asks 2" in decision.trace[-1].why
    # Nobody is over the budget across page and mail.
    with db.transaction(readonly=True) as s:
        since = clock.now() - dt.timedelta(days=7)
        recent = Counter(s.scalars(select(AppealAsk.subject).where(AppealAsk.asked_at >= since)))
    assert max(recent.values()) <= 2


def test_too_new_below_min_articles(db: Database, make: Callable[..., Settings], sink: SmtpSink) -> None:
    settings = make(min_articles=2)
    for name in ("reader", "newcomer", "last-month"):
        add_reader(db, name)
    period, _ = meter_period(clock.now(), access_settings(settings))
    with db.transaction() as s:
        s.add_all(
            [
                MeterRead(reader="reader", period=period, article="a1", slot=1),
                MeterRead(reader="reader", period=period, article="a2", slot=2),
                MeterRead(reader="newcomer", period=period, article="a1", slot=1),
                MeterRead(reader="last-month", period="2000-01", article="a1", slot=1),
                MeterRead(reader="last-month", period="2000-01", article="a2", slot=2),
            ]
        )
    assert send(db, settings, sink) == Counter(sent=1, too_new=2)
    assert sink.recipients() == ["reader@example.org"]


def test_experiment_copy_links_and_holdback(
    db: Database, make: Callable[..., Settings], sink: SmtpSink
) -> None:
    settings = make(experiments={"mail-copy": EXPERIMENT}, max_asks=5)
    experiment = appeal_settings(settings).experiments["mail-copy"]
    names = [f"r-{i}" for i in range(12)]
    for name in names:
        add_reader(db, name)
    held = {n for n in names if assign(experiment, n).holdback}
    assert held and len(held) < len(names)
    tally = send(db, settings, sink)
    assert tally == Counter(sent=len(names) - len(held), holdback=len(held))
    assert {r.split("@")[0] for r in sink.recipients()} == set(names) - held

    message = sink.received[0].message
    reader = message["To"].split("<")[-1].split("@")[0]
    assert message["Subject"] == "We are in survival mode"
    text = body_text(message)
    assert "We are in survival mode." in text and "Donate now: https://" in text
    assert "Subscribe: https://" in text  # not in the variant: the template's own words
    assert "support us with your donations" in text
    donate = next(w for w in text.split() if w.startswith("https://paywall.example.org/donate?token="))
    claims = signing.verify(settings, token_of(donate), purpose="reader-link")
    ask = decode_ask(settings, claims["ask"], clock.now())
    assert (ask.channel, ask.experiment, ask.variant, ask.subject) == (
        CAMPAIGN,
        "mail-copy",
        "urgent",
        reader,
    )

    sent = len(names) - len(held)
    assert events(db) == Counter(
        {
            ("view", CAMPAIGN, "urgent"): sent,
            ("impression", CAMPAIGN, "urgent"): sent,
            ("view", CAMPAIGN, "holdback"): len(held),
        }
    )
    assert sorted(s for s, _ in asks(db)) == sorted(set(names) - held)  # the holdback spent no ask
    with db.transaction(readonly=True) as s:
        states = Counter(s.scalars(select(AppealSend.state)))
    assert states == Counter(sent=sent, holdback=len(held))

    # A rerun mails nobody and counts nobody twice.
    assert send(db, settings, sink) == Counter(already_sent=sent, holdback=len(held))
    assert len(sink.received) == sent and sum(events(db).values()) == 2 * sent + len(held)


def test_dry_run_tallies_holdback_without_writing(
    db: Database, make: Callable[..., Settings], sink: SmtpSink
) -> None:
    settings = make(experiments={"mail-copy": EXPERIMENT})
    for i in range(12):
        add_reader(db, f"r-{i}")
    campaign = load_campaign(settings, CAMPAIGN, environ={})
    report = send_campaign(db, settings, campaign, None, dry_run=True, force=True)
    assert report.tally["holdback"] > 0 and report.tally["would_send"] + report.tally["holdback"] == 12
    assert sum(events(db).values()) == 0 and asks(db) == []


def test_after_a_donation_every_channel_pauses_together(
    db: Database, make: Callable[..., Settings], sink: SmtpSink
) -> None:
    settings = make()
    donor = add_reader(db, "donor")
    add_payment(db, reader_id=donor, days_ago=10)
    guest_gift = add_reader(db, "guest-gift", email="Gift@Example.org")
    add_payment(db, email="gift@example.org", days_ago=3)
    add_reader(db, "never")
    old = add_reader(db, "old-donor")
    add_payment(db, reader_id=old, days_ago=200)
    with db.transaction(readonly=True) as s:
        # Even the segment that takes everyone who opted in pauses for a recent donor.
        found = {
            c.external_id: c.excluded for c in candidates(s, "all_opted_in", now=clock.now(), pause_days=90)
        }
    assert found == {"donor": "paused", "guest-gift": "paused", "never": None, "old-donor": None}
    assert guest_gift
    # The footer pauses for the same donor (paywall/access/rules.py), whatever the budget says.
    with db.transaction() as s:
        decision = evaluate(s, settings, "donor", "a1", clock.now())
    assert decision.appeal is False and "paused asks" in decision.trace[-1].why
