"""check_access, issue_access_token and dismiss_appeal against the real database."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

import jwt
import pytest
from sqlalchemy import func, select

from paywall import clock, signing
from paywall.access.dismissals import dismiss_appeal
from paywall.access.service import check_access, peek, spend
from paywall.access.tokens import issue_access_token
from paywall.config import Settings
from paywall.db import Database
from paywall.models import AppealDismissal, MeterRead, Reader
from tests.support import access_rows as f

NOW = dt.datetime(2026, 3, 15, 12, 0, tzinfo=dt.UTC)


def test_subscriber_is_allowed_without_metering(db: Database, settings: Settings) -> None:
    with db.transaction() as s:
        ana = f.reader(s, "ana")
        f.subscription(s, ana, current_period_end=NOW + dt.timedelta(days=10))
    with db.transaction() as s:
        body = check_access(s, settings, "ana", "a1", NOW)
    assert body == {
        "reader": "ana",
        "article": "a1",
        "allowed": True,
        "reason": "subscription",
        "until": "2026-03-25T12:00:00Z",
        "meter": None,
        "appeal": False,
        "level": "metered",
        "register": False,
    }
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(MeterRead)) == 0


def test_anonymous_reader_is_metered_and_never_registered(db: Database, settings: Settings) -> None:
    answers = []
    for article in ["a1", "a2", "a1", "a3", "a4", "a2"]:
        with db.transaction() as s:
            answers.append(check_access(s, settings, "cookie-123", article, NOW))
    assert [(a["allowed"], a["reason"], a["meter"]["used"]) for a in answers] == [
        (True, "metered", 1),
        (True, "metered", 2),
        (True, "metered", 2),  # a re-read is free
        (True, "metered", 3),
        (False, "meter_exhausted", 3),
        (True, "metered", 3),  # already read this month: still free
    ]
    assert answers[0]["meter"] == {"used": 1, "limit": 3, "resets_at": "2026-04-01T00:00:00Z"}
    assert all(a["appeal"] for a in answers)
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Reader)) == 0
        assert s.scalar(select(func.count()).select_from(MeterRead)) == 3


def test_no_article_does_not_meter(db: Database, settings: Settings) -> None:
    with db.transaction() as s:
        body = check_access(s, settings, "cookie-9", None, NOW, explain=True)
        assert s.scalar(select(func.count()).select_from(MeterRead)) == 0
    assert body["allowed"] is True and body["meter"]["used"] == 0
    assert body["trace"][-2]["rule"] == "metered"


def test_meter_resets_with_the_calendar_month_of_the_meter_timezone(
    db: Database, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(access={"meter_timezone": "Pacific/Auckland", "free_articles_per_month": 1})
    # 2026-03-31 12:00 UTC is already April 1st in Auckland.
    march = dt.datetime(2026, 3, 31, 10, 0, tzinfo=dt.UTC)
    april = dt.datetime(2026, 3, 31, 12, 0, tzinfo=dt.UTC)
    with db.transaction() as s:
        first = check_access(s, settings, "r", "a1", march)
    with db.transaction() as s:
        second = check_access(s, settings, "r", "a2", april)
    assert first["allowed"] and second["allowed"]
    assert first["meter"]["resets_at"] == "2026-03-31T11:00:00Z"
    assert second["meter"]["used"] == 1


def test_concurrent_first_reads_spend_exactly_the_allowance(
    db: Database, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(access={"free_articles_per_month": 3})
    barrier = threading.Barrier(10)
    results: list[bool] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def read(article: str) -> None:
        try:
            barrier.wait(timeout=10)
            with db.transaction() as s:
                body = check_access(s, settings, "racer", article, clock.now())
            with lock:
                results.append(body["allowed"])
        except BaseException as exc:  # reported below; a thread must not die silently
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(f"article-{i}",)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert sorted(results) == [False] * 7 + [True] * 3
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(MeterRead)) == 3


def _spend_behind_its_back(db: Database, reader: str, article: str, slot: int) -> None:
    """Another request's first read, landing between this request's read of the state and its spend."""
    with db.transaction() as s:
        s.add(MeterRead(reader=reader, period="2026-03", article=article, slot=slot, read_at=NOW))


def test_a_spend_that_lost_the_race_for_the_last_slot_is_refused(
    db: Database, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(access={"free_articles_per_month": 3})
    with db.transaction() as s:
        for article in ("a1", "a2"):
            check_access(s, settings, "racer", article, NOW)
    with db.engine.connect() as conn:
        state, decision = peek(conn, settings, "racer", "a4", NOW)
        conn.rollback()
    assert decision.records_read and state.meter_slot == 2
    _spend_behind_its_back(db, "racer", "a3", slot=3)
    with db.autocommit_engine.connect() as conn:
        final = spend(conn, settings, state, decision, NOW)
    assert (final.allowed, final.reason, final.meter and final.meter.used) == (False, "meter_exhausted", 3)
    with db.transaction() as s:
        rows = s.execute(select(MeterRead.article, MeterRead.slot).order_by(MeterRead.slot)).all()
    assert [tuple(r) for r in rows] == [("a1", 1), ("a2", 2), ("a3", 3)]


def test_a_spend_racing_a_read_of_the_same_article_counts_it_once(
    db: Database, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(access={"free_articles_per_month": 3})
    with db.engine.connect() as conn:
        state, decision = peek(conn, settings, "racer", "a1", NOW)
        conn.rollback()
    assert decision.records_read
    _spend_behind_its_back(db, "racer", "a1", slot=1)
    with db.autocommit_engine.connect() as conn:
        final = spend(conn, settings, state, decision, NOW)
        # Spending again (a retry after a lost answer) changes nothing either.
        again = spend(conn, settings, state, decision, NOW)
    for d in (final, again):
        assert (d.allowed, d.reason, d.meter and d.meter.used) == (True, "metered", 1)
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(MeterRead)) == 1


def test_access_token_carries_the_decision(db: Database, settings: Settings) -> None:
    with db.transaction() as s:
        ana = f.reader(s, "ana")
        f.subscription(s, ana, current_period_end=clock.now() + dt.timedelta(days=10))
    with db.transaction(readonly=True) as s:
        token, expires = issue_access_token(s, settings, "ana")
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA" and header["kid"] == signing.keyring(settings)[0].kid
    # Verified the way a site does it: PyJWT with the public key from the JWKS.
    jwk = signing.jwks(settings)["keys"][0]
    key = jwt.PyJWK(jwk).key
    claims = jwt.decode(token, key, algorithms=["EdDSA"])
    assert claims["sub"] == "ana" and claims["access"] is True and claims["reason"] == "subscription"
    assert claims["appeal"] is False and claims["pur"] == "access"
    assert claims["exp"] == int(expires.timestamp())
    assert 0 < claims["exp"] - claims["iat"] <= 900
    assert isinstance(claims["until"], int)


def test_token_for_a_metered_reader_grants_no_offline_access(db: Database, settings: Settings) -> None:
    with db.transaction(readonly=True) as s:
        token, _ = issue_access_token(s, settings, "cookie-1")
    claims = signing.verify(settings, token, purpose="access")
    assert claims["access"] is False and claims["reason"] == "metered" and claims["until"] is None
    assert claims["meter"]["used"] == 0 and claims["appeal"] is True
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(MeterRead)) == 0
        assert s.scalar(select(func.count()).select_from(Reader)) == 0


def test_token_never_outlives_a_comp(db: Database, settings: Settings) -> None:
    from paywall.access.comps import grant_comp

    with db.transaction() as s:
        grant_comp(s, "vip", until=clock.now() + dt.timedelta(minutes=2), note=None, granted_by="test")
    with db.transaction(readonly=True) as s:
        token, expires = issue_access_token(s, settings, "vip")
    assert expires <= clock.now() + dt.timedelta(minutes=2, seconds=1)
    assert signing.verify(settings, token, purpose="access")["reason"] == "comp"


def test_dismiss_appeal_hides_it_for_dismiss_days(db: Database, settings: Settings) -> None:
    with db.transaction() as s:
        assert dismiss_appeal(s, settings, "cookie-5", NOW) == "dismissed"
    with db.transaction() as s:
        assert dismiss_appeal(s, settings, "cookie-5", NOW + dt.timedelta(days=1)) == "extended"
    with db.transaction() as s:
        assert check_access(s, settings, "cookie-5", None, NOW + dt.timedelta(days=7))["appeal"] is False
        # Seven days after the last dismissal the appeal is back.
        assert check_access(s, settings, "cookie-5", None, NOW + dt.timedelta(days=8))["appeal"] is True
    with db.transaction() as s:
        assert dismiss_appeal(s, settings, "cookie-5", NOW + dt.timedelta(days=30)) == "dismissed"
        assert s.scalar(select(func.count()).select_from(AppealDismissal)) == 1
        assert s.scalar(select(func.count()).select_from(Reader)) == 0


@pytest.mark.parametrize("refunded", [0, 1000])
def test_refunded_donation_grants_nothing(db: Database, settings: Settings, refunded: int) -> None:
    with db.transaction() as s:
        don = f.reader(s, "don")
        f.payment(s, don, NOW - dt.timedelta(days=3), refunded_minor=refunded)
    with db.transaction() as s:
        body = check_access(s, settings, "don", "a1", NOW)
    if refunded:
        assert (body["reason"], body["appeal"]) == ("metered", True)
    else:
        assert (body["reason"], body["until"], body["appeal"]) == ("donation", "2026-04-11T12:00:00Z", False)


def test_reads_without_a_slot_from_before_migration_0005_still_count(
    db: Database, make_settings: Callable[..., Settings]
) -> None:
    """Rows the previous code writes during the rollout have no slot; they count all the same."""
    settings = make_settings(access={"free_articles_per_month": 3})
    with db.transaction() as s:
        for article in ("a1", "a2"):
            s.add(MeterRead(reader="old", period="2026-03", article=article, slot=None, read_at=NOW))
    with db.transaction() as s:
        third = check_access(s, settings, "old", "a3", NOW)
        fourth = check_access(s, settings, "old", "a4", NOW)
        again = check_access(s, settings, "old", "a1", NOW)
    assert (third["reason"], third["meter"]["used"]) == ("metered", 3)
    assert (fourth["allowed"], fourth["reason"]) == (False, "meter_exhausted")
    assert (again["allowed"], again["reason"]) == (True, "metered")
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(MeterRead)) == 3
