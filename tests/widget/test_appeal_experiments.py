"""GET /support/appeal with experiments: the variant's copy, the asks, holdback, hidden paths, preview."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient

from paywall import clock, signing
from paywall.access.anonymous import anonymous_key
from paywall.access.dismissals import dismiss_appeal
from paywall.app import create_app
from paywall.config import Settings
from paywall.context import settings_of
from paywall.db import Database
from paywall.experiments.asks import decode_ask
from paywall.experiments.assignment import assign
from paywall.experiments.preview import sign_preview
from paywall.widget.settings import appeal_settings
from tests.checkout.test_sessions import PLANS

SITE = "https://news.example.org"
BROWSER = "AbCdEfGhIjKlMnOpQrStUv"
# Running now, whatever day the tests run on.
FOOTER = {
    "holdback": 0.2,
    "start": "2021-01-01",
    "end": "2099-12-31",
    "channels": ["footer"],
    "variants": {
        "plain": {"headline": "Help keep us open"},
        "urgent": {"headline": "We are in survival mode", "donate_label": "Donate now"},
    },
}
GATE = {
    "holdback": 0.3,
    "start": "2020-01-01",
    "end": "2099-12-31",
    "channels": ["gate"],
    "variants": {"warm": {"headline": "Read on with us", "text": "Members keep this open."}},
}
ENDED = {
    "start": "2020-01-01",
    "end": "2020-12-31",
    "channels": ["footer"],
    "variants": {"old": {"headline": "An old headline", "subscribe_label": "Join"}},
}


@pytest.fixture
def client(make_settings: Callable[..., Settings], db: Database) -> FlaskClient:
    settings = make_settings(
        server={"allowed_origins": [SITE]},
        plans=PLANS,
        appeal={"experiments": {"footer-copy": FOOTER, "gate-copy": GATE, "last-year": ENDED}},
    )
    app = create_app(settings, db=db)
    app.config["TESTING"] = True
    return app.test_client()


def _settings(client: FlaskClient) -> Settings:
    return settings_of(client.application)


def subject_in(client: FlaskClient, experiment: str, arm: str) -> str:
    found = appeal_settings(_settings(client)).experiments[experiment]
    return next(s for s in (f"reader-{i}" for i in range(1000)) if assign(found, s).variant == arm)


def token(client: FlaskClient, sub: str, **claims: Any) -> str:
    body: dict[str, Any] = {"sub": sub, "access": False, "reason": "metered", "until": None, "appeal": True}
    body.update(claims)
    signed, _ = signing.sign(_settings(client), body, purpose="access", ttl=dt.timedelta(minutes=15))
    return signed


def appeal(client: FlaskClient, tok: str, **query: str) -> dict[str, Any]:
    resp = client.get("/support/appeal", query_string={"token": tok, **query}, headers={"Origin": SITE})
    assert resp.status_code == 200, resp.get_json()
    body: dict[str, Any] = resp.get_json()
    return body


def ask_of(client: FlaskClient, text: str) -> Any:
    return decode_ask(_settings(client), text, clock.now())


def test_a_variant_shows_its_copy_and_an_ask(client: FlaskClient) -> None:
    reader = subject_in(client, "footer-copy", "urgent")
    body = appeal(client, token(client, reader, appeal_experiment="footer-copy", appeal_variant="urgent"))
    assert body["show"] is True
    assert (body["headline"], body["donate_label"]) == ("We are in survival mode", "Donate now")
    assert body["subscribe_label"] == "Subscribe"  # not in the variant: [appeal]'s
    assert "support us" in body["text"]
    assert (body["experiment"], body["variant"]) == ("footer-copy", "urgent")
    ask = ask_of(client, body["ask"])
    assert (ask.channel, ask.experiment, ask.variant, ask.subject, ask.preview) == (
        "footer",
        "footer-copy",
        "urgent",
        reader,
        False,
    )
    for key in ("donate_url", "subscribe_url"):
        assert parse_qs(urlsplit(body[key]).query)["ask"] == [body["ask"]]
    assert "preview" not in body and "goal_text" not in body


def test_holdback_gets_an_ask_and_nothing_to_show(client: FlaskClient) -> None:
    reader = subject_in(client, "footer-copy", "holdback")
    tok = token(client, reader, appeal=False, appeal_experiment="footer-copy", appeal_variant="holdback")
    body = appeal(client, tok)
    assert body["show"] is False and "headline" not in body and "donate_url" not in body
    assert (body["experiment"], body["variant"]) == ("footer-copy", "holdback")
    assert ask_of(client, body["ask"]).variant == "holdback"


@pytest.mark.parametrize(
    "claims",
    [
        {"appeal": False},  # a supporter, the ask budget, min_articles
        {"appeal": False, "appeal_experiment": "footer-copy", "appeal_variant": "urgent"},
    ],
)
def test_a_hidden_appeal_has_no_ask(client: FlaskClient, claims: dict[str, Any]) -> None:
    body = appeal(client, token(client, "reader-1", **claims))
    assert body["show"] is False
    assert not {"ask", "experiment", "variant", "headline"} & set(body)


def test_dismissed_has_no_ask(client: FlaskClient, db: Database) -> None:
    reader = subject_in(client, "footer-copy", "urgent")
    with db.transaction() as s:
        dismiss_appeal(s, _settings(client), reader)
    body = appeal(client, token(client, reader, appeal_experiment="footer-copy", appeal_variant="urgent"))
    assert body["show"] is False and "hidden_until" in body and "ask" not in body


def test_no_experiment_plain_copy_still_measured(client: FlaskClient) -> None:
    body = appeal(client, token(client, anonymous_key(BROWSER)))
    assert body["show"] is True and body["headline"] == "Help keep us open"
    assert (body["experiment"], body["variant"]) == ("", "")
    ask = ask_of(client, body["ask"])
    assert (ask.channel, ask.experiment, ask.subject) == ("footer", "", anonymous_key(BROWSER))


def test_an_arm_no_longer_configured_falls_back_to_the_plain_copy(client: FlaskClient) -> None:
    body = appeal(client, token(client, "reader-1", appeal_experiment="gone", appeal_variant="x"))
    assert body["show"] is True and (body["experiment"], body["variant"]) == ("", "")


def test_gate_variant_copy_and_its_own_ask(client: FlaskClient) -> None:
    reader = subject_in(client, "gate-copy", "warm")
    body = appeal(client, token(client, reader, reason="meter_exhausted", art="story-1", appeal=False))
    gate = body["gate"]
    assert (gate["headline"], gate["text"]) == ("Read on with us", "Members keep this open.")
    assert (gate["experiment"], gate["variant"]) == ("gate-copy", "warm")
    ask = ask_of(client, gate["ask"])
    assert (ask.channel, ask.variant, ask.subject) == ("gate", "warm", reader)
    assert parse_qs(urlsplit(gate["donate_url"]).query)["ask"] == [gate["ask"]]
    assert parse_qs(urlsplit(gate["subscribe_url"]).query)["ask"] == [gate["ask"]]
    assert "ask" not in body  # the footer is hidden (appeal false)


def test_gate_holdback_sees_the_plain_gate(client: FlaskClient) -> None:
    reader = subject_in(client, "gate-copy", "holdback")
    body = appeal(client, token(client, reader, reason="meter_exhausted", art="story-1", appeal=False))
    gate = body["gate"]
    assert gate["headline"] == "You have read your 3 free articles this month"
    assert (gate["experiment"], gate["variant"]) == ("gate-copy", "holdback")
    assert ask_of(client, gate["ask"]).variant == "holdback"


def test_preview_shows_the_variant_whatever_the_arm_and_dates(client: FlaskClient) -> None:
    settings = _settings(client)
    preview = sign_preview(settings, "last-year", "old")  # ended
    # A reader who would see no appeal at all (the footer's holdback, appeal false).
    reader = subject_in(client, "footer-copy", "holdback")
    tok = token(client, reader, appeal=False, appeal_experiment="footer-copy", appeal_variant="holdback")
    body = appeal(client, tok, preview=preview)
    assert body["preview"] is True and body["show"] is True
    assert (body["headline"], body["subscribe_label"]) == ("An old headline", "Join")
    assert (body["experiment"], body["variant"]) == ("last-year", "old")
    assert ask_of(client, body["ask"]).preview is True
    assert parse_qs(urlsplit(body["donate_url"]).query)["ask"] == [body["ask"]]


def test_gate_preview_shows_the_gate_on_any_page(client: FlaskClient) -> None:
    preview = sign_preview(_settings(client), "gate-copy", "warm", "gate")
    body = appeal(client, token(client, "reader-1"), preview=preview)
    assert body["preview"] is True and body["show"] is False and "ask" not in body
    gate = body["gate"]
    assert gate["headline"] == "Read on with us" and ask_of(client, gate["ask"]).preview is True


def test_a_bad_preview_is_a_422_naming_it(client: FlaskClient) -> None:
    tok = token(client, "reader-1")
    for bad in ("nonsense", token(client, "reader-1")):  # garbage; a token made for another purpose
        resp = client.get("/support/appeal", query_string={"token": tok, "preview": bad})
        assert resp.status_code == 422 and "preview" in resp.get_json()["errors"]


def test_preview_page_loads_the_widget_only_with_a_preview_token(client: FlaskClient) -> None:
    """Without ``#paywall_preview=`` in the hash the page must not run the widget for real (a meter
    read, events): it carries a loader that checks the hash, never the widget's script itself."""
    resp = client.get("/support/preview")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    html = resp.get_data(as_text=True)
    assert 'src="https://paywall.example.org/support/preview.js"' in html
    assert 'data-widget="https://paywall.example.org/support/widget.js"' in html
    assert '<script src="https://paywall.example.org/support/widget.js"' not in html
    assert 'id="paywall-preview-missing" hidden' in html
    assert "data-paywall-body" in html and resp.headers["Cache-Control"] == "private, no-store"
    loader = client.get("/support/preview.js")
    assert loader.status_code == 200
    code = loader.get_data(as_text=True)
    # It loads the widget only after finding the preview token in the hash.
    assert code.index("paywall_preview=") < code.index('createElement("script")')
    assert "return;" in code[code.index("paywall_preview=") : code.index('createElement("script")')]
