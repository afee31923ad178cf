"""The widget's server side for the gate: /support/appeal for anonymous browsers and denials, the
meter line, return_to in the links, Close never hiding the gate, the static files' ETag, and the
server-mode hand-off (POST /support/handoff)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from paywall import clock, signing
from paywall.access.anonymous import anonymous_key
from paywall.access.dismissals import dismissed_until
from paywall.app import create_app
from paywall.config import Settings
from paywall.context import settings_of
from paywall.db import Database
from paywall.models import Reader
from paywall.signin import codes
from paywall.signin.tokens import issue_reader_token
from tests.checkout.test_sessions import PLANS
from tests.support.mail import add_reader

SITE = "https://news.example.org"
ARTICLE = f"{SITE}/2026/11/library"
BROWSER = "AbCdEfGhIjKlMnOpQrStUv"
METER = {"used": 3, "limit": 3, "resets_at": "2026-12-01T00:00:00Z"}


@pytest.fixture
def make_client(make_settings: Callable[..., Settings], db: Database) -> Callable[..., FlaskClient]:
    def make(**overrides: Any) -> FlaskClient:
        overrides.setdefault("server", {"allowed_origins": [SITE]})
        overrides.setdefault("plans", PLANS)
        app = create_app(make_settings(**overrides), db=db)
        app.config["TESTING"] = True
        client = app.test_client()
        return client

    return make


@pytest.fixture
def client(make_client: Callable[..., FlaskClient]) -> FlaskClient:
    return make_client()


def token(client: FlaskClient, sub: str, **claims: Any) -> str:
    body: dict[str, Any] = {
        "sub": sub,
        "access": False,
        "reason": "metered",
        "until": None,
        "appeal": True,
        "meter": None,
    }
    body.update(claims)
    if sub.startswith(" anon:"):
        body["anon"] = True
    signed, _ = signing.sign(
        settings_of(client.application), body, purpose="access", ttl=dt.timedelta(minutes=15)
    )
    return signed


def appeal(client: FlaskClient, tok: str, return_to: str | None = ARTICLE) -> dict[str, Any]:
    query: dict[str, str] = {"token": tok}
    if return_to is not None:
        query["return_to"] = return_to
    resp = client.get("/support/appeal", query_string=query, headers={"Origin": SITE})
    assert resp.status_code == 200, resp.get_json()
    assert resp.headers["Access-Control-Allow-Origin"] == SITE
    body: dict[str, Any] = resp.get_json()
    return body


def test_an_anonymous_browser_gets_the_appeal_with_its_meter(client: FlaskClient) -> None:
    anon = token(client, anonymous_key(BROWSER), meter={**METER, "used": 1})
    body = appeal(client, anon)
    assert body["show"] is True and "gate" not in body
    assert body["meter_text"] == "2 of 3 free articles left this month"
    for key, path in (("donate_url", "/donate"), ("subscribe_url", "/subscribe")):
        url = urlsplit(body[key])
        assert url.path == path
        # The token, never the anonymous key, the page to come back to, and the footer's ask.
        assert parse_qs(url.query) == {"token": [anon], "return_to": [ARTICLE], "ask": [body["ask"]]}


def test_the_meter_line_can_be_turned_off(make_client: Callable[..., FlaskClient]) -> None:
    client = make_client(gate={"show_meter": False})
    body = appeal(client, token(client, "reader-1", meter={**METER, "used": 1}))
    assert body["show"] is True and "meter_text" not in body


@pytest.mark.parametrize(
    ("claims", "headline", "register"),
    [
        (
            {"reason": "meter_exhausted", "meter": METER},
            "You have read your 3 free articles this month",
            False,
        ),
        (
            {"reason": "meter_exhausted", "meter": METER, "reg": True},
            "Sign up free to read 2 more articles this month",
            True,
        ),
        ({"reason": "supporters_only", "lvl": "supporters"}, "This article is for supporters", False),
        # Signing up gives more metered articles, but never opens a supporters-only one.
        (
            {"reason": "supporters_only", "lvl": "supporters", "reg": True},
            "This article is for supporters",
            False,
        ),
        (
            {"reason": "registration_required", "lvl": "registered", "reg": True},
            "Sign up free to read this article",
            True,
        ),
    ],
)
def test_a_denial_answers_the_gate_with_the_headline_that_fits(
    client: FlaskClient, claims: dict[str, Any], headline: str, register: bool
) -> None:
    body = appeal(client, token(client, anonymous_key(BROWSER), art="story-4", **claims))
    gate = body["gate"]
    assert gate["headline"] == headline
    assert gate["register"] is register and gate["signin"] is True
    assert gate["reason"] == claims["reason"]
    assert gate["preview_paragraphs"] == 2
    assert (gate["subscribe_label"], gate["donate_label"], gate["signin_label"], gate["register_label"]) == (
        "Subscribe",
        "Donate",
        "Already a supporter? Sign in",
        "Sign up free",
    )
    assert parse_qs(urlsplit(gate["subscribe_url"]).query)["return_to"] == [ARTICLE]
    assert "close_label" not in gate  # never dismissable
    assert "meter_text" not in body  # the meter line is for readers who still have articles


def test_closing_the_appeal_never_hides_the_gate(client: FlaskClient, db: Database) -> None:
    key = anonymous_key(BROWSER)
    reading = token(client, key, meter={**METER, "used": 2})
    resp = client.post("/support/dismiss", json={"token": reading}, headers={"Origin": SITE})
    assert resp.status_code == 200 and resp.get_json()["status"] == "dismissed"
    with db.transaction(readonly=True) as session:
        # Keyed by the anonymous key: the browser's dismissal, which sign-in later moves to the reader.
        assert dismissed_until(session, settings_of(client.application), key) is not None
    assert appeal(client, reading)["show"] is False
    gated = appeal(client, token(client, key, reason="meter_exhausted", meter=METER, art="story-4"))
    assert gated["show"] is False and "hidden_until" in gated
    assert gated["gate"]["headline"] == "You have read your 3 free articles this month"


def test_a_token_made_without_an_article_never_gates(client: FlaskClient) -> None:
    """POST /v1/access/token after the last free article: the page was rendered in full."""
    body = appeal(client, token(client, "reader-1", reason="meter_exhausted", meter=METER))
    assert "gate" not in body and body["show"] is True
    assert body["meter_text"] == "0 of 3 free articles left this month"


def test_a_return_to_we_may_not_send_readers_to_is_dropped(client: FlaskClient) -> None:
    tok = token(client, "reader-1", reason="meter_exhausted", meter=METER, art="story-4")
    for bad in ("https://evil.example/phish", "javascript:alert(1)", "//evil.example/x"):
        body = appeal(client, tok, return_to=bad)
        gate = body["gate"]
        assert parse_qs(urlsplit(gate["donate_url"]).query) == {"token": [tok], "ask": [gate["ask"]]}
    # Our own pages are fine too.
    ours = appeal(client, tok, return_to="https://paywall.example.org/account")
    assert parse_qs(urlsplit(ours["donate_url"]).query)["return_to"] == [
        "https://paywall.example.org/account"
    ]


def test_a_token_naming_nobody_is_refused(client: FlaskClient) -> None:
    for sub in (" anon:short", " anon:" + "x" * 65, " other", ""):
        resp = client.get("/support/appeal", query_string={"token": token(client, sub)})
        assert resp.status_code == 401 and resp.get_json()["errors"] == {"token": ["Missing or not valid."]}
        assert client.post("/support/dismiss", json={"token": token(client, sub)}).status_code == 401


def test_static_files_answer_304_to_their_etag(client: FlaskClient) -> None:
    first = client.get("/support/widget.js")
    etag = first.headers["ETag"]
    again = client.get("/support/widget.js", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.get_data() == b""
    assert again.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    source = first.get_data(as_text=True)
    for needle in ("data-paywall-body", "paywall:browser", "paywall:reader-token", "#paywall_signin"[1:]):
        assert needle in source
    assert "document.cookie" not in source and "innerHTML" not in source
    assert client.get("/support/nothing.js").status_code == 404


def _reader_token(db: Database, settings: Settings, external_id: str) -> str:
    add_reader(db, external_id)
    with db.transaction() as session:
        row = session.scalars(select(Reader).where(Reader.external_id == external_id)).one()
        return issue_reader_token(settings, row)[0]


def test_handoff_without_a_return_url_has_nowhere_to_go(client: FlaskClient, db: Database) -> None:
    reader_token = _reader_token(db, settings_of(client.application), "reader-7")
    resp = client.post("/support/handoff", json={"reader_token": reader_token}, headers={"Origin": SITE})
    assert resp.status_code == 200 and resp.get_json() == {"url": None}


def test_handoff_gives_the_site_a_one_time_token(
    make_client: Callable[..., FlaskClient], db: Database
) -> None:
    client = make_client(signin={"return_url": f"{SITE}/paywall/return?from=widget"})
    settings = settings_of(client.application)
    reader_token = _reader_token(db, settings, "reader-8")
    resp = client.post(
        "/support/handoff",
        json={"reader_token": reader_token, "return_to": ARTICLE},
        headers={"Origin": SITE},
    )
    assert resp.status_code == 200
    url = urlsplit(resp.get_json()["url"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{SITE}/paywall/return"
    query = parse_qs(url.query)
    assert query["from"] == ["widget"] and query["return_to"] == [ARTICLE]
    assert reader_token not in resp.get_json()["url"]  # never a reader token in a URL
    with db.transaction() as session:
        row = codes.check_token(session, query["paywall_signin"][0], now=clock.now(), purposes=("return",))
        reader = session.get(Reader, row.reader_id)
        assert reader is not None and reader.external_id == "reader-8"
    # A foreign return_to is left out, a bad reader token is a 401, a foreign page a 403.
    foreign = client.post(
        "/support/handoff", json={"reader_token": reader_token, "return_to": "https://evil.example"}
    )
    assert "return_to" not in parse_qs(urlsplit(foreign.get_json()["url"]).query)
    bad = client.post("/support/handoff", json={"reader_token": "nope"})
    assert bad.status_code == 401 and bad.get_json()["errors"] == {"reader_token": ["Missing or not valid."]}
    assert (
        client.post(
            "/support/handoff",
            json={"reader_token": reader_token},
            headers={"Origin": "https://evil.example"},
        ).status_code
        == 403
    )
