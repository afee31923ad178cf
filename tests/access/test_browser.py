"""POST /support/access: client mode. Anonymous browsers, reader tokens good and bad, origins, input."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from paywall import clock, signing
from paywall.access.anonymous import anonymous_key
from paywall.access.dismissals import dismiss_appeal
from paywall.config import Settings
from paywall.db import Database
from paywall.erasure import erase_reader
from paywall.models import MeterRead, Reader
from paywall.signin.tokens import issue_reader_token
from paywall.signing import generate_pem
from tests.support import access_rows as f

SITE = "https://news.example.org"
BROWSER = "Zb3xQ9-k_2LmNpRsTuVwXy"  # what the widget makes: 22 URL-safe characters


@pytest.fixture
def browser_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(server={"allowed_origins": [SITE]})


@pytest.fixture
def make_client(make_settings: Callable[..., Settings], db: Database) -> Callable[..., FlaskClient]:
    from paywall.app import create_app

    def make(**overrides: Any) -> FlaskClient:
        overrides.setdefault("server", {"allowed_origins": [SITE]})
        app = create_app(make_settings(**overrides), db=db)
        app.config["TESTING"] = True
        return app.test_client()

    return make


@pytest.fixture
def browser(make_client: Callable[..., FlaskClient]) -> FlaskClient:
    return make_client()


def ask(client: FlaskClient, body: dict[str, Any], origin: str | None = SITE) -> Any:
    return client.post("/support/access", json=body, headers={"Origin": origin} if origin else {})


def access(client: FlaskClient, article: str, **extra: Any) -> dict[str, Any]:
    resp = ask(client, {"anonymous_reader": BROWSER, "article": article, **extra})
    assert resp.status_code == 200, resp.get_json()
    body: dict[str, Any] = resp.get_json()
    return body


def claims(settings: Settings, token: str) -> dict[str, Any]:
    return signing.verify(settings, token, purpose="access")


def reader_token(db: Database, settings: Settings, external_id: str) -> str:
    with db.transaction() as s:
        row = s.scalar(select(Reader).where(Reader.external_id == external_id))
        assert row is not None
        token, _ = issue_reader_token(settings, row)
    return token


def subscriber(db: Database, external_id: str, *, registered: bool = True) -> None:
    with db.transaction() as s:
        row = f.reader(s, external_id)
        if registered:
            row.registered_at = clock.now()
        f.subscription(s, row, current_period_end=clock.now() + dt.timedelta(days=10))


def test_an_anonymous_browser_is_metered_under_its_own_key(
    browser: FlaskClient, browser_settings: Settings, db: Database
) -> None:
    answers = [access(browser, a) for a in ("a1", "a2", "a3", "a4", "a1")]
    assert [b["reason"] for b in answers] == ["metered", "metered", "metered", "meter_exhausted", "metered"]
    first = answers[0]
    assert first["reader"] is None and first["signed_in"] is False
    assert first["level"] == "metered" and first["register"] is True  # 5 free articles when registered
    assert first["meter"]["used"] == 1 and first["meter"]["limit"] == 3
    # Always a token: the widget uses it for the appeal and the dismissal.
    for body in answers:
        got = claims(browser_settings, body["token"])
        assert got["sub"] == anonymous_key(BROWSER) and got["anon"] is True and got["access"] is False
        assert got["lvl"] == "metered" and got["art"] == body["article"] and got["reason"] == body["reason"]
        assert body["token_expires_at"]
    with db.transaction() as s:
        readers = {r for (r,) in s.execute(select(MeterRead.reader))}
        assert readers == {anonymous_key(BROWSER)}
        assert s.scalar(select(func.count()).select_from(Reader)) == 0  # nothing created for a browser


def test_answers_are_private_and_readable_by_the_allowed_origin(browser: FlaskClient) -> None:
    resp = ask(browser, {"anonymous_reader": BROWSER, "article": "a1"})
    assert resp.headers["Access-Control-Allow-Origin"] == SITE
    assert resp.headers["Cache-Control"] == "private, no-store"
    preflight = browser.options(
        "/support/access",
        headers={"Origin": SITE, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.headers["Access-Control-Allow-Origin"] == SITE
    assert "Content-Type" in preflight.headers["Access-Control-Allow-Headers"]


def test_a_foreign_origin_is_refused(browser: FlaskClient, db: Database) -> None:
    resp = ask(browser, {"anonymous_reader": BROWSER, "article": "a1"}, origin="https://evil.example")
    assert resp.status_code == 403
    assert "Access-Control-Allow-Origin" not in resp.headers
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(MeterRead)) == 0


def test_naming_a_subscribers_id_as_the_browser_gets_nothing_of_theirs(
    browser: FlaskClient, browser_settings: Settings, db: Database
) -> None:
    victim = "subscriber-id-0123456789"  # a valid browser id too, and a reader with a subscription
    subscriber(db, victim)
    with db.transaction() as s:
        dismiss_appeal(s, browser_settings, victim)
    body = access(browser, "premium", level="supporters", anonymous_reader=victim)
    assert (body["allowed"], body["reason"], body["signed_in"], body["reader"]) == (
        False,
        "supporters_only",
        False,
        None,
    )
    # Not registered either, and not their dismissal: the appeal shows.
    assert access(browser, "members", level="registered", anonymous_reader=victim)["reason"] == (
        "registration_required"
    )
    metered = access(browser, "a1", anonymous_reader=victim)
    assert metered["reason"] == "metered" and metered["appeal"] is True
    assert claims(browser_settings, metered["token"])["sub"] == anonymous_key(victim)
    with db.transaction() as s:
        assert {r for (r,) in s.execute(select(MeterRead.reader))} == {anonymous_key(victim)}


def test_a_valid_reader_token_names_the_reader(
    browser: FlaskClient, browser_settings: Settings, db: Database
) -> None:
    subscriber(db, "ana")
    token = reader_token(db, browser_settings, "ana")
    body = access(browser, "premium", level="supporters", reader_token=token)
    assert (body["allowed"], body["reason"], body["signed_in"], body["reader"]) == (
        True,
        "subscription",
        True,
        "ana",
    )
    assert body["register"] is False and body["appeal"] is False
    got = claims(browser_settings, body["token"])
    assert got["sub"] == "ana" and got["access"] is True and "anon" not in got and got["art"] == "premium"


def test_a_registered_reader_passes_the_registration_wall_with_the_larger_allowance(
    browser: FlaskClient, browser_settings: Settings, db: Database
) -> None:
    with db.transaction() as s:
        f.reader(s, "reg").registered_at = clock.now()
    token = reader_token(db, browser_settings, "reg")
    wall = access(browser, "members", level="registered")
    assert (wall["allowed"], wall["reason"], wall["register"]) == (False, "registration_required", True)
    assert claims(browser_settings, wall["token"])["reg"] is True
    body = access(browser, "members", level="registered", reader_token=token)
    assert (body["allowed"], body["reason"], body["register"]) == (True, "metered", False)
    assert body["meter"]["limit"] == 5 and body["meter"]["used"] == 1
    with db.transaction() as s:
        # The read counts for the reader, on every device where they are signed in.
        assert s.scalar(select(MeterRead.reader).where(MeterRead.article == "members")) == "reg"


@pytest.mark.parametrize(
    "kind",
    ["expired", "forged", "other key", "access token", "garbage", "signed out", "erased", "unknown reader"],
)
def test_a_bad_reader_token_is_not_signed_in(
    kind: str,
    browser: FlaskClient,
    browser_settings: Settings,
    make_settings: Callable[..., Settings],
    db: Database,
) -> None:
    subscriber(db, "ana")
    good = reader_token(db, browser_settings, "ana")
    if kind == "expired":
        token, _ = signing.sign(
            browser_settings, {"sub": "ana", "sv": 0}, purpose="reader", ttl=dt.timedelta(hours=-1)
        )
    elif kind == "forged":
        head, payload, signature = good.split(".")
        token = f"{head}.{payload}.{signature[::-1]}"
    elif kind == "other key":
        other = make_settings(env={"PAYWALL_SIGNING_KEY": generate_pem()})
        token = reader_token(db, other, "ana")
    elif kind == "access token":
        token, _ = signing.sign(
            browser_settings, {"sub": "ana", "sv": 0}, purpose="access", ttl=dt.timedelta(hours=1)
        )
    elif kind == "garbage":
        token = "not-a-token"
    elif kind == "erased":
        with db.transaction() as s:
            assert erase_reader(s, "ana") == "erased"
        token = good
    elif kind == "unknown reader":
        token, _ = signing.sign(
            browser_settings, {"sub": "nobody", "sv": 0}, purpose="reader", ttl=dt.timedelta(hours=1)
        )
    else:  # signed out everywhere: the session version moved on
        with db.transaction() as s:
            row = s.scalar(select(Reader).where(Reader.external_id == "ana"))
            assert row is not None
            row.session_version += 1
        token = good
    body = access(browser, "premium", level="supporters", reader_token=token)
    assert (body["signed_in"], body["reader"], body["allowed"], body["reason"]) == (
        False,
        None,
        False,
        "supporters_only",
    )
    assert claims(browser_settings, body["token"])["anon"] is True


def test_a_null_reader_token_is_an_anonymous_browser(browser: FlaskClient) -> None:
    body = access(browser, "a1", reader_token=None)
    assert body["signed_in"] is False and body["reason"] == "metered"


def test_free_articles_spend_nothing(browser: FlaskClient, db: Database) -> None:
    body = access(browser, "a1", level="free")
    assert (body["allowed"], body["reason"], body["meter"]) == (True, "free", None)
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(MeterRead)) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"article": "a1"}, "anonymous_reader"),
        ({"anonymous_reader": "short", "article": "a1"}, "anonymous_reader"),
        ({"anonymous_reader": BROWSER + "/../x", "article": "a1"}, "anonymous_reader"),
        ({"anonymous_reader": 7, "article": "a1"}, "anonymous_reader"),
        ({"anonymous_reader": BROWSER}, "article"),
        ({"anonymous_reader": BROWSER, "article": " leading-space"}, "article"),
        ({"anonymous_reader": BROWSER, "article": "x" * 129}, "article"),
        ({"anonymous_reader": BROWSER, "article": "a1", "level": "premium"}, "level"),
        ({"anonymous_reader": BROWSER, "article": "a1", "reader_token": 12}, "reader_token"),
        ({"anonymous_reader": BROWSER, "article": "a1", "reader_token": "x" * 5000}, "reader_token"),
        ({"anonymous_reader": BROWSER, "article": "a1", "reader": "ana"}, "reader"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(browser: FlaskClient, body: dict[str, Any], field: str) -> None:
    resp = ask(browser, body)
    assert resp.status_code == 422, resp.get_json()
    assert resp.mimetype == "application/problem+json"
    assert field in resp.get_json()["errors"]


@pytest.mark.parametrize("data", ["[1, 2]", "not json", '"text"'])
def test_a_body_that_is_not_a_json_object_is_a_400(browser: FlaskClient, data: str) -> None:
    resp = browser.post(
        "/support/access", data=data, content_type="application/json", headers={"Origin": SITE}
    )
    assert resp.status_code == 400 and "body" in resp.get_json()["errors"]
    form = browser.post("/support/access", data={"anonymous_reader": BROWSER, "article": "a1"})
    assert form.status_code == 400 and "body" in form.get_json()["errors"]


def test_it_is_rate_limited_per_address(make_client: Callable[..., FlaskClient]) -> None:
    client = make_client(ratelimit={"widget_per_address": "3/minute"})
    codes = [ask(client, {"anonymous_reader": BROWSER, "article": f"a{i}"}).status_code for i in range(4)]
    assert codes == [200, 200, 200, 429]
