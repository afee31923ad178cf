"""The sign-in routes: /v1 (site), /support (widget), the /signin page, limits and no enumeration."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from paywall import signing
from paywall.app import create_app
from paywall.config import Settings
from paywall.db import Database
from paywall.models import OutboxMessage, Reader
from paywall.signin.sealing import unseal

SITE = "https://news.example.org"
BROWSER = "w" * 22


@pytest.fixture
def make_client(make_settings: Callable[..., Settings], db: Database) -> Callable[..., FlaskClient]:
    def make(**overrides: Any) -> FlaskClient:
        overrides.setdefault("server", {"allowed_origins": [SITE]})
        app = create_app(make_settings(**overrides), db=db)
        app.config["TESTING"] = True
        return app.test_client()

    return make


@pytest.fixture
def api(make_client: Callable[..., FlaskClient]) -> FlaskClient:
    return make_client()


def mailed(db: Database, settings: Settings, to: str) -> dict[str, Any]:
    """The code and link of the newest sign-in mail to ``to``."""
    with db.transaction(readonly=True) as s:
        msg = s.scalars(
            select(OutboxMessage).where(OutboxMessage.to_email == to).order_by(OutboxMessage.id.desc())
        ).first()
        assert msg is not None
        secret = unseal(settings, msg.kind, to, msg.data["sealed"])
    assert secret is not None
    return secret


def settings_of(client: FlaskClient) -> Settings:
    from paywall.context import settings_of as of

    return of(client.application)


def test_site_sign_in_by_code(api: FlaskClient, db: Database, site_key: dict[str, str]) -> None:
    resp = api.post(
        "/v1/signin", json={"email": "Ana@Example.org", "return_url": f"{SITE}/a/1"}, headers=site_key
    )
    assert resp.status_code == 202 and resp.get_json() == {"outcome": "sent"}
    assert resp.headers["Cache-Control"] == "private, no-store"
    secret = mailed(db, settings_of(api), "ana@example.org")
    assert secret["link"].startswith(f"{SITE}/a/1#paywall_signin=")
    resp = api.post(
        "/v1/signin/exchange",
        json={"email": "ana@example.org", "code": secret["code"], "anonymous_reader": BROWSER},
        headers=site_key,
    )
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert set(body) == {"reader", "reader_token", "access_token", "expires_at"}
    assert signing.verify(settings_of(api), body["reader_token"], purpose="reader")["sub"] == body["reader"]
    assert signing.verify(settings_of(api), body["access_token"], purpose="access")["sub"] == body["reader"]


def test_site_routes_need_a_site_key(api: FlaskClient, finance_key: dict[str, str]) -> None:
    for path in ("/v1/signin", "/v1/signin/exchange", "/v1/signout"):
        assert api.post(path, json={}).status_code == 401
        assert api.post(path, json={}, headers=finance_key).status_code == 403


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not an address"}, "email"),
        ({}, "email"),
        ({"email": "ana@example.org", "extra": 1}, "extra"),
        ({"email": "ana@example.org", "return_url": "https://evil.example.com/"}, "return_url"),
        ({"email": "ana@example.org", "return_url": "javascript:alert(1)"}, "return_url"),
    ],
)
def test_bad_sign_in_requests_name_the_field(
    api: FlaskClient, site_key: dict[str, str], body: dict[str, Any], field: str
) -> None:
    resp = api.post("/v1/signin", json=body, headers=site_key)
    assert resp.status_code in (400, 422) and field in resp.get_json()["errors"], resp.get_json()
    if field == "return_url":
        assert resp.status_code == 400


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "ana@example.org"}, "code"),
        ({"code": "123456"}, "email"),
        ({"email": "ana@example.org", "code": "12345"}, "code"),
        ({"token": "t", "code": "123456", "email": "ana@example.org"}, "token"),
        ({"token": "t", "anonymous_reader": "short"}, "anonymous_reader"),
        ({"token": "x" * 201}, "token"),
    ],
)
def test_bad_exchanges_name_the_field(
    api: FlaskClient, site_key: dict[str, str], body: dict[str, Any], field: str
) -> None:
    resp = api.post("/v1/signin/exchange", json=body, headers=site_key)
    assert resp.status_code == 422 and field in resp.get_json()["errors"], resp.get_json()


def test_wrong_codes_are_counted_before_the_answer_and_lock(
    api: FlaskClient, db: Database, site_key: dict[str, str]
) -> None:
    api.post("/v1/signin", json={"email": "ana@example.org"}, headers=site_key)
    code = mailed(db, settings_of(api), "ana@example.org")["code"]
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        resp = api.post(
            "/v1/signin/exchange", json={"email": "ana@example.org", "code": wrong}, headers=site_key
        )
        assert resp.status_code == 400 and list(resp.get_json()["errors"]) == ["code"]
        assert resp.get_json()["reason"] == "wrong"
    resp = api.post("/v1/signin/exchange", json={"email": "ana@example.org", "code": code}, headers=site_key)
    assert resp.status_code == 400 and resp.get_json()["reason"] == "locked"
    api.post("/v1/signin", json={"email": "ana@example.org"}, headers=site_key)
    code = mailed(db, settings_of(api), "ana@example.org")["code"]
    resp = api.post("/v1/signin/exchange", json={"email": "ana@example.org", "code": code}, headers=site_key)
    assert resp.status_code == 200
    again = api.post("/v1/signin/exchange", json={"email": "ana@example.org", "code": code}, headers=site_key)
    assert again.status_code == 400 and again.get_json()["reason"] == "used"


def test_the_widget_signs_in_from_an_allowed_origin_only(api: FlaskClient, db: Database) -> None:
    foreign = api.post(
        "/support/signin", json={"email": "ana@example.org"}, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403
    resp = api.post("/support/signin", json={"email": "ana@example.org"}, headers={"Origin": SITE})
    assert resp.status_code == 202 and resp.headers["Access-Control-Allow-Origin"] == SITE
    token = mailed(db, settings_of(api), "ana@example.org")["link"].rsplit("paywall_signin=", 1)[1]
    resp = api.post(
        "/support/signin/exchange",
        json={"token": token, "anonymous_reader": BROWSER},
        headers={"Origin": SITE},
    )
    assert resp.status_code == 200 and resp.headers["Access-Control-Allow-Origin"] == SITE
    reader_token = resp.get_json()["reader_token"]
    out = api.post(
        "/support/signout", json={"reader_token": reader_token, "everywhere": True}, headers={"Origin": SITE}
    )
    assert out.get_json() == {"outcome": "signed_out_everywhere"}
    again = api.post("/support/signout", json={"reader_token": reader_token}, headers={"Origin": SITE})
    assert again.get_json() == {"outcome": "not_signed_in"}


def test_sign_out_everywhere_through_the_site(
    api: FlaskClient, db: Database, site_key: dict[str, str]
) -> None:
    tokens = []
    for _ in range(2):
        api.post("/v1/signin", json={"email": "ana@example.org"}, headers=site_key)
        code = mailed(db, settings_of(api), "ana@example.org")["code"]
        body = api.post(
            "/v1/signin/exchange", json={"email": "ana@example.org", "code": code}, headers=site_key
        ).get_json()
        tokens.append(body["reader_token"])
    one = api.post("/v1/signout", json={"reader_token": tokens[0]}, headers=site_key)
    assert one.get_json() == {"outcome": "signed_out"}
    assert api.post(
        "/v1/signout", json={"reader_token": tokens[0], "everywhere": True}, headers=site_key
    ).get_json() == {"outcome": "signed_out_everywhere"}
    assert api.post("/v1/signout", json={"reader_token": tokens[1]}, headers=site_key).get_json() == {
        "outcome": "not_signed_in"
    }
    with db.transaction(readonly=True) as s:
        assert s.scalars(select(Reader.session_version)).one() == 1


# -- limits -----------------------------------------------------------------------------------


def test_per_email_limit_counts_only_after_the_key_check(
    make_client: Callable[..., FlaskClient], site_key: dict[str, str]
) -> None:
    api = make_client(
        signin={"per_email": "3/minute"}, ratelimit={"auth_failures_per_address": "1000/minute"}
    )
    bad = {"Authorization": "Bearer pw_0123456789abcdef_nope"}
    for _ in range(5):
        assert api.post("/v1/signin", json={"email": "ana@example.org"}, headers=bad).status_code == 401
        assert api.post("/v1/signin", json={"email": "ana@example.org"}).status_code == 401
    for _ in range(3):
        assert api.post("/v1/signin", json={"email": "ANA@example.org "}, headers=site_key).status_code == 202
    limited = api.post("/v1/signin", json={"email": "ana@example.org"}, headers=site_key)
    assert limited.status_code == 429 and "Retry-After" in limited.headers
    # Another address is its own bucket; the site's one server address is not limited.
    assert api.post("/v1/signin", json={"email": "bo@example.org"}, headers=site_key).status_code == 202


def test_widget_limits_per_address_and_per_email(make_client: Callable[..., FlaskClient]) -> None:
    api = make_client(signin={"per_address": "4/minute", "per_email": "2/minute"})
    origin = {"Origin": SITE}
    statuses = [
        api.post("/support/signin", json={"email": "ana@example.org"}, headers=origin).status_code
        for _ in range(3)
    ]
    assert statuses == [202, 202, 429]
    statuses = [
        api.post("/support/signin", json={"email": f"r{i}@example.org"}, headers=origin).status_code
        for i in range(3)
    ]
    assert statuses == [202, 202, 429]  # the address has used its 4 (a refused request is not one)


def test_widget_exchanges_are_limited_per_address(make_client: Callable[..., FlaskClient]) -> None:
    api = make_client(signin={"exchange_per_address": "2/minute"})
    origin = {"Origin": SITE}
    statuses = [
        api.post("/support/signin/exchange", json={"token": "nope"}, headers=origin).status_code
        for _ in range(3)
    ]
    assert statuses == [400, 400, 429]


# -- no enumeration ---------------------------------------------------------------------------


def test_known_and_unknown_addresses_get_the_same_answer_in_about_the_same_time(
    make_client: Callable[..., FlaskClient], db: Database, site_key: dict[str, str]
) -> None:
    api = make_client(ratelimit={"enabled": False})
    with db.transaction() as s:
        for i in range(12):
            s.add(
                Reader(
                    external_id=f"known{i}",
                    verified_email=f"known{i}@example.org",
                    email=f"known{i}@example.org",
                )
            )
    times: dict[str, list[float]] = {"known": [], "unknown": []}
    answers: set[tuple[int, str]] = set()
    for i in range(12):
        for kind in ("known", "unknown"):
            start = time.perf_counter()
            resp = api.post("/v1/signin", json={"email": f"{kind}{i}@example.org"}, headers=site_key)
            times[kind].append(time.perf_counter() - start)
            answers.add((resp.status_code, resp.get_data(as_text=True)))
    assert answers == {(202, '{"outcome":"sent"}\n')} or len(answers) == 1
    known, unknown = statistics.median(times["known"]), statistics.median(times["unknown"])
    assert abs(known - unknown) < max(0.02, 0.5 * min(known, unknown)), (known, unknown)
    with db.transaction(readonly=True) as s:
        kinds = s.execute(select(OutboxMessage.kind, OutboxMessage.reader_id)).all()
    assert set(kinds) == {("signin_code", None)} and len(kinds) == 24


# -- our page ---------------------------------------------------------------------------------


def test_the_page_asks_before_it_uses_the_link(
    api: FlaskClient, db: Database, site_key: dict[str, str]
) -> None:
    api.post("/v1/signin", json={"email": "ana@example.org"}, headers=site_key)
    link = mailed(db, settings_of(api), "ana@example.org")["link"]
    assert link.startswith("https://paywall.example.org/signin#paywall_signin=")
    token = link.rsplit("paywall_signin=", 1)[1]
    page = api.get("/signin")  # the fragment never reaches us: nothing is used by opening the link
    assert page.status_code == 200 and page.headers["Cache-Control"] == "private, no-store"
    html = page.get_data(as_text=True)
    assert 'id="link-token"' in html and "/signin/static/signin.js" in html
    script = api.get("/signin/static/signin.js")
    assert script.status_code == 200 and "paywall_signin" in script.get_data(as_text=True)
    foreign = api.post("/signin", data={"token": token}, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    done = api.post("/signin", data={"token": token}, headers={"Origin": "https://paywall.example.org"})
    assert done.status_code == 200 and 'name="reader_token"' in done.get_data(as_text=True)
    assert 'action="/account/session"' in done.get_data(as_text=True)
    again = api.post("/signin", data={"token": token})
    assert again.status_code == 400 and "not valid any more" in again.get_data(as_text=True)


def test_the_page_takes_a_typed_code(api: FlaskClient, db: Database, site_key: dict[str, str]) -> None:
    api.post("/v1/signin", json={"email": "ana@example.org"}, headers=site_key)
    code = mailed(db, settings_of(api), "ana@example.org")["code"]
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    refused = api.post("/signin", data={"email": "ana@example.org", "code": wrong})
    assert refused.status_code == 400 and "not right" in refused.get_data(as_text=True)
    assert 'value="ana@example.org"' in refused.get_data(as_text=True)
    incomplete = api.post("/signin", data={"email": "ana@example.org", "code": "12"})
    assert incomplete.status_code == 400 and "6 digits" in incomplete.get_data(as_text=True)
    done = api.post("/signin", data={"email": " Ana@example.org", "code": code})
    assert done.status_code == 200 and 'name="reader_token"' in done.get_data(as_text=True)


def test_the_widget_may_preflight(api: FlaskClient) -> None:
    resp = api.options(
        "/support/signin/exchange",
        headers={
            "Origin": SITE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert resp.status_code == 200 and resp.headers["Access-Control-Allow-Origin"] == SITE
    assert "Content-Type" in resp.headers["Access-Control-Allow-Headers"]


def test_the_routes_are_documented(api: FlaskClient) -> None:
    paths = api.get("/openapi.json").get_json()["paths"]
    for path in (
        "/v1/signin",
        "/v1/signin/exchange",
        "/v1/signout",
        "/support/signin",
        "/support/signin/exchange",
        "/support/signout",
    ):
        assert "post" in paths[path], path
    assert "400" in paths["/v1/signin/exchange"]["post"]["responses"]
