"""/thanks and the webhook, in either order, end in the same rows; and /thanks reads every API
shape the sync reads (period on the subscription item or at the top level; links as ids or objects)."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from paywall import clock
from paywall.app import create_app
from paywall.config import Settings
from paywall.db import Database
from paywall.models import CheckoutSession, Payment, Subscription
from tests.checkout.test_thanks import (
    ARTICLE,
    access,
    browser,
    completed_session,
    exchange,
    make_thanks_settings,
    related,
    scenario_events,
    signin_token,
    stripe_api,
    thanks_settings,
)
from tests.conftest import truncate_all
from tests.support.stripe_events import assert_same_rows, deliver_all, mirror_rows, to_legacy
from tests.support.stripe_fake import FakeStripe

__all__ = ["browser", "make_thanks_settings", "stripe_api", "thanks_settings"]  # fixtures


def normalised(dump: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Generated reader ids (rdr_ + random) differ between two runs; what they stand for does not."""
    for rows in dump.values():
        for row in rows:
            for key in ("reader_id", "external_id"):
                if isinstance(row.get(key), str) and row[key].startswith("rdr_"):
                    row[key] = "rdr_*"
    return dump


def run(browser: FlaskClient, db: Database, events: list[dict[str, Any]], *, thanks_first: bool) -> Any:
    session = completed_session(events)
    if thanks_first:
        assert browser.get(f"/thanks?session_id={session['id']}").status_code == 200
        deliver_all(browser, events)
    else:
        deliver_all(browser, events)
        assert browser.get(f"/thanks?session_id={session['id']}").status_code == 200
    with db.transaction(readonly=True) as s:
        return normalised(mirror_rows(s))


@pytest.mark.parametrize("scenario", ["monthly_subscription_checkout", "one_time_donation_checkout"])
def test_thanks_before_or_after_the_webhook_ends_in_the_same_rows(
    browser: FlaskClient,
    stripe_api: FakeStripe,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
    scenario: str,
) -> None:
    """a: a reader's subscription (client_reference_id); b: a guest's gift (found by email)."""
    # One fetch time for both runs: the rows remember it as the state's source.
    fixed = clock.now().replace(microsecond=0)
    monkeypatch.setattr(clock, "now", lambda: fixed)
    events = scenario_events(scenario)
    stripe_api.add_session(completed_session(events), *related(events))
    after = run(browser, db, events, thanks_first=False)
    truncate_all(db)
    before = run(browser, db, events, thanks_first=True)
    assert_same_rows(before, after)
    # And the same as the webhook alone, but for what only /thanks adds: the reader's link and
    # the source of the newest state.
    truncate_all(db)
    deliver_all(browser, events)
    with db.transaction(readonly=True) as s:
        alone = normalised(mirror_rows(s))
    assert len(alone["checkout_sessions"]) == len(after["checkout_sessions"]) == 1
    assert len(alone["payments"]) == len(after["payments"]) == 1
    paid_by = after["payments"][0]["reader_id"]
    assert paid_by == ("member_8731" if scenario == "monthly_subscription_checkout" else "rdr_*")


def test_a_newer_webhook_still_wins_over_thanks(
    browser: FlaskClient, stripe_api: FakeStripe, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/thanks's state is the state when it read it: a later change (cancelled an hour on) wins."""
    events = scenario_events("monthly_subscription_checkout")
    stripe_api.add_session(completed_session(events), *related(events))
    assert browser.get(f"/thanks?session_id={completed_session(events)['id']}").status_code == 200
    (created,) = [e for e in events if e["type"] == "customer.subscription.created"]
    later = clock.now() + dt.timedelta(hours=1)
    canceled = {**created["data"]["object"], "status": "canceled", "ended_at": int(later.timestamp())}
    event = {
        **created,
        "id": "evt_thanks_later",
        "type": "customer.subscription.deleted",
        "created": int(later.timestamp()),
        "data": {"object": canceled},
    }
    deliver_all(browser, [event])
    with db.transaction(readonly=True) as s:
        sub = s.scalar(select(Subscription))
        assert sub is not None and sub.status == "canceled"


def test_the_pre_2025_shape_gives_access_too(
    browser: FlaskClient,
    thanks_settings: Settings,
    stripe_api: FakeStripe,
    db: Database,
    site_key: dict[str, str],
) -> None:
    """An account on an API version before 2025-03-31: the period at the subscription's top level."""
    events = to_legacy(scenario_events("monthly_subscription_checkout", now=True))
    session = {**completed_session(events), "client_reference_id": None}
    (sub,) = [o for o in related(events) if o["object"] == "subscription"]
    assert "current_period_end" in sub and "current_period_end" not in sub["items"]["data"][0]
    stripe_api.add_session(session, *related(events))
    resp = browser.get(f"/thanks?session_id={session['id']}&return_to={ARTICLE}")
    assert resp.status_code == 303
    reader = exchange(db, thanks_settings, signin_token(resp.headers["Location"]))
    assert access(browser, site_key, reader)["reason"] == "subscription"


def test_links_stripe_did_not_expand_are_recorded_as_ids(
    browser: FlaskClient, stripe_api: FakeStripe, db: Database
) -> None:
    """A subscription or intent given as a bare id (not expanded) is a link, not a state: the
    session is recorded with it and the webhook brings the object."""
    events = scenario_events("monthly_subscription_checkout", now=True)
    session = {**completed_session(events), "client_reference_id": None}
    stripe_api.add_session(session)  # no related objects: nothing to expand to
    resp = browser.get(f"/thanks?session_id={session['id']}&return_to={ARTICLE}")
    assert resp.status_code == 303
    with db.transaction(readonly=True) as s:
        cs = s.scalar(select(CheckoutSession))
        assert cs is not None and cs.stripe_subscription_id == session["subscription"]
        assert cs.reader_id is not None
        assert s.scalar(select(Subscription)) is None and s.scalar(select(Payment)) is None
    deliver_all(browser, events)
    with db.transaction(readonly=True) as s:
        sub = s.scalar(select(Subscription))
        assert sub is not None and sub.reader_id == cs.reader_id


def test_racing_visits_of_one_thanks_url_sign_in_once(
    thanks_settings: Settings, stripe_api: FakeStripe, db: Database
) -> None:
    """Two tabs (or a prefetch and the click) at once: one sign-in, one thank-you page."""
    events = scenario_events("monthly_subscription_checkout", now=True)
    session = {**completed_session(events), "client_reference_id": None}
    stripe_api.add_session(session, *related(events))
    app = create_app(thanks_settings, db=db)
    url = f"/thanks?session_id={session['id']}&return_to={ARTICLE}"

    def visit(_: int) -> int:
        return int(app.test_client().get(url).status_code)

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = sorted(pool.map(visit, range(4)))
    assert statuses == [200, 200, 200, 303]
    with db.transaction(readonly=True) as s:
        assert len(s.scalars(select(Subscription)).all()) == 1
