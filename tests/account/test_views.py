"""/account: the account session (cookie flags, origins, sign out everywhere), the page from the rows,
each action with its CSRF checks, the data download, and the portal only for a signed-in reader."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from paywall import clock
from paywall.app import create_app
from paywall.config import Settings
from paywall.db import Database
from paywall.models import Reader
from paywall.signin.tokens import issue_reader_token, reader_from_token
from tests.checkout.test_pages import access_token
from tests.checkout.test_sessions import PLANS, PUBLIC
from tests.support.stripe_fake import FakeStripe

SITE = "https://news.example.com"
NOW = clock.now()


@pytest.fixture
def stripe_api() -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        yield fake


@pytest.fixture
def account_settings(make_settings: Callable[..., Settings], stripe_api: FakeStripe) -> Settings:
    env = {
        "PAYWALL_STRIPE_SECRET_KEY": "sk_test_account",
        "PAYWALL_STRIPE_API_BASE": stripe_api.url,
        "PAYWALL_ALLOWED_ORIGINS": SITE,
    }
    # Limits have their own test (test_account_signin.py): here each action runs many times.
    return make_settings(env, plans=PLANS, ratelimit={"enabled": False})


@pytest.fixture
def browser(account_settings: Settings, db: Database) -> FlaskClient:
    app = create_app(account_settings, db=db)
    app.config["TESTING"] = True
    return https_client(app)


def https_client(app: Flask) -> FlaskClient:
    """Over https on the public host, as in production: the cookie is Secure, sent back only so."""
    client = app.test_client()
    client.environ_base.update({"wsgi.url_scheme": "https", "HTTP_HOST": "paywall.example.org"})
    return client


def add_reader(db: Database, external_id: str = "ana", *, verified: str | None = "ana@example.org") -> None:
    with db.transaction() as session:
        session.add(
            Reader(
                external_id=external_id,
                email=verified or f"{external_id}@example.org",
                verified_email=verified,
                email_verified_at=NOW if verified else None,
                registered_at=NOW,
            )
        )


def reader_token(db: Database, settings: Settings, external_id: str = "ana") -> str:
    with db.transaction(readonly=True) as session:
        row = session.scalar(select(Reader).where(Reader.external_id == external_id))
        assert row is not None
        token, _ = issue_reader_token(settings, row)
    return token


def open_session(browser: FlaskClient, token: str, origin: str = SITE) -> Any:
    return browser.post("/account/session", data={"reader_token": token}, headers={"Origin": origin})


def form_token(html: str) -> str:
    match = re.search(r'name="form_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


@pytest.fixture
def signed_in(browser: FlaskClient, db: Database, account_settings: Settings) -> str:
    """Ana, signed in on ``browser``; returns a form token from her account page."""
    add_reader(db)
    assert open_session(browser, reader_token(db, account_settings)).status_code == 303
    page = browser.get("/account")
    assert page.status_code == 200
    return form_token(page.get_data(as_text=True))


def post(browser: FlaskClient, path: str, data: dict[str, str], origin: str = PUBLIC) -> Any:
    return browser.post(path, data=data, headers={"Origin": origin})


# ----- the session ---------------------------------------------------------------------------------


def test_the_widgets_button_opens_a_safe_cookie_session(
    browser: FlaskClient, db: Database, account_settings: Settings
) -> None:
    add_reader(db)
    resp = open_session(browser, reader_token(db, account_settings))
    assert resp.status_code == 303 and resp.headers["Location"] == "/account"
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith("paywall_account=")
    for flag in ("HttpOnly", "SameSite=Lax", "Secure", "Path=/account"):
        assert flag in cookie, cookie
    page = browser.get("/account")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Signed in as <strong>ana@example.org</strong>" in html
    assert page.headers["Cache-Control"] == "private, no-store"
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert "<script" not in html  # the signed-in page runs nothing


def test_a_session_from_a_foreign_origin_or_a_bad_token_is_refused(
    browser: FlaskClient, db: Database, account_settings: Settings
) -> None:
    add_reader(db)
    token = reader_token(db, account_settings)
    # Login CSRF: another site may not sign this browser in as someone else.
    assert open_session(browser, token, origin="https://evil.example").status_code == 403
    assert open_session(browser, "not-a-token").status_code == 403
    # An access token (what an article page holds) is not a reader token.
    assert open_session(browser, access_token(account_settings, "ana")).status_code == 403
    assert "paywall_account" not in browser.get("/account").get_data(as_text=True)
    assert "Email me a code" in browser.get("/account").get_data(as_text=True)
    # Our own origin may post it too (the page's own sign-in).
    assert open_session(browser, token, origin=PUBLIC).status_code == 303


def test_without_a_session_the_page_offers_the_email_sign_in(browser: FlaskClient) -> None:
    resp = browser.get("/account")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert '<label for="email">Email address</label>' in html and 'autocomplete="email"' in html
    assert 'action="/account/signin"' in html
    assert "<script" not in html  # nothing to run, and nothing from elsewhere


def test_signing_out_here_keeps_other_devices(
    browser: FlaskClient, signed_in: str, db: Database, account_settings: Settings
) -> None:
    resp = post(browser, "/account/signout", {"form_token": signed_in})
    assert resp.status_code == 303
    assert "paywall_account=;" in resp.headers["Set-Cookie"]
    assert "Email me a code" in browser.get("/account").get_data(as_text=True)
    with db.transaction(readonly=True) as session:
        assert reader_from_token(session, account_settings, reader_token(db, account_settings)) == "ana"


def test_signing_out_everywhere_ends_every_reader_token(
    browser: FlaskClient, db: Database, account_settings: Settings
) -> None:
    add_reader(db)
    elsewhere = reader_token(db, account_settings)  # the widget on a phone
    open_session(browser, reader_token(db, account_settings))
    ft = form_token(browser.get("/account").get_data(as_text=True))
    assert post(browser, "/account/signout", {"form_token": ft, "everywhere": "1"}).status_code == 303
    with db.transaction(readonly=True) as session:
        assert reader_from_token(session, account_settings, elsewhere) is None
    # The old cookie, replayed, is worth nothing either.
    browser.set_cookie("paywall_account", elsewhere, domain="localhost", path="/account")
    assert "Email me a code" in browser.get("/account").get_data(as_text=True)
    assert post(browser, "/account/data", {"form_token": ft}).status_code == 403


# ----- CSRF --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/account/portal", "/account/appeals", "/account/data", "/account/delete", "/account/signout"],
)
def test_every_action_needs_our_origin_and_the_readers_form_token(
    browser: FlaskClient, signed_in: str, db: Database, account_settings: Settings, path: str
) -> None:
    data = {"appeals": "on", "everywhere": "1"}
    assert post(browser, path, data).status_code == 400  # no form token
    assert post(browser, path, {**data, "form_token": "forged"}).status_code == 400
    foreign = post(browser, path, {**data, "form_token": signed_in}, origin="https://evil.example")
    assert foreign.status_code == 403 and "another site" in foreign.get_data(as_text=True)
    # A form token rendered for another reader is refused too.
    add_reader(db, "bob", verified="bob@example.org")
    other = https_client(browser.application)
    open_session(other, reader_token(db, account_settings, "bob"))
    bobs = form_token(other.get("/account").get_data(as_text=True))
    assert post(browser, path, {**data, "form_token": bobs}).status_code == 400
    # Nothing happened: still signed in, appeals untouched, the session version unchanged.
    assert "Signed in as" in browser.get("/account").get_data(as_text=True)
    with db.transaction(readonly=True) as session:
        ana = session.scalar(select(Reader).where(Reader.external_id == "ana"))
        assert ana is not None and ana.session_version == 0 and not ana.marketing_opt_in


def test_actions_without_a_session_are_refused(browser: FlaskClient, db: Database, signed_in: str) -> None:
    browser.delete_cookie("paywall_account", domain="localhost", path="/account")
    resp = post(browser, "/account/data", {"form_token": signed_in})
    assert resp.status_code == 403 and "signed out" in resp.get_data(as_text=True)
