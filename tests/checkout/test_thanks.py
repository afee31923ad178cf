"""/thanks?session_id=: a guest or a reader pays, /thanks records it and signs them in on this
device once, and the next view is allowed with no webhook delivered at all (issue 14, part 2)."""

from __future__ import annotations

import datetime as dt
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from paywall import clock, signing
from paywall.app import create_app
from paywall.config import Settings
from paywall.db import Database
from paywall.models import CheckoutSession, Payment, Reader, SigninCode, Subscription
from paywall.signin.codes import check_token
from paywall.signin.tokens import issue_reader_token, reader_from_token
from tests.checkout.test_sessions import PLANS, PUBLIC
from tests.support.stripe_events import scenario_file
from tests.support.stripe_fake import FakeStripe

SITE = "https://news.example.org"
ARTICLE = f"{SITE}/2026/11/the-story?ref=home"


# --- helpers other thanks tests import ---------------------------------------------------------


def shifted(value: Any, delta: int) -> Any:
    """``value`` with every Stripe timestamp moved by ``delta`` seconds (the scenarios are dated
    Sep-Nov 2026; access is decided against the real clock)."""
    if isinstance(value, dict):
        return {k: shifted(v, delta) for k, v in value.items()}
    if isinstance(value, list):
        return [shifted(v, delta) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and 1_700_000_000 < value < 1_900_000_000:
        return value + delta
    return value


def scenario_events(scenario: str, *, now: bool = False) -> list[dict[str, Any]]:
    """A scenario's events; ``now``: moved so that its checkout completed a minute ago."""
    events: list[dict[str, Any]] = scenario_file(scenario)
    if not now:
        return events
    completed = next(e for e in events if e["type"] == "checkout.session.completed")
    return [shifted(e, int(time.time()) - 60 - completed["created"]) for e in events]


def final_objects(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each object's last state in the scenario, by id (what a GET returns after it)."""
    return {e["data"]["object"]["id"]: e["data"]["object"] for e in events}


def completed_session(events: list[dict[str, Any]]) -> dict[str, Any]:
    completed = next(e for e in events if e["type"] == "checkout.session.completed")
    session: dict[str, Any] = completed["data"]["object"]
    return session


def related(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects a completed session of the scenario links to (customer, subscription, invoice,
    intent, charge)."""
    kinds = ("customer", "subscription", "invoice", "payment_intent", "charge")
    return [obj for obj in final_objects(events).values() if obj.get("object") in kinds]


def exchange(db: Database, settings: Settings, token: str) -> str:
    """What POST /support/signin/exchange does with a return token (the signin branch's route):
    use it once, issue a reader token; returns the reader id that token names."""
    with db.transaction() as session:
        row = check_token(session, token, now=clock.now(), purposes=("return",))
        reader = session.get(Reader, row.reader_id)
        assert reader is not None
        reader_token, _ = issue_reader_token(settings, reader)
    with db.transaction(readonly=True) as session:
        named = reader_from_token(session, settings, reader_token)
    assert named == reader.external_id
    return named


def signin_token(location: str) -> str:
    fragment = urlsplit(location).fragment
    return parse_qs(fragment)["paywall_signin"][0]


def form_token(html: str) -> str:
    match = re.search(r'name="form_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def site_token(settings: Settings, sub: str) -> str:
    claims = {"sub": sub, "access": False, "reason": "meter_exhausted", "until": None, "appeal": True}
    token, _ = signing.sign(settings, claims, purpose="access", ttl=dt.timedelta(minutes=15))
    return token


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def stripe_api() -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        yield fake


@pytest.fixture
def make_thanks_settings(
    make_settings: Callable[..., Settings], stripe_api: FakeStripe
) -> Callable[..., Settings]:
    def make(env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        overrides.setdefault("plans", PLANS)
        overrides.setdefault("checkout", {"site_url": f"{SITE}/"})
        base = {"PAYWALL_STRIPE_SECRET_KEY": "sk_test_thanks", "PAYWALL_STRIPE_API_BASE": stripe_api.url}
        return make_settings({**base, **(env or {})}, **overrides)

    return make


@pytest.fixture
def thanks_settings(make_thanks_settings: Callable[..., Settings]) -> Settings:
    return make_thanks_settings()


@pytest.fixture
def browser(thanks_settings: Settings, db: Database) -> FlaskClient:
    app = create_app(thanks_settings, db=db)
    app.config["TESTING"] = True
    return app.test_client()


def subscribe(browser: FlaskClient, query: str = "") -> str:
    """Press Subscribe on the monthly plan; the id of the Checkout Session it made."""
    page = browser.get(f"/subscribe?plan=monthly&{query}")
    assert page.status_code == 200
    resp = browser.post(
        "/subscribe",
        data={
            "form_token": form_token(page.get_data(as_text=True)),
            "plan": "monthly",
            **({"return_to": ARTICLE} if "return_to" in query else {}),
        },
    )
    assert resp.status_code == 303, resp.get_data(as_text=True)
    return resp.headers["Location"].rsplit("/", 1)[1]


def access(browser: FlaskClient, site_key: dict[str, str], reader: str) -> dict[str, Any]:
    resp = browser.post("/v1/access", json={"reader": reader, "article": "the-story"}, headers=site_key)
    assert resp.status_code == 200
    body: dict[str, Any] = resp.get_json()
    return body


# --- the journey -------------------------------------------------------------------------------


def test_a_guest_subscribes_and_the_next_view_is_allowed_with_the_webhook_held_back(
    browser: FlaskClient,
    thanks_settings: Settings,
    stripe_api: FakeStripe,
    db: Database,
    site_key: dict[str, str],
) -> None:
    page = browser.get(f"/subscribe?return_to={ARTICLE}").get_data(as_text=True)
    assert "Sign in on our site" not in page and page.count("<form") == 2
    assert f'name="return_to" value="{ARTICLE.replace("&", "&amp;")}"' in page
    csid = subscribe(browser, "return_to=" + ARTICLE)
    (sent,) = stripe_api.posts("/v1/checkout/sessions")
    assert "client_reference_id" not in sent.form and "customer" not in sent.form
    assert sent.form["success_url"] == (
        f"{PUBLIC}/thanks?session_id={{CHECKOUT_SESSION_ID}}&return_to="
        "https%3A%2F%2Fnews.example.org%2F2026%2F11%2Fthe-story%3Fref%3Dhome"
    )
    assert sent.form["cancel_url"] == ARTICLE

    events = scenario_events("monthly_subscription_checkout", now=True)
    paid = {**completed_session(events), "client_reference_id": None}
    stripe_api.complete(csid, paid, *related(events))
    # Stripe sends the browser to the success_url; no webhook is delivered in this test.
    resp = browser.get(f"/thanks?session_id={csid}&return_to={ARTICLE}")
    assert resp.status_code == 303
    location = resp.headers["Location"]
    assert location.startswith(ARTICLE + "#paywall_signin=")
    assert resp.headers["Cache-Control"] == "private, no-store"
    (got,) = stripe_api.gets(f"/v1/checkout/sessions/{csid}")
    assert sorted(v for k, v in got.form.items() if k.startswith("expand")) == [
        "customer",
        "invoice",
        "payment_intent.latest_charge",
        "subscription",
    ]

    reader = exchange(db, thanks_settings, signin_token(location))
    assert reader.startswith("rdr_")
    with db.transaction(readonly=True) as session:
        row = session.scalar(select(Reader).where(Reader.external_id == reader))
        assert row is not None and row.verified_email == "maria.lopez@example.com"
        sub = session.scalar(select(Subscription))
        assert sub is not None and sub.reader_id == row.id and sub.status == "active"
    body = access(browser, site_key, reader)
    assert body["allowed"] is True and body["reason"] == "subscription"

    # Signed in, their next purchase (a gift, from the widget's token) reuses their Stripe customer.
    token = site_token(thanks_settings, reader)
    html = browser.get(f"/donate?token={token}").get_data(as_text=True)
    data = {"form_token": form_token(html), "amount": "1000", "interval": "once", "currency": "eur"}
    assert browser.post("/donate", data=data).status_code == 303
    again = stripe_api.posts("/v1/checkout/sessions")[-1]
    assert again.form["client_reference_id"] == reader
    assert again.form["customer"] == paid["customer"]


def test_a_guest_gift_gives_donor_access_at_once(
    browser: FlaskClient,
    thanks_settings: Settings,
    stripe_api: FakeStripe,
    db: Database,
    site_key: dict[str, str],
) -> None:
    page = browser.get(f"/donate?return_to={ARTICLE}").get_data(as_text=True)
    resp = browser.post(
        "/donate",
        data={
            "form_token": form_token(page),
            "amount": "5000",
            "interval": "once",
            "currency": "usd",
            "return_to": ARTICLE,
        },
    )
    assert resp.status_code == 303
    csid = resp.headers["Location"].rsplit("/", 1)[1]
    (sent,) = stripe_api.posts("/v1/checkout/sessions")
    assert sent.form["success_url"].startswith(
        f"{PUBLIC}/thanks?kind=donation&session_id={{CHECKOUT_SESSION_ID}}"
    )
    assert parse_qs(urlsplit(sent.form["success_url"]).query)["return_to"] == [ARTICLE]

    events = scenario_events("one_time_donation_checkout", now=True)
    stripe_api.complete(csid, completed_session(events), *related(events))
    resp = browser.get(f"/thanks?kind=donation&session_id={csid}&return_to={ARTICLE}")
    assert resp.status_code == 303
    reader = exchange(db, thanks_settings, signin_token(resp.headers["Location"]))
    with db.transaction(readonly=True) as session:
        payment = session.scalar(select(Payment))
        assert payment is not None and payment.kind == "donation" and payment.amount_minor == 5000
    body = access(browser, site_key, reader)
    assert body["allowed"] is True and body["reason"] == "donation"


def test_a_readers_token_buys_and_signs_in_as_that_reader(
    browser: FlaskClient,
    thanks_settings: Settings,
    stripe_api: FakeStripe,
    db: Database,
    site_key: dict[str, str],
) -> None:
    token = site_token(thanks_settings, "member_8731")
    csid = subscribe(browser, f"token={token}&return_to={ARTICLE}")
    (sent,) = stripe_api.posts("/v1/checkout/sessions")
    assert sent.form["client_reference_id"] == "member_8731"
    events = scenario_events("monthly_subscription_checkout", now=True)
    # The email typed at Checkout does not matter: the session names its reader.
    paid = {**completed_session(events), "customer_details": {"email": "someone.else@example.com"}}
    stripe_api.complete(csid, paid, *related(events))
    resp = browser.get(f"/thanks?session_id={csid}&return_to={ARTICLE}")
    assert resp.status_code == 303
    assert exchange(db, thanks_settings, signin_token(resp.headers["Location"])) == "member_8731"
    with db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Reader)) == 1
    assert access(browser, site_key, "member_8731")["reason"] == "subscription"


def test_an_anonymous_token_buys_as_a_guest(
    browser: FlaskClient, thanks_settings: Settings, stripe_api: FakeStripe
) -> None:
    token = site_token(thanks_settings, " anon:AbCdEfGhIjKlMnOpQrStUv")
    html = browser.get(f"/donate?token={token}").get_data(as_text=True)
    resp = browser.post(
        "/donate",
        data={"form_token": form_token(html), "amount": "500", "interval": "once", "currency": "eur"},
    )
    assert resp.status_code == 303
    subscribe(browser, f"token={token}")
    for sent in stripe_api.posts("/v1/checkout/sessions"):
        assert "client_reference_id" not in sent.form
        assert "anon" not in str(sent.form)


def test_the_same_thanks_url_signs_in_only_once(
    browser: FlaskClient, stripe_api: FakeStripe, db: Database
) -> None:
    csid = subscribe(browser, "return_to=" + ARTICLE)
    events = scenario_events("monthly_subscription_checkout", now=True)
    stripe_api.complete(csid, {**completed_session(events), "client_reference_id": None}, *related(events))
    url = f"/thanks?session_id={csid}&return_to={ARTICLE}"
    assert browser.get(url).status_code == 303
    again = browser.get(url)
    # From history or a leaked link: a thank-you, with the way back, and no sign-in.
    assert again.status_code == 200
    html = again.get_data(as_text=True)
    assert "paywall_signin" not in html and "sign in with the email address you paid with" in html
    assert f'href="{ARTICLE.replace("&", "&amp;")}"' in html
    with db.transaction(readonly=True) as session:
        tokens = session.scalars(select(SigninCode).where(SigninCode.used_at.is_(None))).all()
        assert len(tokens) == 1 and tokens[0].purpose == "return"


def test_a_return_url_site_gets_the_token_to_exchange(
    make_thanks_settings: Callable[..., Settings], stripe_api: FakeStripe, db: Database
) -> None:
    settings = make_thanks_settings(signin={"return_url": f"{SITE}/paywall/return?lang=en"})
    app = create_app(settings, db=db)
    browser = app.test_client()
    csid = subscribe(browser, "return_to=" + ARTICLE)
    events = scenario_events("monthly_subscription_checkout", now=True)
    stripe_api.complete(csid, {**completed_session(events), "client_reference_id": None}, *related(events))
    resp = browser.get(f"/thanks?session_id={csid}&return_to={ARTICLE}")
    assert resp.status_code == 303
    location = urlsplit(resp.headers["Location"])
    assert (location.netloc, location.path) == ("news.example.org", "/paywall/return")
    query = parse_qs(location.query)
    assert query["lang"] == ["en"] and query["return_to"] == [ARTICLE]
    exchange(db, settings, query["paywall_signin"][0])


def test_without_return_to_the_thank_you_page_links_back_signed_in(
    browser: FlaskClient, thanks_settings: Settings, stripe_api: FakeStripe, db: Database
) -> None:
    csid = subscribe(browser)
    events = scenario_events("monthly_subscription_checkout", now=True)
    stripe_api.complete(csid, {**completed_session(events), "client_reference_id": None}, *related(events))
    # A return_to on another origin is dropped, never followed.
    resp = browser.get(f"/thanks?session_id={csid}&return_to=https://evil.example.com/")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert "evil.example.com" not in html and "You are signed in on this device" in html
    match = re.search(
        r'<a href="https://news\.example\.org/#paywall_signin=([^"]+)">Back to the site</a>', html
    )
    assert match
    exchange(db, thanks_settings, match.group(1))


def test_a_guest_paying_with_a_known_address_is_not_signed_in_but_gets_the_access(
    browser: FlaskClient, stripe_api: FakeStripe, db: Database, site_key: dict[str, str]
) -> None:
    """Checkout does not prove the address: typing a reader's email must not sign the typist in
    as that reader. The payment still becomes theirs (they sign in with the emailed code)."""
    with db.transaction() as session:
        session.add(
            Reader(
                external_id="rdr_known",
                email="maria.lopez@example.com",
                verified_email="maria.lopez@example.com",
                email_verified_at=clock.now(),
                registered_at=clock.now(),
            )
        )
    csid = subscribe(browser, "return_to=" + ARTICLE)
    events = scenario_events("monthly_subscription_checkout", now=True)
    stripe_api.complete(csid, {**completed_session(events), "client_reference_id": None}, *related(events))
    resp = browser.get(f"/thanks?session_id={csid}&return_to={ARTICLE}")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert "paywall_signin" not in html and "already has an account" in html
    # Nor on a second visit, once the payment is linked to that reader.
    again = browser.get(f"/thanks?session_id={csid}&return_to={ARTICLE}")
    assert again.status_code == 200 and "paywall_signin" not in again.get_data(as_text=True)
    with db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(SigninCode)) == 0
        cs = session.scalar(select(CheckoutSession))
        assert cs is not None and cs.reader_id is not None
    assert access(browser, site_key, "rdr_known")["reason"] == "subscription"


def test_an_earlier_payers_address_does_not_sign_a_guest_in_as_them(
    browser: FlaskClient, stripe_api: FakeStripe, db: Database
) -> None:
    """The identity rule's second step (the reader linked to earlier payments with the address)
    is not proof either: no sign-in, and the address is not marked verified."""
    with db.transaction() as session:
        reader = Reader(external_id="member_1", email="maria.lopez@example.com")
        session.add(reader)
        session.flush()
        session.add(
            CheckoutSession(
                stripe_checkout_session_id="cs_test_earlier",
                reader_id=reader.id,
                email="Maria.Lopez@example.com",
                completed_at=clock.now() - dt.timedelta(days=90),
            )
        )
    csid = subscribe(browser, "return_to=" + ARTICLE)
    events = scenario_events("monthly_subscription_checkout", now=True)
    stripe_api.complete(csid, {**completed_session(events), "client_reference_id": None}, *related(events))
    resp = browser.get(f"/thanks?session_id={csid}&return_to={ARTICLE}")
    assert resp.status_code == 200 and "already has an account" in resp.get_data(as_text=True)
    again = browser.get(f"/thanks?session_id={csid}&return_to={ARTICLE}")
    assert again.status_code == 200 and "paywall_signin" not in again.get_data(as_text=True)
    with db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(SigninCode)) == 0
        member = session.scalar(select(Reader).where(Reader.external_id == "member_1"))
        assert member is not None and member.verified_email is None
        sub = session.scalar(select(Subscription))
        assert sub is not None and sub.reader_id == member.id


def test_an_old_thanks_link_signs_no_one_in(
    browser: FlaskClient, stripe_api: FakeStripe, db: Database
) -> None:
    # Completed in September 2026: long past the window.
    events = scenario_events("monthly_subscription_checkout")
    session = {**completed_session(events), "client_reference_id": None}
    stripe_api.add_session(session, *related(events))
    resp = browser.get(f"/thanks?session_id={session['id']}")
    assert resp.status_code == 200
    assert "sign in with the email address you paid with" in resp.get_data(as_text=True)
    with db.transaction(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(SigninCode)) == 0
        # Recorded all the same: the payment is a fact whatever the link's age.
        assert s.scalar(select(func.count()).select_from(Subscription)) == 1


def test_return_to_survives_the_donate_forms_round_trips_and_foreign_ones_are_dropped(
    browser: FlaskClient, stripe_api: FakeStripe
) -> None:
    escaped = ARTICLE.replace("&", "&amp;")
    page = browser.get("/donate", query_string={"return_to": ARTICLE}).get_data(as_text=True)
    assert f'name="return_to" value="{escaped}"' in page
    # The currency links keep it.
    (usd,) = re.findall(r'<a href="(\?[^"]*currency=usd[^"]*)"', page)
    assert parse_qs(usd.replace("&amp;", "&")[1:])["return_to"] == [ARTICLE]
    # A mistyped amount re-renders the form with it.
    data = {"form_token": form_token(page), "other_amount": "abc", "interval": "once", "currency": "eur"}
    again = browser.post("/donate", data={**data, "return_to": ARTICLE})
    assert again.status_code == 422 and f'name="return_to" value="{escaped}"' in again.get_data(as_text=True)
    # Another origin is never carried, on either page, nor into Checkout.
    for path in ("/donate", "/subscribe"):
        html = browser.get(path, query_string={"return_to": "https://evil.example.com/x"}).get_data(
            as_text=True
        )
        assert "evil.example.com" not in html
    resp = browser.post(
        "/donate", data={**data, "other_amount": "5", "return_to": "https://evil.example.com/x"}
    )
    assert resp.status_code == 303
    (sent,) = stripe_api.posts("/v1/checkout/sessions")
    assert "evil" not in str(sent.form) and "return_to" not in sent.form["success_url"]


@pytest.mark.parametrize("path", ["/subscribe", "/donate"])
def test_paying_on_the_stand_ins_hosted_page_lands_signed_in_on_the_article(
    browser: FlaskClient,
    thanks_settings: Settings,
    stripe_api: FakeStripe,
    db: Database,
    site_key: dict[str, str],
    path: str,
) -> None:
    """The whole journey through real HTTP to the stand-in (what the browser test does): its hosted
    page takes an email and Pay, and sends the browser to our success_url."""
    html = browser.get(path, query_string={"return_to": ARTICLE}).get_data(as_text=True)
    data = {"form_token": form_token(html), "return_to": ARTICLE, "plan": "monthly"}
    data.update({"amount": "1000", "interval": "once", "currency": "eur"} if path == "/donate" else {})
    hosted = browser.post(path, data=data).headers["Location"]
    with urllib.request.urlopen(hosted) as page:
        assert b"<button>Pay</button>" in page.read()
    request = urllib.request.Request(f"{hosted}/pay", data=b"email=New.Reader%40example.org", method="POST")
    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as answer:
        opener.open(request)
    success = urlsplit(answer.value.headers["Location"])
    assert f"{success.scheme}://{success.netloc}" == PUBLIC
    resp = browser.get(f"{success.path}?{success.query}")
    assert resp.status_code == 303 and resp.headers["Location"].startswith(ARTICLE + "#paywall_signin=")
    reader = exchange(db, thanks_settings, signin_token(resp.headers["Location"]))
    with db.transaction(readonly=True) as session:
        row = session.scalar(select(Reader).where(Reader.external_id == reader))
        assert row is not None and row.verified_email == "new.reader@example.org"
    reason = "donation" if path == "/donate" else "subscription"
    assert access(browser, site_key, reader)["reason"] == reason


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
