"""The ask budget, min_articles and the footer experiment after the rules (paywall/access/asking.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from paywall.access.asking import apply_asks
from paywall.access.facts import Decision, ReaderState, Step
from paywall.access.service import check_access, evaluate, evaluate_anonymous
from paywall.access.tokens import issue_access_token
from paywall.config import Settings
from paywall.db import Database
from paywall.experiments.assignment import assign
from paywall.models import AppealAsk
from paywall.widget.settings import appeal_settings
from tests.support import access_rows as f

NOW = dt.datetime(2026, 12, 10, 12, 0, tzinfo=dt.UTC)

FOOTER_COPY = {
    "holdback": 0.2,
    "start": "2026-12-01",
    "end": "2027-01-31",
    "channels": ["footer"],
    "variants": {
        "plain": {"headline": "Help keep us open"},
        "urgent": {"headline": "We are in survival mode"},
    },
}


def experiment_settings(make_settings: Callable[..., Settings], **appeal: Any) -> Settings:
    """Settings with the footer-copy experiment and the given [appeal] keys."""
    return make_settings(appeal={"experiments": {"footer-copy": FOOTER_COPY}, **appeal})


def subject_in(settings: Settings, arm: str, prefix: str = "reader") -> str:
    """A subject the footer-copy experiment puts in ``arm``."""
    experiment = appeal_settings(settings).experiments["footer-copy"]
    return next(s for s in (f"{prefix}-{i}" for i in range(1000)) if assign(experiment, s).variant == arm)


def shown(trace: tuple[Step, ...] = (Step("appeal", True, "shown: not a supporter"),)) -> Decision:
    return Decision(True, "metered", None, None, True, trace, records_read=True)


# Pure rules -----------------------------------------------------------------------------------


def test_no_budget_no_minimum_no_experiment_changes_nothing(make_settings: Callable[..., Settings]) -> None:
    appeal = appeal_settings(make_settings())
    decision = shown()
    assert apply_asks(decision, ReaderState("ana", asks=99), appeal, None) is decision


def test_a_hidden_appeal_is_never_assigned_nor_counted(make_settings: Callable[..., Settings]) -> None:
    settings = experiment_settings(make_settings, max_asks=1)
    appeal = appeal_settings(settings)
    hidden = Decision(True, "subscription", None, None, False, (Step("appeal", False, "hidden"),))
    assignment = assign(appeal.experiments["footer-copy"], "ana")
    assert apply_asks(hidden, ReaderState("ana", asks=5), appeal, assignment) is hidden


def test_budget_left_says_how_much(make_settings: Callable[..., Settings]) -> None:
    appeal = appeal_settings(make_settings(appeal={"max_asks": 3, "per_days": 7}))
    out = apply_asks(shown(), ReaderState("ana", asks=2), appeal, None)
    assert out.appeal is True
    assert out.trace[-1] == Step("ask_budget", True, "2 of 3 asks in the last 7 days")


def test_budget_reached_hides_the_appeal(make_settings: Callable[..., Settings]) -> None:
    appeal = appeal_settings(make_settings(appeal={"max_asks": 3, "per_days": 7}))
    out = apply_asks(shown(), ReaderState("ana", asks=3), appeal, None)
    assert out.appeal is False and out.allowed is True and out.reason == "metered"
    assert out.trace[-1] == Step("ask_budget", False, "hidden: 3 asks in the last 7 days reach max_asks 3")
    assert (out.experiment, out.variant) == ("", "")


def test_min_articles_counts_the_article_being_read(make_settings: Callable[..., Settings]) -> None:
    appeal = appeal_settings(make_settings(appeal={"min_articles": 3}))
    two_read = ReaderState("ana", meter_articles=frozenset({"a1", "a2"}))
    # The third article, which this answer reads, reaches the minimum.
    out = apply_asks(shown(), two_read, appeal, None)
    assert out.appeal is True
    assert out.trace[-1] == Step("min_articles", True, "3 articles read this month (asks start at 3)")
    # A re-read spends nothing: still two.
    reread = Decision(True, "metered", None, None, True, shown().trace)
    out = apply_asks(reread, two_read, appeal, None)
    assert out.appeal is False
    assert out.trace[-1] == Step("min_articles", False, "hidden: 2 articles read this month, asks start at 3")


def test_an_assigned_subject_is_named_in_the_trace(make_settings: Callable[..., Settings]) -> None:
    settings = experiment_settings(make_settings)
    appeal = appeal_settings(settings)
    subject = subject_in(settings, "urgent")
    out = apply_asks(
        shown(), ReaderState(subject), appeal, assign(appeal.experiments["footer-copy"], subject)
    )
    assert out.appeal is True
    assert (out.experiment, out.variant) == ("footer-copy", "urgent")
    assert out.trace[-1] == Step("experiment", True, "footer-copy: variant urgent")


def test_holdback_sees_no_appeal(make_settings: Callable[..., Settings]) -> None:
    settings = experiment_settings(make_settings)
    appeal = appeal_settings(settings)
    subject = subject_in(settings, "holdback")
    out = apply_asks(
        shown(), ReaderState(subject), appeal, assign(appeal.experiments["footer-copy"], subject)
    )
    assert out.appeal is False
    assert (out.experiment, out.variant) == ("footer-copy", "holdback")
    assert out.trace[-1] == Step("experiment", False, "holdback of footer-copy sees no appeal")


def test_budget_comes_before_the_experiment(make_settings: Callable[..., Settings]) -> None:
    """A subject past the budget is not assigned: the holdback's views count askable readers only."""
    settings = experiment_settings(make_settings, max_asks=1, min_articles=1)
    appeal = appeal_settings(settings)
    subject = subject_in(settings, "holdback")
    assignment = assign(appeal.experiments["footer-copy"], subject)
    out = apply_asks(shown(), ReaderState(subject, asks=1), appeal, assignment)
    assert (out.appeal, out.variant) == (False, "")
    assert [s.rule for s in out.trace] == ["appeal", "ask_budget"]
    out = apply_asks(shown(), ReaderState(subject, asks=0), appeal, assignment)
    assert [s.rule for s in out.trace] == ["appeal", "ask_budget", "min_articles", "experiment"]


# Through the service, on the database ------------------------------------------------------------


def _ask(db: Database, subject: str, at: dt.datetime, channel: str = "footer") -> None:
    with db.transaction() as s:
        s.add(AppealAsk(subject=subject, asked_at=at, channel=channel))


def test_budget_counts_footer_and_mail_asks_in_the_window(
    db: Database, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(appeal={"max_asks": 2, "per_days": 7})
    with db.transaction() as s:
        f.reader(s, "ana")
    _ask(db, "ana", NOW - dt.timedelta(days=8))  # outside the window
    _ask(db, "ana", NOW - dt.timedelta(days=3))
    _ask(db, "bob", NOW - dt.timedelta(days=1))  # someone else's
    with db.transaction() as s:
        body = check_access(s, settings, "ana", "a1", NOW, explain=True)
    assert body["appeal"] is True
    assert body["trace"][-1] == {
        "rule": "ask_budget",
        "applies": True,
        "why": "1 of 2 asks in the last 7 days",
    }
    _ask(db, "ana", NOW - dt.timedelta(days=1), channel="keep-us-open")  # an appeal mail
    with db.transaction() as s:
        body = check_access(s, settings, "ana", "a1", NOW, explain=True)
    assert body["appeal"] is False and body["allowed"] is True
    assert body["trace"][-1]["rule"] == "ask_budget" and not body["trace"][-1]["applies"]


def test_anonymous_browser_budget_is_its_own_key(
    db: Database, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(appeal={"max_asks": 1})
    browser = "b" * 22
    with db.transaction() as s:
        assert evaluate_anonymous(s, settings, browser, "a1", NOW).appeal is True
    _ask(db, " anon:" + browser, NOW - dt.timedelta(hours=1))
    with db.transaction() as s:
        decision = evaluate_anonymous(s, settings, browser, "a2", NOW)
    assert decision.appeal is False and decision.allowed is True
    assert decision.trace[-1].rule == "ask_budget"


def test_min_articles_through_the_meter(db: Database, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(appeal={"min_articles": 2})
    with db.transaction() as s:
        first = evaluate(s, settings, "cookie-1", "a1", NOW)
    with db.transaction() as s:
        second = evaluate(s, settings, "cookie-1", "a2", NOW)
    assert (first.appeal, second.appeal) == (False, True)


@pytest.mark.parametrize("arm", ["urgent", "holdback"])
def test_token_carries_the_arm_and_the_appeal_flag(
    db: Database, make_settings: Callable[..., Settings], arm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = experiment_settings(make_settings)
    subject = subject_in(settings, arm)
    monkeypatch.setattr("paywall.clock.now", lambda: NOW)
    with db.transaction() as s:
        token, _ = issue_access_token(s, settings, subject)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["appeal_experiment"] == "footer-copy" and claims["appeal_variant"] == arm
    assert claims["appeal"] is (arm != "holdback")


def test_no_running_experiment_leaves_the_token_alone(
    db: Database, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = experiment_settings(make_settings)
    monkeypatch.setattr("paywall.clock.now", lambda: dt.datetime(2026, 11, 30, 23, 59, tzinfo=dt.UTC))
    with db.transaction() as s:
        token, _ = issue_access_token(s, settings, subject_in(settings, "holdback"))
    claims = jwt.decode(token, options={"verify_signature": False})
    assert "appeal_experiment" not in claims and claims["appeal"] is True


def test_post_access_explains_the_ask_steps(
    db: Database,
    make_settings: Callable[..., Settings],
    make_key: Callable[[str], dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from paywall.app import create_app

    settings = experiment_settings(make_settings, max_asks=2, min_articles=1)
    monkeypatch.setattr("paywall.clock.now", lambda: NOW)
    client = create_app(settings, db=db).test_client()
    key = make_key("site")
    reader, held = subject_in(settings, "urgent"), subject_in(settings, "holdback")
    body = client.post(
        "/v1/access", json={"reader": reader, "article": "a1", "explain": True}, headers=key
    ).get_json()
    assert body["appeal"] is True
    assert [(s["rule"], s["applies"], s["why"]) for s in body["trace"][-3:]] == [
        ("ask_budget", True, "0 of 2 asks in the last 7 days"),
        ("min_articles", True, "1 articles read this month (asks start at 1)"),
        ("experiment", True, "footer-copy: variant urgent"),
    ]
    body = client.post(
        "/v1/access", json={"reader": held, "article": "a1", "explain": True}, headers=key
    ).get_json()
    assert body["appeal"] is False and body["allowed"] is True
    assert body["trace"][-1] == {
        "rule": "experiment",
        "applies": False,
        "why": "holdback of footer-copy sees no appeal",
    }
