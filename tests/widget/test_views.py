"""The widget's routes: /support/widget.js|css, /support/appeal, /support/dismiss, and their CORS."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient

from paywall import clock
from paywall.access.dismissals import dismissed_until
from paywall.app import create_app
from paywall.config import Settings
from paywall.db import Database
from tests.checkout.test_pages import access_token
from tests.checkout.test_sessions import PLANS

SITE = "https://news.example.org"


@pytest.fixture
def widget_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(server={"allowed_origins": [SITE]}, plans=PLANS)


@pytest.fixture
def make_widget_client(make_settings: Callable[..., Settings], db: Database) -> Callable[..., FlaskClient]:
    def make(**overrides: Any) -> FlaskClient:
        overrides.setdefault("server", {"allowed_origins": [SITE]})
        # Plans with real prices, so the widget offers Subscribe (the shipped example plan is not offered).
        overrides.setdefault("plans", PLANS)
        app = create_app(make_settings(**overrides), db=db)
        app.config["TESTING"] = True
        return app.test_client()

    return make


@pytest.fixture
def widget(make_widget_client: Callable[..., FlaskClient]) -> FlaskClient:
    return make_widget_client()


def test_widget_files_are_cacheable_scripts_and_styles(widget: FlaskClient) -> None:
    js = widget.get("/support/widget.js")
    assert js.status_code == 200
    assert js.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert js.headers["Cache-Control"] == "public, max-age=3600"
    assert js.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    source = js.get_data(as_text=True)
    assert "document.currentScript" in source and "/support/appeal" in source and "/support/dismiss" in source
    assert "localStorage" in source and "innerHTML" not in source  # text only: no markup injection
    css = widget.get("/support/widget.css")
    assert css.headers["Content-Type"] == "text/css; charset=utf-8"
    assert ".pw-appeal" in css.get_data(as_text=True)


def test_appeal_for_a_token_that_asks(widget: FlaskClient, widget_settings: Settings) -> None:
    token = access_token(widget_settings, "reader-42")
    resp = widget.get(f"/support/appeal?token={token}", headers={"Origin": SITE})
    assert resp.status_code == 200
    assert resp.headers["Access-Control-Allow-Origin"] == SITE
    assert "Origin" in resp.headers["Vary"]
    assert resp.headers["Cache-Control"] == "private, no-store"
    body = resp.get_json()
    assert body["show"] is True
    assert body["headline"] == "Help keep us open"
    assert "support us with your donations or subscriptions" in body["text"]
    assert (body["subscribe_label"], body["donate_label"], body["close_label"]) == (
        "Subscribe",
        "Donate",
        "Close",
    )
    assert body["dismiss_days"] == 7
    for key, path in (("donate_url", "/donate"), ("subscribe_url", "/subscribe")):
        url = urlsplit(body[key])
        assert f"{url.scheme}://{url.netloc}{url.path}" == f"https://paywall.example.org{path}"
        assert parse_qs(url.query) == {"token": [token], "ask": [body["ask"]]}
    # No experiment runs: the plain copy, still measured.
    assert (body["experiment"], body["variant"]) == ("", "")


def test_no_appeal_when_the_claim_is_false_or_the_token_is_bad(
    widget: FlaskClient, widget_settings: Settings
) -> None:
    quiet = access_token(widget_settings, "reader-42", appeal=False)
    assert widget.get(f"/support/appeal?token={quiet}").get_json() == {"show": False, "dismiss_days": 7}
    for bad in ("", "nonsense", access_token(widget_settings, "reader-42", ttl=-120)):
        resp = widget.get(f"/support/appeal?token={bad}", headers={"Origin": SITE})
        assert resp.status_code == 401
        assert resp.mimetype == "application/problem+json"
        assert resp.headers["Access-Control-Allow-Origin"] == SITE  # so the widget can read the refusal


def test_cors_only_for_configured_origins(widget: FlaskClient, widget_settings: Settings) -> None:
    token = access_token(widget_settings, "reader-42")
    other = widget.get(f"/support/appeal?token={token}", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight = widget.options(
        "/support/dismiss",
        headers={
            "Origin": SITE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == SITE
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert preflight.headers["Access-Control-Allow-Headers"] == "Content-Type"
    denied = widget.options(
        "/support/dismiss",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "Access-Control-Allow-Origin" not in denied.headers
    # Nothing outside /support/ speaks CORS.
    assert "Access-Control-Allow-Origin" not in widget.get("/donate", headers={"Origin": SITE}).headers


def test_dismiss_hides_the_appeal_on_the_server(
    widget: FlaskClient, widget_settings: Settings, db: Database
) -> None:
    token = access_token(widget_settings, "reader-42")
    resp = widget.post("/support/dismiss", json={"token": token}, headers={"Origin": SITE})
    assert resp.status_code == 200
    assert resp.headers["Access-Control-Allow-Origin"] == SITE
    assert resp.get_json()["status"] == "dismissed" and resp.get_json()["dismiss_days"] == 7
    with db.transaction(readonly=True) as session:
        until = dismissed_until(session, widget_settings, "reader-42")
    assert until is not None and until - clock.now() > dt.timedelta(days=6, hours=23)
    assert resp.get_json()["hidden_until"] == int(until.timestamp() * 1000)
    # The same (still valid) token no longer shows the appeal, and says until when.
    appeal = widget.get(f"/support/appeal?token={token}").get_json()
    assert appeal["show"] is False and appeal["hidden_until"] == resp.get_json()["hidden_until"]
    again = widget.post("/support/dismiss", json={"token": token})
    assert again.get_json()["status"] == "extended"
    # Another reader still sees it.
    assert (
        widget.get(f"/support/appeal?token={access_token(widget_settings, 'reader-43')}").get_json()["show"]
        is True
    )


def test_dismiss_after_the_days_have_passed_shows_again(
    widget: FlaskClient, widget_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = access_token(widget_settings, "reader-42", ttl=30 * 86400)
    widget.post("/support/dismiss", json={"token": token})
    later = clock.now() + dt.timedelta(days=7, minutes=1)
    monkeypatch.setattr(clock, "now", lambda: later)
    assert widget.get(f"/support/appeal?token={token}").get_json()["show"] is True


def test_dismiss_refusals(widget: FlaskClient, widget_settings: Settings, db: Database) -> None:
    token = access_token(widget_settings, "reader-42")
    assert widget.post("/support/dismiss", json={}).status_code == 401
    assert widget.post("/support/dismiss", json={"token": "forged"}).status_code == 401
    # A plain form post from a page the operator did not allow is refused before anything is written.
    foreign = widget.post(
        "/support/dismiss", data={"token": token}, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403
    with db.transaction(readonly=True) as session:
        assert dismissed_until(session, widget_settings, "reader-42") is None
    # A form post (no preflight) from an allowed origin works too.
    assert (
        widget.post("/support/dismiss", data={"token": token}, headers={"Origin": SITE}).get_json()["status"]
        == "dismissed"
    )


def test_widget_routes_are_rate_limited(
    make_widget_client: Callable[..., FlaskClient], widget_settings: Settings
) -> None:
    widget = make_widget_client(ratelimit={"widget_per_address": "3/minute"})
    token = access_token(widget_settings, "reader-42")
    codes = [widget.get(f"/support/appeal?token={token}").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    # widget.js itself is a static file served to every page view: never limited.
    assert all(widget.get("/support/widget.js").status_code == 200 for _ in range(5))


def test_the_appeal_copy_comes_from_configuration(
    make_widget_client: Callable[..., FlaskClient], widget_settings: Settings
) -> None:
    widget = make_widget_client(appeal={"headline": "Keep us independent", "donate_label": "Give"})
    body = widget.get(f"/support/appeal?token={access_token(widget_settings, 'r1')}").get_json()
    assert body["headline"] == "Keep us independent" and body["donate_label"] == "Give"


def test_the_answer_names_the_beacon_intake_when_one_is_set(
    make_widget_client: Callable[..., FlaskClient], widget_settings: Settings
) -> None:
    token = access_token(widget_settings, "reader-42")
    plain = make_widget_client().get(f"/support/appeal?token={token}").get_json()
    assert "events_url" not in plain  # the widget posts to its own origin
    intake = make_widget_client(
        server={"allowed_origins": [SITE], "events_url": "https://events.paywall.example.org"}
    )
    body = intake.get(f"/support/appeal?token={token}").get_json()
    assert body["events_url"] == "https://events.paywall.example.org"
    assert body["show"] is True
    quiet = access_token(widget_settings, "reader-42", appeal=False)
    assert intake.get(f"/support/appeal?token={quiet}").get_json()["events_url"] == (
        "https://events.paywall.example.org"
    )
