"""Checkout attribution end to end against the local Stripe fake: /donate and /subscribe opened
from an appeal's link (``?ask=``), a mail link's ``ask`` claim or the reader's own arm; the API's
``ask`` field; and the variant's presets on /donate. Each asserts the metadata Stripe received."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from paywall import clock, signing
from paywall.checkout.appeals import offered_amounts
from paywall.config import ConfigError, Settings
from paywall.db import Database
from paywall.experiments.asks import Ask, encode_ask
from paywall.experiments.assignment import assign
from paywall.models import CheckoutSession, Payment, Subscription
from paywall.widget.settings import appeal_settings
from tests.checkout.test_pages import access_token, form_token, make_browser, pages_settings, stripe_api
from tests.checkout.test_sessions import api, checkout_env, make_client
from tests.support.stripe_fake import FakeStripe

__all__ = ["api", "checkout_env", "make_browser", "make_client", "pages_settings", "stripe_api"]

TODAY = dt.datetime.now(dt.UTC).date()
EXPERIMENTS: dict[str, Any] = {
    "footer-copy": {
        "holdback": 0.25,
        "start": (TODAY - dt.timedelta(days=10)).isoformat(),
        "end": (TODAY + dt.timedelta(days=30)).isoformat(),
        "channels": ["footer"],
        "variants": {
            "plain": {"weight": 1},
            # 100 is under the minimum (200), 500000 over the maximum (100000): never offered.
            "urgent": {"weight": 1, "presets": [100, 1500, 3000, 500000], "default_amount": 3000},
            "odd": {"weight": 1, "presets": [50, 999999], "default_amount": 1200},
        },
    },
}
APPEAL_KEYS = ("appeal_experiment", "appeal_variant", "appeal_channel")


@pytest.fixture
def settings(pages_settings: Callable[..., Settings]) -> Settings:
    return pages_settings(appeal={"experiments": EXPERIMENTS})


@pytest.fixture
def browser(make_browser: Callable[..., FlaskClient]) -> FlaskClient:
    return make_browser(appeal={"experiments": EXPERIMENTS})


def subject_in(settings: Settings, arm: str, prefix: str = "reader-") -> str:
    experiment = appeal_settings(settings).experiments["footer-copy"]
    return next(f"{prefix}{n}" for n in range(10_000) if assign(experiment, f"{prefix}{n}").variant == arm)


def footer_ask(settings: Settings, subject: str, variant: str, *, channel: str = "footer") -> str:
    return encode_ask(settings, Ask(channel, "footer-copy", variant, subject, clock.now()))


def appeal_of(form: dict[str, str], prefix: str = "metadata") -> dict[str, str]:
    return {key: form[f"{prefix}[{key}]"] for key in APPEAL_KEYS if f"{prefix}[{key}]" in form}


def hidden_ask(html: str) -> str | None:
    match = re.search(r'name="ask" value="([^"]+)"', html)
    return match.group(1) if match else None


def presets(html: str) -> list[tuple[str, bool]]:
    return [(v, c == " checked") for v, c in re.findall(r'name="amount" value="(\d+)"( checked)?', html)]


def donate(browser: FlaskClient, html: str, **fields: str) -> Any:
    data = {"form_token": form_token(html), "amount": "1000", "interval": "once", "currency": "eur"}
    ask = hidden_ask(html)
    if ask:
        data["ask"] = ask
    return browser.post("/donate", data={**data, **fields})


def test_a_footer_click_is_attributed_to_its_variant_on_the_session_and_the_payment(
    browser: FlaskClient, settings: Settings, stripe_api: FakeStripe
) -> None:
    reader = subject_in(settings, "plain")
    token = access_token(settings, reader)
    # The reader is in "plain" but clicked an ask that says "urgent" (the arm it was shown).
    html = browser.get(f"/donate?token={token}&ask={footer_ask(settings, reader, 'urgent')}").get_data(
        as_text=True
    )
    assert hidden_ask(html)
    assert donate(browser, html).status_code == 303
    (sent,) = stripe_api.posts("/v1/checkout/sessions")
    want = {"appeal_experiment": "footer-copy", "appeal_variant": "urgent", "appeal_channel": "footer"}
    assert appeal_of(sent.form) == want
    assert appeal_of(sent.form, "payment_intent_data[metadata]") == want
    assert sent.form["client_reference_id"] == reader
    assert "subscription_data[metadata][appeal_variant]" not in sent.form


def test_a_recurring_gift_carries_it_into_the_subscription(
    browser: FlaskClient, settings: Settings, stripe_api: FakeStripe
) -> None:
    reader = subject_in(settings, "urgent")
    token = access_token(settings, reader)
    html = browser.get(f"/donate?token={token}&ask={footer_ask(settings, reader, 'urgent')}").get_data(
        as_text=True
    )
    assert donate(browser, html, interval="month").status_code == 303
    (sent,) = stripe_api.posts("/v1/checkout/sessions")
    assert appeal_of(sent.form, "subscription_data[metadata]")["appeal_channel"] == "footer"
    assert appeal_of(sent.form)["appeal_variant"] == "urgent"


def test_subscribe_carries_the_ask_to_checkout(
    browser: FlaskClient, settings: Settings, stripe_api: FakeStripe
) -> None:
    reader = subject_in(settings, "plain")
    token = access_token(settings, reader)
    gate = encode_ask(settings, Ask("gate", "", "", reader, clock.now()))
    html = browser.get(f"/subscribe?token={token}&ask={gate}").get_data(as_text=True)
    asks = re.findall(r'name="ask" value="([^"]+)"', html)
    assert len(asks) == 2  # one per plan's form
    resp = browser.post(
        "/subscribe", data={"form_token": form_token(html), "plan": "monthly", "ask": asks[0]}
    )
    assert resp.status_code == 303
    (sent,) = stripe_api.posts("/v1/checkout/sessions")
    # The gate ran no experiment: the channel is the gate's, the arm the reader's footer arm.
    want = {"appeal_experiment": "footer-copy", "appeal_variant": "plain", "appeal_channel": "gate"}
    assert appeal_of(sent.form) == want
    assert appeal_of(sent.form, "subscription_data[metadata]") == want


def test_an_anonymous_browser_without_an_ask_is_attributed_to_its_arm_as_a_guest(
    browser: FlaskClient, settings: Settings, stripe_api: FakeStripe
) -> None:
    key = subject_in(settings, "urgent", prefix=" anon:browser-0000000000-")
    token = access_token(settings, key)
    html = browser.get(f"/donate?token={token}").get_data(as_text=True)
    # The guest's form token names nobody; the carried ask brings the arm to the POST.
    assert donate(browser, html).status_code == 303
    (sent,) = stripe_api.posts("/v1/checkout/sessions")
    assert appeal_of(sent.form) == {
        "appeal_experiment": "footer-copy",
        "appeal_variant": "urgent",
        "appeal_channel": "direct",
    }
    assert "client_reference_id" not in sent.form and "anon" not in str(sent.form)


def test_a_holdback_reader_who_gives_anyway_counts_for_holdback(
    browser: FlaskClient, settings: Settings, stripe_api: FakeStripe
) -> None:
    reader = subject_in(settings, "holdback")
    html = browser.get(f"/donate?token={access_token(settings, reader)}").get_data(as_text=True)
    assert presets(html) == [("500", False), ("1000", True), ("2500", False), ("5000", False)]
    assert donate(browser, html).status_code == 303
    (sent,) = stripe_api.posts("/v1/checkout/sessions")
    assert appeal_of(sent.form) == {
        "appeal_experiment": "footer-copy",
        "appeal_variant": "holdback",
        "appeal_channel": "direct",
    }


def test_another_readers_or_a_forged_ask_is_ignored(
    browser: FlaskClient, settings: Settings, stripe_api: FakeStripe
) -> None:
    reader = subject_in(settings, "plain")
    token = access_token(settings, reader)
    foreign = footer_ask(settings, "reader-someone-else", "urgent")
    html = browser.get(f"/donate?token={token}&ask={foreign}").get_data(as_text=True)
    assert donate(browser, html).status_code == 303
    # A forged hidden field is no better: the reader's own arm, never a 500.
    forged = donate(browser, html, ask="forged.ask")
    assert forged.status_code == 303
    for sent in stripe_api.posts("/v1/checkout/sessions"):
        assert appeal_of(sent.form) == {
            "appeal_experiment": "footer-copy",
            "appeal_variant": "plain",
            "appeal_channel": "direct",
        }


def test_without_an_experiment_a_bad_ask_sends_no_appeal_keys(
    make_browser: Callable[..., FlaskClient], stripe_api: FakeStripe
) -> None:
    browser = make_browser()
    html = browser.get("/donate?ask=not-an-ask").get_data(as_text=True)
    assert hidden_ask(html) is None
    assert donate(browser, html).status_code == 303
    (sent,) = stripe_api.posts("/v1/checkout/sessions")
    assert not any("appeal" in key for key in sent.form)


def test_a_mail_links_ask_is_checked_at_the_links_time(
    browser: FlaskClient, settings: Settings, stripe_api: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mail read three days after it was sent: its ask is past its 24 h, the signed link is not."""
    reader = subject_in(settings, "urgent")
    sent_at = clock.now() - dt.timedelta(days=3)
    monkeypatch.setattr(clock, "now", lambda: sent_at)
    mail_ask = encode_ask(settings, Ask("giving-tuesday", "", "", reader, sent_at))
    claims = {"sub": reader, "cmp": "giving-tuesday", "ask": mail_ask}
    link, _ = signing.sign(settings, claims, purpose="reader-link", ttl=dt.timedelta(days=30))
    monkeypatch.undo()
    html = browser.get(f"/donate?token={link}").get_data(as_text=True)
    assert donate(browser, html, campaign="giving-tuesday").status_code == 303
    (sent,) = stripe_api.posts("/v1/checkout/sessions")
    assert appeal_of(sent.form) == {
        "appeal_experiment": "footer-copy",
        "appeal_variant": "urgent",
        "appeal_channel": "giving-tuesday",
    }
    assert sent.form["metadata[campaign]"] == "giving-tuesday"


def test_the_variants_presets_and_default_amount(browser: FlaskClient, settings: Settings) -> None:
    urgent = access_token(settings, subject_in(settings, "urgent"))
    html = browser.get(f"/donate?token={urgent}").get_data(as_text=True)
    # Only the presets within [donations.limits.eur] (200..100000); the default preselected.
    assert presets(html) == [("1500", False), ("3000", True)]
    assert "30.00 EUR" in html
    # Switching currency keeps the attribution (the link carries the ask).
    links = re.findall(r'href="(\?[^"]+)"', html)
    assert links and all("ask=" in link for link in links)
    odd = access_token(settings, subject_in(settings, "odd"))
    html = browser.get(f"/donate?token={odd}").get_data(as_text=True)
    # No preset left: the currency's own; a default amount that is no preset is offered with them.
    assert presets(html) == [
        ("500", False),
        ("1000", False),
        ("1200", True),
        ("2500", False),
        ("5000", False),
    ]
    plain = access_token(settings, subject_in(settings, "plain"))
    assert presets(browser.get(f"/donate?token={plain}").get_data(as_text=True)) == [
        ("500", False),
        ("1000", True),
        ("2500", False),
        ("5000", False),
    ]


def test_a_bad_amount_re_renders_with_the_variants_presets_and_the_ask(
    browser: FlaskClient, settings: Settings
) -> None:
    urgent = access_token(settings, subject_in(settings, "urgent"))
    html = browser.get(f"/donate?token={urgent}").get_data(as_text=True)
    resp = donate(browser, html, other_amount="twelve")
    assert resp.status_code == 422
    again = resp.get_data(as_text=True)
    assert presets(again) == [("1500", False), ("3000", False)]
    assert hidden_ask(again)


def test_the_api_takes_an_ask_and_attributes_the_reader_without_one(
    make_client: Callable[..., FlaskClient],
    site_key: dict[str, str],
    stripe_api: FakeStripe,
    settings: Settings,
) -> None:
    api = make_client(appeal={"experiments": EXPERIMENTS})
    reader = subject_in(settings, "plain")
    body = {"reader": reader, "amount": 1500, "currency": "eur", "interval": "once"}
    gate = encode_ask(settings, Ask("gate", "", "", reader, clock.now()))
    assert api.post("/v1/checkout/donation", json={**body, "ask": gate}, headers=site_key).status_code == 201
    assert (
        api.post("/v1/checkout/donation", json={**body, "amount": 1600}, headers=site_key).status_code == 201
    )
    resp = api.post(
        "/v1/checkout/subscription",
        json={"reader": reader, "plan": "monthly", "ask": "junk"},
        headers=site_key,
    )
    assert resp.status_code == 201
    with_ask, without, subscription = stripe_api.posts("/v1/checkout/sessions")
    assert appeal_of(with_ask.form, "payment_intent_data[metadata]") == {
        "appeal_experiment": "footer-copy",
        "appeal_variant": "plain",
        "appeal_channel": "gate",
    }
    assert appeal_of(without.form)["appeal_channel"] == "direct"
    assert appeal_of(subscription.form, "subscription_data[metadata]")["appeal_channel"] == "direct"
    # A guest's donation with no ask: nothing to attribute.
    guest = {"amount": 1500, "currency": "eur", "interval": "once"}
    assert api.post("/v1/checkout/donation", json=guest, headers=site_key).status_code == 201
    assert not any("appeal" in key for key in stripe_api.posts("/v1/checkout/sessions")[-1].form)


def test_the_api_refuses_an_absurd_ask_naming_the_field(
    api: FlaskClient, site_key: dict[str, str], stripe_api: FakeStripe
) -> None:
    body = {"amount": 1500, "currency": "eur", "interval": "once", "ask": "x" * 2001}
    resp = api.post("/v1/checkout/donation", json=body, headers=site_key)
    assert resp.status_code == 422 and "ask" in resp.get_json()["errors"]
    resp = api.post("/v1/checkout/donation", json={**body, "ask": 7}, headers=site_key)
    assert resp.status_code == 422 and "ask" in resp.get_json()["errors"]
    assert stripe_api.posts("/v1/checkout/sessions") == []


def test_the_ask_field_is_documented(api: FlaskClient) -> None:
    schemas = api.get("/openapi.json").get_json()["components"]["schemas"]
    for name in ("DonationCheckout", "SubscriptionCheckout"):
        field = schemas[name]["properties"]["ask"]
        assert "string" in field["type"] and "appeal_variant" in field["description"]


@pytest.mark.parametrize(("page", "interval"), [("donate", "once"), ("donate", "year"), ("subscribe", None)])
def test_a_paid_checkout_is_recorded_attributed_at_thanks(
    browser: FlaskClient,
    settings: Settings,
    stripe_api: FakeStripe,
    db: Database,
    page: str,
    interval: str | None,
) -> None:
    """Click, Checkout, pay, /thanks (no webhook): the rows it records name the variant clicked."""
    browser_key = subject_in(settings, "urgent", prefix=" anon:browser-0000000000-")
    token = access_token(settings, browser_key)
    html = browser.get(f"/{page}?token={token}&ask={footer_ask(settings, browser_key, 'urgent')}").get_data(
        as_text=True
    )
    if page == "donate":
        assert interval is not None
        resp = donate(browser, html, interval=interval)
    else:
        data = {"form_token": form_token(html), "plan": "monthly", "ask": hidden_ask(html) or ""}
        resp = browser.post("/subscribe", data=data)
    assert resp.status_code == 303
    csid = resp.headers["Location"].rsplit("/", 1)[1]
    thanks = stripe_api.pay(csid, "ana@example.org").removeprefix("https://paywall.example.org")
    assert browser.get(thanks).status_code in (200, 303)
    want = {"appeal_experiment": "footer-copy", "appeal_variant": "urgent", "appeal_channel": "footer"}
    with db.transaction(readonly=True) as session:
        rows = [
            *session.scalars(select(Payment)),
            *session.scalars(select(CheckoutSession)),
            *session.scalars(select(Subscription)),
        ]
        # A gift's payment is recorded at /thanks; a subscription's first payment comes with its
        # invoice's webhook (tests/webhooks/test_appeal_sync.py follows it there).
        kinds = {"once": ["Payment", "CheckoutSession"]}.get(
            interval or "", ["CheckoutSession", "Subscription"]
        )
        assert [type(row).__name__ for row in rows] == kinds
        for row in rows:
            assert {key: getattr(row, key) for key in APPEAL_KEYS} == want


def test_a_plain_list_of_presets_applies_only_in_the_default_currency(
    browser: FlaskClient, settings: Settings
) -> None:
    """Amounts belong to a currency: the urgent variant's [1500, 3000] are EUR (the default
    currency); in USD the reader gets USD's own presets and middle preset."""
    urgent = access_token(settings, subject_in(settings, "urgent"))
    html = browser.get(f"/donate?token={urgent}&currency=usd").get_data(as_text=True)
    assert presets(html) == [("500", False), ("1000", True), ("2500", False), ("5000", False)]


def test_presets_and_default_amount_per_currency(pages_settings: Callable[..., Settings]) -> None:
    variants = {
        "tabled": {"presets": {"eur": [700, 1400], "gbp": [300]}, "default_amount": {"gbp": 900}},
        "plain": {"presets": [1500], "default_amount": 3000},
    }
    experiments = {"x": {"start": "2026-12-01", "end": "2026-12-31", "variants": variants}}
    settings = pages_settings(appeal={"experiments": experiments})
    found = appeal_settings(settings).experiments["x"]
    tabled, plain = found.variant("tabled"), found.variant("plain")
    assert offered_amounts(settings, "eur", tabled) == ([700, 1400], 700)
    assert offered_amounts(settings, "gbp", tabled) == ([300, 900], 900)
    assert offered_amounts(settings, "usd", tabled) == ([500, 1000, 2500, 5000], 1000)  # none named: its own
    assert offered_amounts(settings, "eur", plain) == ([1500, 3000], 3000)
    assert offered_amounts(settings, "gbp", plain) == ([500, 1000, 2500, 5000], 1000)
    # The other default currency takes the plain list.
    usd_default = pages_settings(appeal={"experiments": experiments}, donations={"default_currency": "usd"})
    plain_usd = appeal_settings(usd_default).experiments["x"].variant("plain")
    assert offered_amounts(usd_default, "usd", plain_usd) == ([1500, 3000], 3000)
    assert offered_amounts(usd_default, "eur", plain_usd) == ([500, 1000, 2500, 5000], 1000)


@pytest.mark.parametrize(
    ("variant", "named"),
    [
        ({"presets": {"euro": [500]}}, "presets.euro"),
        ({"presets": {"eur": []}}, "presets.eur"),
        ({"presets": [0, 500]}, "presets"),
        ({"presets": [1, 2, 3, 4, 5, 6, 7]}, "presets"),
        ({"default_amount": {"eur": -1}}, "default_amount.eur"),
        ({"default_amount": "lots"}, "default_amount"),
    ],
)
def test_bad_presets_are_named(
    pages_settings: Callable[..., Settings], variant: dict[str, Any], named: str
) -> None:
    experiments = {"x": {"start": "2026-12-01", "end": "2026-12-31", "variants": {"v": variant}}}
    with pytest.raises(ConfigError, match=re.escape(f"variants.v.{named}")):
        appeal_settings(pages_settings(appeal={"experiments": experiments}))
