"""Reader pages: /donate, /subscribe, /thanks (and /portal, now only a pointer to /account) — signed tokens, form tokens, 303 to Checkout,
accessible markup, HTML error pages, and the card-testing rate limits."""

from __future__ import annotations

import datetime as dt
import importlib.util
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from paywall import signing
from paywall.app import create_app
from paywall.config import ConfigError, Settings
from paywall.db import Database
from tests.checkout.test_sessions import PLANS, PUBLIC, add_customer
from tests.support.stripe_fake import FakeStripe


@pytest.fixture
def stripe_api() -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        yield fake


@pytest.fixture
def pages_settings(make_settings: Callable[..., Settings], stripe_api: FakeStripe) -> Callable[..., Settings]:
    def make(env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        overrides.setdefault("plans", PLANS)
        base = {"PAYWALL_STRIPE_SECRET_KEY": "sk_test_pages", "PAYWALL_STRIPE_API_BASE": stripe_api.url}
        return make_settings({**base, **(env or {})}, **overrides)

    return make


@pytest.fixture
def make_browser(pages_settings: Callable[..., Settings], db: Database) -> Callable[..., FlaskClient]:
    def make(env: dict[str, str] | None = None, **overrides: Any) -> FlaskClient:
        app = create_app(pages_settings(env, **overrides), db=db)
        app.config["TESTING"] = True
        return app.test_client()

    return make


@pytest.fixture
def browser(make_browser: Callable[..., FlaskClient]) -> FlaskClient:
    return make_browser()


def access_token(
    settings: Settings, reader: str, *, appeal: bool = True, ttl: int = 900, purpose: str = "access"
) -> str:
    claims = {"sub": reader, "access": False, "reason": "metered", "until": None, "appeal": appeal}
    token, _ = signing.sign(settings, claims, purpose=purpose, ttl=dt.timedelta(seconds=ttl))
    return token


def form_claims(settings: Settings, html: str) -> dict[str, Any]:
    return signing.verify(settings, form_token(html), purpose="checkout-form")


def form_token(html: str) -> str:
    match = re.search(r'name="form_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


@pytest.fixture
def token(pages_settings: Callable[..., Settings]) -> str:
    return access_token(pages_settings(), "reader-42")


def test_donate_page_is_an_accessible_form_without_scripts(browser: FlaskClient) -> None:
    resp = browser.get("/donate")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert "<script" not in html  # CSP default-src 'self', and nothing to run anyway
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers.get("Set-Cookie") is None
    assert '<html lang="en">' in html
    assert (
        html.count("<fieldset") == 2
        and "<legend>How often</legend>" in html
        and "<legend>Amount (EUR)</legend>" in html
    )
    for label in ("5.00 EUR", "10.00 EUR", "25.00 EUR", "50.00 EUR", "Once", "Monthly", "Yearly"):
        assert f">{label}</label>" in html
    assert '<label for="other_amount">Or another amount in EUR</label>' in html
    # Every input has a label.
    for input_id in re.findall(r'<input type="(?:radio|text)"[^>]* id="([^"]+)"', html):
        assert f'for="{input_id}"' in html
    assert 'value="1000" checked' in html and 'value="once" checked' in html
    assert ":focus-visible" in html
    # Other currencies are links, the current one marked.
    assert 'aria-current="true">EUR</a>' in html and ">USD</a>" in html
    usd = browser.get("/donate?currency=usd").get_data(as_text=True)
    assert "<legend>Amount (USD)</legend>" in usd and "10.00 USD" in usd


def test_donating_redirects_to_checkout_for_the_tokens_reader(
    browser: FlaskClient, token: str, stripe_api: FakeStripe, db: Database
) -> None:
    add_customer(db, "reader-42", "cus_42")
    page = browser.get(f"/donate?token={token}&campaign=footer-2025")
    ft = form_token(page.get_data(as_text=True))
    resp = browser.post(
        "/donate",
        data={
            "form_token": ft,
            "amount": "2500",
            "interval": "month",
            "currency": "eur",
            "campaign": "footer-2025",
        },
    )
    assert resp.status_code == 303
    assert resp.headers["Location"] == f"{stripe_api.url}/checkout/cs_test_fake0001"
    (sent,) = stripe_api.posts("/v1/checkout/sessions")
    assert sent.form["mode"] == "subscription"
    assert sent.form["line_items[0][price_data][unit_amount]"] == "2500"
    assert sent.form["line_items[0][price_data][recurring][interval]"] == "month"
    assert sent.form["client_reference_id"] == "reader-42"
    assert sent.form["customer"] == "cus_42"
    assert sent.form["metadata[campaign]"] == "footer-2025"
    assert sent.form["subscription_data[metadata][reader]"] == "reader-42"
    # The reader's token is never handed to Stripe.
    assert token not in str(sent.form)


def test_another_amount_and_a_double_submit(browser: FlaskClient, stripe_api: FakeStripe) -> None:
    ft = form_token(browser.get("/donate?currency=gbp").get_data(as_text=True))
    # The preselected preset is sent too; the typed amount wins.
    data = {
        "form_token": ft,
        "amount": "1000",
        "other_amount": "12,50",
        "interval": "once",
        "currency": "gbp",
    }
    first = browser.post("/donate", data=data)
    second = browser.post("/donate", data=data)
    assert first.status_code == second.status_code == 303
    assert first.headers["Location"] == second.headers["Location"]
    sent = stripe_api.posts("/v1/checkout/sessions")
    assert sent[0].form["line_items[0][price_data][unit_amount]"] == "1250"
    assert sent[0].form["line_items[0][price_data][currency]"] == "gbp"
    assert sent[0].form["submit_type"] == "donate"
    assert sent[0].idempotency_key == sent[1].idempotency_key
    # A guest: no reader anywhere.
    assert "client_reference_id" not in sent[0].form and "metadata[reader]" not in sent[0].form
    # A fresh page is a fresh form: another session.
    ft2 = form_token(browser.get("/donate?currency=gbp").get_data(as_text=True))
    third = browser.post("/donate", data={**data, "form_token": ft2})
    assert third.headers["Location"] != first.headers["Location"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"amount": "1000", "other_amount": "1.50"}, "Must be between 2.00 EUR and 1000.00 EUR"),
        ({"amount": "1000", "other_amount": "5000"}, "Must be between 2.00 EUR and 1000.00 EUR"),
        ({"amount": "1000", "other_amount": "ten"}, "Enter an amount such as 12 or 12.50."),
        ({"amount": "1000", "other_amount": "10.001"}, "Enter an amount such as 12 or 12.50."),
        ({}, "Choose an amount."),
    ],
)
def test_bad_amounts_re_render_the_form_with_the_error(
    browser: FlaskClient, stripe_api: FakeStripe, data: dict[str, str], message: str
) -> None:
    ft = form_token(browser.get("/donate").get_data(as_text=True))
    resp = browser.post("/donate", data={"form_token": ft, "interval": "once", "currency": "eur", **data})
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert message in html
    assert (
        'role="alert"' in html
        and 'aria-invalid="true"' in html
        and 'aria-describedby="amount-hint amount-error"' in html
    )
    assert "<title>Error: Donate</title>" in html
    assert stripe_api.requests == []


def test_posts_without_a_valid_form_token_are_refused(
    browser: FlaskClient, pages_settings: Callable[..., Settings], token: str, stripe_api: FakeStripe
) -> None:
    settings = pages_settings()
    base = {"amount": "1000", "interval": "once", "currency": "eur"}
    assert browser.post("/donate", data=base).status_code == 400
    # The site's own token is not a form token, and a subscribe form is not a donate form.
    assert browser.post("/donate", data={**base, "form_token": token}).status_code == 400
    sub_ft, _ = signing.sign(
        settings,
        {"sub": "r", "form": "subscribe", "nonce": "n"},
        purpose="checkout-form",
        ttl=dt.timedelta(hours=1),
    )
    assert browser.post("/donate", data={**base, "form_token": sub_ft}).status_code == 400
    expired, _ = signing.sign(
        settings, {"form": "donate", "nonce": "n"}, purpose="checkout-form", ttl=dt.timedelta(seconds=-60)
    )
    assert browser.post("/donate", data={**base, "form_token": expired}).status_code == 400
    ft = form_token(browser.get("/donate").get_data(as_text=True))
    assert browser.post("/donate", data={**base, "form_token": ft[:-4] + "AAAA"}).status_code == 400
    assert stripe_api.requests == []


def test_an_expired_reader_token_still_lets_a_guest_give(
    browser: FlaskClient, pages_settings: Callable[..., Settings], stripe_api: FakeStripe
) -> None:
    expired = access_token(pages_settings(), "reader-42", ttl=-120)
    ft = form_token(browser.get(f"/donate?token={expired}").get_data(as_text=True))
    resp = browser.post(
        "/donate", data={"form_token": ft, "amount": "500", "interval": "once", "currency": "eur"}
    )
    assert resp.status_code == 303
    assert "client_reference_id" not in stripe_api.posts("/v1/checkout/sessions")[0].form


def test_stripe_down_shows_an_html_502(browser: FlaskClient, stripe_api: FakeStripe) -> None:
    stripe_api.fail_next(400, {"error": {"message": "Invalid currency", "type": "invalid_request_error"}})
    ft = form_token(browser.get("/donate").get_data(as_text=True))
    resp = browser.post(
        "/donate", data={"form_token": ft, "amount": "500", "interval": "once", "currency": "eur"}
    )
    assert resp.status_code == 502
    assert resp.mimetype == "text/html"
    assert "Nothing was charged" in resp.get_data(as_text=True)


def test_subscribe_lists_and_starts_plans(browser: FlaskClient, token: str, stripe_api: FakeStripe) -> None:
    guest = browser.get("/subscribe").get_data(as_text=True)
    assert (
        "Monthly" in guest
        and "Yearly" in guest
        and "5.00 EUR per month" in guest
        and "50.00 EUR per year" in guest
    )
    # A guest subscribes too (issue 14): Checkout collects the email.
    assert guest.count("<form") == 2 and "Sign in on our site" not in guest and "No account needed" in guest

    page = browser.get(f"/subscribe?token={token}").get_data(as_text=True)
    assert page.count("<form") == 2
    one = browser.get(f"/subscribe?token={token}&plan=yearly").get_data(as_text=True)
    assert one.count("<form") == 1 and "Two months free." in one
    assert browser.get(f"/subscribe?token={token}&plan=gold").status_code == 404

    resp = browser.post("/subscribe", data={"form_token": form_token(one), "plan": "yearly"})
    assert resp.status_code == 303
    assert resp.headers["Location"].startswith(f"{stripe_api.url}/checkout/")
    (sent,) = stripe_api.posts("/v1/checkout/sessions")
    assert sent.form["line_items[0][price]"] == "price_yearly456"
    assert sent.form["client_reference_id"] == "reader-42"
    assert sent.form["subscription_data[metadata][reader]"] == "reader-42"
    assert sent.form["cancel_url"] == f"{PUBLIC}/subscribe"


def test_example_plan_placeholder_price_is_never_offered(
    make_settings: Callable[..., Settings],
    db: Database,
    stripe_api: FakeStripe,
    make_key: Callable[[str], dict[str, str]],
) -> None:
    """The shipped [plans.monthly] keeps its price_REPLACE_ME: no list, page or widget offers it
    (before, every one did and it failed only when a reader clicked)."""
    settings = make_settings(
        {"PAYWALL_STRIPE_SECRET_KEY": "sk_test_pages", "PAYWALL_STRIPE_API_BASE": stripe_api.url},
        server={"allowed_origins": ["https://news.example.org"]},
    )
    assert settings.raw["plans"]["monthly"]["price"] == "price_REPLACE_ME"
    app = create_app(settings, db=db)
    app.config["TESTING"] = True
    client = app.test_client()
    reader_token = access_token(settings, "reader-42")

    assert client.get("/v1/plans", headers=make_key("site")).get_json() == {"plans": []}
    page = client.get(f"/subscribe?token={reader_token}").get_data(as_text=True)
    assert "Monthly supporter" not in page and "<form" not in page and "No plans are on offer" in page
    assert client.get(f"/subscribe?token={reader_token}&plan=monthly").status_code == 404
    appeal = client.get(f"/support/appeal?token={reader_token}").get_json()
    assert appeal["show"] is True and appeal["donate_url"]
    assert "subscribe_url" not in appeal and "subscribe_label" not in appeal
    form, _ = signing.sign(
        settings,
        {"form": "subscribe", "nonce": "n", "sub": "reader-42"},
        purpose="checkout-form",
        ttl=dt.timedelta(hours=1),
    )
    assert client.post("/subscribe", data={"form_token": form, "plan": "monthly"}).status_code == 404
    assert stripe_api.requests == []


def test_an_expired_token_subscribes_as_a_guest(
    browser: FlaskClient, pages_settings: Callable[..., Settings], stripe_api: FakeStripe
) -> None:
    """Before issue 14 a guest could not subscribe; now an expired token, like none, buys as a guest."""
    expired = access_token(pages_settings(), "reader-42", ttl=-120)
    html = browser.get(f"/subscribe?token={expired}").get_data(as_text=True)
    assert html.count("<form") == 2
    resp = browser.post("/subscribe", data={"form_token": form_token(html), "plan": "monthly"})
    assert resp.status_code == 303
    (sent,) = stripe_api.posts("/v1/checkout/sessions")
    assert "client_reference_id" not in sent.form and "reader-42" not in str(sent.form)
    # Still no Checkout Session without a form token of ours.
    assert browser.post("/subscribe", data={"plan": "monthly"}).status_code == 400
    assert len(stripe_api.posts("/v1/checkout/sessions")) == 1


def test_mail_links_work_like_site_tokens(
    browser: FlaskClient, pages_settings: Callable[..., Settings]
) -> None:
    link = access_token(pages_settings(), "reader-mail", purpose="reader-link")
    assert browser.get(f"/subscribe?token={link}").get_data(as_text=True).count("<form") == 2
    other_purpose = access_token(pages_settings(), "reader-mail", purpose="unsubscribe")
    # A token made for another purpose names no one: the page is the guest's.
    assert "reader-mail" not in form_claims(
        pages_settings(), browser.get(f"/subscribe?token={other_purpose}").get_data(as_text=True)
    ).get("sub", "")


def test_a_mail_links_campaign_is_carried_to_checkout(
    browser: FlaskClient, pages_settings: Callable[..., Settings], stripe_api: FakeStripe
) -> None:
    claims = {"sub": "reader-mail", "cmp": "giving-tuesday"}
    link, _ = signing.sign(pages_settings(), claims, purpose="reader-link", ttl=dt.timedelta(days=30))
    ft = form_token(browser.get(f"/donate?token={link}").get_data(as_text=True))
    html = browser.get(f"/donate?token={link}").get_data(as_text=True)
    assert 'name="campaign" value="giving-tuesday"' in html
    resp = browser.post(
        "/donate",
        data={
            "form_token": ft,
            "amount": "1000",
            "interval": "once",
            "currency": "eur",
            "campaign": "giving-tuesday",
        },
    )
    assert resp.status_code == 303
    form = stripe_api.posts("/v1/checkout/sessions")[0].form
    assert form["metadata[campaign]"] == "giving-tuesday"
    assert form["payment_intent_data[metadata][campaign]"] == "giving-tuesday"
    assert form["client_reference_id"] == "reader-mail"


def test_thanks_page(make_browser: Callable[..., FlaskClient]) -> None:
    """Without a session id (the portal's return): the plain page. With one, see test_checkout_thanks*."""
    browser = make_browser(checkout={"site_url": "https://news.example.org/"})
    html = browser.get("/thanks?kind=donation").get_data(as_text=True)
    assert "Thank you" in html and "Your donation" in html
    assert '<a href="https://news.example.org/">Back to the site</a>' in html
    assert "All set" in browser.get("/thanks?from=portal").get_data(as_text=True)


def test_portal_no_longer_opens_with_an_access_token(
    browser: FlaskClient, token: str, stripe_api: FakeStripe, db: Database
) -> None:
    """Billing opens only from /account for a signed-in reader (tests/account/test_actions.py)."""
    add_customer(db, "reader-42", "cus_42")
    resp = browser.get(f"/portal?token={token}")
    assert resp.status_code == 200 and "Location" not in resp.headers
    assert 'href="/account"' in resp.get_data(as_text=True)
    assert stripe_api.requests == []


def test_card_testing_is_limited_per_address(
    make_browser: Callable[..., FlaskClient], stripe_api: FakeStripe
) -> None:
    browser = make_browser(ratelimit={"checkout_per_address": "3/minute"})
    for n in range(3):
        ft = form_token(browser.get("/donate").get_data(as_text=True))
        resp = browser.post(
            "/donate", data={"form_token": ft, "amount": str(500 + n), "interval": "once", "currency": "eur"}
        )
        assert resp.status_code == 303
    resp = browser.post(
        "/donate", data={"form_token": ft, "amount": "900", "interval": "once", "currency": "eur"}
    )
    assert resp.status_code == 429
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json()["detail"] == "Too many attempts from here; wait a little and try again."
    assert int(resp.headers["Retry-After"]) > 0
    assert len(stripe_api.posts("/v1/checkout/sessions")) == 3
    # Another address is not held up.
    other = browser.post(
        "/donate",
        data={"form_token": ft, "amount": "900", "interval": "once", "currency": "eur"},
        environ_base={"REMOTE_ADDR": "192.0.2.9"},
    )
    assert other.status_code == 303


def test_card_testing_is_limited_per_reader_across_addresses(
    make_browser: Callable[..., FlaskClient], pages_settings: Callable[..., Settings], stripe_api: FakeStripe
) -> None:
    browser = make_browser(ratelimit={"checkout_per_reader": "2/minute"})
    token = access_token(pages_settings(), "tester")
    codes = []
    for n in range(3):
        ft = form_token(browser.get(f"/donate?token={token}").get_data(as_text=True))
        resp = browser.post(
            "/donate",
            data={"form_token": ft, "amount": str(500 + n), "interval": "once", "currency": "eur"},
            environ_base={"REMOTE_ADDR": f"198.51.100.{n + 1}"},
        )
        codes.append(resp.status_code)
    assert codes == [303, 303, 429]


def test_proxy_hops_take_the_address_from_x_forwarded_for(
    make_browser: Callable[..., FlaskClient], stripe_api: FakeStripe
) -> None:
    browser = make_browser(ratelimit={"checkout_per_address": "1/minute", "proxy_hops": 1})
    ft = form_token(browser.get("/donate").get_data(as_text=True))
    data = {"form_token": ft, "amount": "500", "interval": "once", "currency": "eur"}
    # A client cannot pick its bucket by prepending addresses: only the proxy's entry counts.
    assert (
        browser.post("/donate", data=data, headers={"X-Forwarded-For": "1.1.1.1, 203.0.113.5"}).status_code
        == 303
    )
    assert (
        browser.post("/donate", data=data, headers={"X-Forwarded-For": "2.2.2.2, 203.0.113.5"}).status_code
        == 429
    )
    assert browser.post("/donate", data=data, headers={"X-Forwarded-For": "203.0.113.6"}).status_code == 303


def test_limits_can_be_turned_off(make_browser: Callable[..., FlaskClient], stripe_api: FakeStripe) -> None:
    browser = make_browser(ratelimit={"enabled": False, "checkout_per_address": "1/hour"})
    for _ in range(3):
        ft = form_token(browser.get("/donate").get_data(as_text=True))
        assert (
            browser.post(
                "/donate", data={"form_token": ft, "amount": "500", "interval": "once", "currency": "eur"}
            ).status_code
            == 303
        )


def test_a_storage_that_cannot_be_used_fails_at_start(
    pages_settings: Callable[..., Settings], db: Database
) -> None:
    with pytest.raises(ConfigError, match=r"ratelimit\.storage_uri: unknown storage scheme"):
        create_app(pages_settings(ratelimit={"storage_uri": "bogus://nowhere"}), db=db)
    redis_uri = pages_settings(ratelimit={"storage_uri": "redis://127.0.0.1:9/0"})
    if importlib.util.find_spec("redis") is None:
        # Without the extra, say which package is missing rather than fail at the first donation.
        with pytest.raises(ConfigError, match=r"pip install 'paywall\[redis\]'"):
            create_app(redis_uri, db=db)
    else:
        create_app(redis_uri, db=db)  # connects lazily; an outage falls back to memory


def test_a_bad_limit_fails_at_start(pages_settings: Callable[..., Settings], db: Database) -> None:
    with pytest.raises(ConfigError, match=r"ratelimit\.checkout_per_address"):
        create_app(pages_settings(ratelimit={"checkout_per_address": "ten per fortnight"}), db=db)
