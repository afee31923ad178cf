"""/thanks when it cannot record: Stripe down, an unknown or unfinished session, a bad id, Stripe
not configured. Always a clear page (never a 500), and nothing recorded."""

from __future__ import annotations

from collections.abc import Callable

from flask.testing import FlaskClient
from sqlalchemy import func, select

from paywall.app import create_app
from paywall.config import Settings
from paywall.db import Database
from paywall.models import CheckoutSession, SigninCode, Subscription
from tests.checkout.test_thanks import (
    ARTICLE,
    browser,
    completed_session,
    make_thanks_settings,
    related,
    scenario_events,
    stripe_api,
    subscribe,
    thanks_settings,
)
from tests.support.stripe_fake import FakeStripe

__all__ = ["browser", "make_thanks_settings", "stripe_api", "thanks_settings"]  # fixtures


def nothing_recorded(db: Database) -> bool:
    with db.transaction(readonly=True) as session:
        return all(
            session.scalar(select(func.count()).select_from(model)) == 0
            for model in (CheckoutSession, Subscription, SigninCode)
        )


def test_stripe_down_is_a_page_that_says_the_payment_is_safe(
    browser: FlaskClient, stripe_api: FakeStripe, db: Database
) -> None:
    csid = subscribe(browser, "return_to=" + ARTICLE)
    events = scenario_events("monthly_subscription_checkout", now=True)
    stripe_api.complete(csid, completed_session(events), *related(events))
    stripe_api.fail_next(500, times=3)  # stripe-python tries three times
    resp = browser.get(f"/thanks?session_id={csid}&return_to={ARTICLE}")
    assert resp.status_code == 502 and resp.mimetype == "text/html"
    html = resp.get_data(as_text=True)
    assert "Your payment went through" in html and "Nothing was charged" not in html
    assert resp.headers["Cache-Control"] == "private, no-store"
    assert nothing_recorded(db)
    # A minute later, the same URL works.
    assert browser.get(f"/thanks?session_id={csid}&return_to={ARTICLE}").status_code == 303


def test_an_unknown_session_is_a_404_page(browser: FlaskClient, stripe_api: FakeStripe, db: Database) -> None:
    resp = browser.get("/thanks?session_id=cs_test_nobody")
    assert resp.status_code == 404 and "We could not find this payment" in resp.get_data(as_text=True)
    assert nothing_recorded(db)


def test_a_malformed_session_id_never_reaches_stripe(
    browser: FlaskClient, stripe_api: FakeStripe, db: Database
) -> None:
    for bad in ("", "pi_123", "cs_test_../../v1/customers", "cs_" + "a" * 300, "cs_test_%00"):
        resp = browser.get("/thanks", query_string={"session_id": bad})
        assert resp.status_code == 400, bad
        assert "This link is not valid" in resp.get_data(as_text=True)
    assert stripe_api.requests == []
    assert nothing_recorded(db)


def test_an_unfinished_session_records_nothing(
    browser: FlaskClient, stripe_api: FakeStripe, db: Database
) -> None:
    csid = subscribe(browser)
    # The reader came back without paying (Checkout's back button, or a guessed URL).
    resp = browser.get(f"/thanks?session_id={csid}")
    assert resp.status_code == 409 and "nothing was charged" in resp.get_data(as_text=True)
    events = scenario_events("monthly_subscription_checkout", now=True)
    processing = {**completed_session(events), "payment_status": "unpaid"}
    stripe_api.complete(csid, processing, *related(events))
    resp = browser.get(f"/thanks?session_id={csid}")
    # A bank debit still on its way: the webhook records it once it has gone through.
    assert resp.status_code == 202 and "still being processed" in resp.get_data(as_text=True)
    assert nothing_recorded(db)


def test_a_trial_that_needs_no_payment_is_recorded(
    browser: FlaskClient, stripe_api: FakeStripe, db: Database
) -> None:
    csid = subscribe(browser, "return_to=" + ARTICLE)
    events = scenario_events("monthly_subscription_checkout", now=True)
    trial = {
        **completed_session(events),
        "payment_status": "no_payment_required",
        "client_reference_id": None,
    }
    stripe_api.complete(csid, trial, *related(events))
    assert browser.get(f"/thanks?session_id={csid}&return_to={ARTICLE}").status_code == 303


def test_stripe_not_configured_is_a_503_page(make_settings: Callable[..., Settings], db: Database) -> None:
    app = create_app(make_settings(), db=db)
    resp = app.test_client().get("/thanks?session_id=cs_test_1")
    assert resp.status_code == 503 and "not set up" in resp.get_data(as_text=True)


def test_the_portals_return_still_says_all_set(browser: FlaskClient, stripe_api: FakeStripe) -> None:
    html = browser.get("/thanks?from=portal").get_data(as_text=True)
    assert "All set" in html and '<a href="https://news.example.org/">Back to the site</a>' in html
    assert stripe_api.requests == []


def test_thanks_is_rate_limited_per_address(
    make_thanks_settings: Callable[..., Settings], stripe_api: FakeStripe, db: Database
) -> None:
    """Every visit with a session id is a read from Stripe: one address cannot make us hammer it."""
    app = create_app(make_thanks_settings(ratelimit={"widget_per_address": "3/minute"}), db=db)
    client = app.test_client()
    codes = [client.get("/thanks?session_id=cs_test_nobody").status_code for _ in range(4)]
    assert codes == [404, 404, 404, 429]
    assert len(stripe_api.gets("/v1/checkout/sessions/cs_test_nobody")) == 3


def test_an_object_no_real_stripe_answer_has_is_left_to_the_webhook(
    browser: FlaskClient, stripe_api: FakeStripe, db: Database
) -> None:
    events = scenario_events("monthly_subscription_checkout", now=True)
    absurd = {**completed_session(events), "amount_total": 10**30, "client_reference_id": None}
    stripe_api.add_session(absurd, *related(events))
    resp = browser.get(f"/thanks?session_id={absurd['id']}")
    assert resp.status_code == 502
    assert "Your payment went through, but we could not record it yet" in resp.get_data(as_text=True)
    assert nothing_recorded(db)
