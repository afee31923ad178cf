"""/account from the rows: subscription and next charge, donations and receipts, appeal mail, the data
download, and the billing portal, which opens only for a signed-in reader."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select

from paywall import clock
from paywall.config import Settings
from paywall.db import Database
from paywall.models import AppealDismissal, Comp, MeterRead, Payment, Reader, Subscription
from tests.account import test_views as base
from tests.account.test_views import add_reader, post
from tests.checkout.test_pages import access_token
from tests.checkout.test_sessions import add_customer
from tests.support.stripe_fake import FakeStripe

DAY = dt.timedelta(days=1)

# The session fixtures, shared with test_account_page.py.
stripe_api, account_settings, browser, signed_in = (
    base.stripe_api,
    base.account_settings,
    base.browser,
    base.signed_in,
)


def reader_id(db: Database, external_id: str = "ana") -> int:
    with db.transaction(readonly=True) as session:
        value = session.scalar(select(Reader.id).where(Reader.external_id == external_id))
        assert value is not None
        return value


def add_subscription(db: Database, sub_id: str, **fields: Any) -> None:
    values: dict[str, Any] = {
        "stripe_subscription_id": sub_id,
        "reader_id": reader_id(db),
        "status": "active",
        "plan": "monthly",
        "interval": "month",
        "amount_minor": 500,
        "currency": "eur",
        "current_period_start": dt.datetime(2026, 11, 5, tzinfo=dt.UTC),
        "current_period_end": dt.datetime(2026, 12, 5, tzinfo=dt.UTC),
    }
    values.update(fields)
    with db.transaction() as session:
        session.add(Subscription(**values))


def add_donation(
    db: Database, charge: str, amount: int, paid: dt.datetime, reader: str = "ana", **kw: Any
) -> None:
    with db.transaction() as session:
        session.add(
            Payment(
                stripe_charge_id=charge,
                reader_id=reader_id(db, reader),
                kind="donation",
                amount_minor=amount,
                currency="eur",
                paid_at=paid,
                email=f"{reader}@example.org",
                **kw,
            )
        )


def page(browser: FlaskClient) -> str:
    resp = browser.get("/account")
    assert resp.status_code == 200
    return resp.get_data(as_text=True)


def test_the_subscription_and_its_next_charge(browser: FlaskClient, signed_in: str, db: Database) -> None:
    assert "You have no subscription at the moment." in page(browser)
    assert 'action="/account/portal"' not in page(browser)  # no Stripe customer: nothing to manage
    add_subscription(db, "sub_1")
    html = page(browser)
    assert '<span class="name">Monthly</span>' in html  # the plan's configured label
    assert "5.00 EUR per month" in html and "Next charge on 5 December 2026." in html


def test_ending_paused_and_failed_subscriptions_say_so(
    browser: FlaskClient, signed_in: str, db: Database
) -> None:
    add_subscription(db, "sub_ends", cancel_at_period_end=True)
    add_subscription(
        db,
        "sub_paused",
        kind="donation",
        plan=None,
        pause_collection_behavior="void",
        pause_collection_resumes_at=dt.datetime(2027, 1, 10, tzinfo=dt.UTC),
    )
    add_subscription(db, "sub_failed", status="past_due", payment_failed_at=clock.now() - DAY)
    add_subscription(db, "sub_old", status="canceled", plan="gone-plan")
    html = page(browser)
    assert "Ends on 5 December 2026." in html
    assert "Monthly donation" in html and "Paused until 10 January 2027." in html
    assert "Your last payment did not go through. Update your card under Manage billing." in html
    assert "gone-plan" not in html  # ended subscriptions are history, not support


def test_a_comp_is_shown(browser: FlaskClient, signed_in: str, db: Database) -> None:
    with db.transaction() as session:
        session.add(Comp(reader_id=reader_id(db), until=dt.datetime(2027, 3, 1, tzinfo=dt.UTC), note="staff"))
    html = page(browser)
    assert "Complimentary access" in html and "Until 1 March 2027." in html and "staff" not in html


def test_donations_each_have_a_receipt_only_their_donor_sees(
    browser: FlaskClient, signed_in: str, db: Database
) -> None:
    add_donation(db, "ch_old", 1000, dt.datetime(2026, 3, 5, 12, tzinfo=dt.UTC))
    add_donation(db, "ch_new", 2500, dt.datetime(2026, 10, 1, 9, tzinfo=dt.UTC), refunded_minor=500)
    add_reader(db, "bob", verified="bob@example.org")
    add_donation(db, "ch_bob", 9900, dt.datetime(2026, 6, 1, tzinfo=dt.UTC), reader="bob")
    html = page(browser)
    assert html.index("25.00 EUR") < html.index("10.00 EUR")  # newest first
    assert "5 March 2026" in html and "Refunded: 5.00 EUR" in html and "99.00" not in html
    assert 'href="/account/receipts/ch_old"' in html

    receipt = browser.get("/account/receipts/ch_old")
    text = receipt.get_data(as_text=True)
    assert receipt.status_code == 200 and receipt.headers["Cache-Control"] == "private, no-store"
    assert "10.00 EUR" in text and "5 March 2026" in text and "ch_old" in text and "ana@example.org" in text
    assert browser.get("/account/receipts/ch_bob").status_code == 404
    assert browser.get("/account/receipts/nope").status_code == 404
    browser.delete_cookie("paywall_account", domain="localhost", path="/account")
    gone = browser.get("/account/receipts/ch_old")
    assert gone.status_code == 303 and gone.headers["Location"] == "/account"


def test_appeal_mail_on_and_off_use_the_unsubscribe_fields(
    browser: FlaskClient, signed_in: str, db: Database
) -> None:
    assert 'value="off" checked' in page(browser)
    resp = post(browser, "/account/appeals", {"form_token": signed_in, "appeals": "on"})
    assert resp.status_code == 303 and resp.headers["Location"] == "/account?done=appeals-on"
    with db.transaction(readonly=True) as session:
        ana = session.scalar(select(Reader).where(Reader.external_id == "ana"))
        assert ana is not None and ana.marketing_opt_in and ana.unsubscribed_at is None
    assert 'value="on" checked' in page(browser)
    assert "You will get our occasional appeals" in browser.get("/account?done=appeals-on").get_data(
        as_text=True
    )
    post(browser, "/account/appeals", {"form_token": signed_in, "appeals": "off"})
    with db.transaction(readonly=True) as session:
        ana = session.scalar(select(Reader).where(Reader.external_id == "ana"))
        assert ana is not None and ana.unsubscribed_at is not None  # as one-click unsubscribe does
    assert 'value="off" checked' in page(browser)
    assert post(browser, "/account/appeals", {"form_token": signed_in, "appeals": "maybe"}).status_code == 422


def test_download_my_data(
    browser: FlaskClient, signed_in: str, db: Database, account_settings: Settings
) -> None:
    add_subscription(db, "sub_1")
    add_donation(db, "ch_1", 2500, dt.datetime(2026, 3, 5, tzinfo=dt.UTC))
    now = clock.now()
    with db.transaction() as session:
        session.add(Comp(reader_id=reader_id(db), until=now + 30 * DAY))
        session.add(MeterRead(reader="ana", period=f"{now:%Y-%m}", article="story-1", slot=1, read_at=now))
        session.add(MeterRead(reader="ana", period="2001-01", article="old-story", slot=1, read_at=now))
        session.add(MeterRead(reader="bob", period=f"{now:%Y-%m}", article="bobs-story", slot=1, read_at=now))
        session.add(AppealDismissal(reader="ana", dismissed_at=now))
    resp = post(browser, "/account/data", {"form_token": signed_in})
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="my-data-')
    assert resp.headers["Cache-Control"] == "private, no-store"
    data = json.loads(resp.get_data(as_text=True))
    assert data["reader"]["reader"] == "ana" and data["reader"]["verified_email"] == "ana@example.org"
    assert [s["stripe_subscription_id"] for s in data["subscriptions"]] == ["sub_1"]
    assert data["payments"] == [
        {
            "stripe_charge_id": "ch_1",
            "kind": "donation",
            "recurring": False,
            "plan": None,
            "campaign": None,
            "amount": 2500,
            "currency": "eur",
            "refunded": 0,
            "dispute_status": None,
            "paid_at": "2026-03-05T00:00:00Z",
            "email": "ana@example.org",
        }
    ]
    assert len(data["comps"]) == 1
    assert data["meter"]["period"] == f"{now:%Y-%m}"
    assert [r["article"] for r in data["meter"]["articles"]] == ["story-1"]
    assert data["appeal_dismissed_at"] is not None


def test_manage_billing_reaches_the_portal_for_the_signed_in_reader_only(
    browser: FlaskClient, signed_in: str, db: Database, stripe_api: FakeStripe, account_settings: Settings
) -> None:
    missing = post(browser, "/account/portal", {"form_token": signed_in})
    assert missing.status_code == 404 and "Nothing to manage yet" in missing.get_data(as_text=True)
    add_customer(db, "ana", "cus_ana")
    assert 'action="/account/portal"' in page(browser)
    resp = post(browser, "/account/portal", {"form_token": signed_in})
    assert resp.status_code == 303
    assert resp.headers["Location"] == f"{stripe_api.url}/portal/bps_fake0001"
    (sent,) = stripe_api.posts("/v1/billing_portal/sessions")
    assert sent.form["customer"] == "cus_ana"
    assert sent.form["return_url"] == "https://paywall.example.org/account"  # back to where they were

    # The old way in, an access token (as an article page holds) or a mail link, opens nothing.
    for token in (
        access_token(account_settings, "ana"),
        access_token(account_settings, "ana", purpose="reader-link"),
    ):
        old = browser.get(f"/portal?token={token}")
        assert old.status_code == 200 and "Location" not in old.headers
        assert 'href="/account"' in old.get_data(as_text=True)
    assert browser.post(f"/portal?token={token}").status_code == 405
    assert len(stripe_api.posts("/v1/billing_portal/sessions")) == 1


def test_stripe_failures_are_pages(
    browser: FlaskClient, signed_in: str, db: Database, stripe_api: FakeStripe
) -> None:
    add_customer(db, "ana", "cus_ana")
    stripe_api.fail_next(500, times=3)
    resp = post(browser, "/account/portal", {"form_token": signed_in})
    assert resp.status_code == 502 and "Billing is unavailable" in resp.get_data(as_text=True)
