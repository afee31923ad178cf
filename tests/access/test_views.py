"""The HTTP edge: POST /v1/access, /v1/access/token, /v1/appeals/dismiss and /v1/comps."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from paywall import clock
from paywall.config import Settings
from paywall.db import Database
from paywall.models import Comp, MeterRead, Reader
from tests.support import access_rows as f


def post(client: FlaskClient, path: str, key: dict[str, str], body: Any) -> Any:
    return client.post(path, json=body, headers=key)


def test_access_answer_shape_and_explain(client: FlaskClient, site_key: dict[str, str]) -> None:
    resp = post(client, "/v1/access", site_key, {"reader": "cookie-1", "article": "a1"})
    assert resp.status_code == 200
    assert resp.headers["Cache-Control"] == "private, no-store"
    body = resp.get_json()
    assert set(body) == {
        "reader",
        "article",
        "allowed",
        "reason",
        "until",
        "meter",
        "appeal",
        "level",
        "register",
    }
    assert body["allowed"] is True and body["reason"] == "metered" and body["meter"]["used"] == 1
    explained = post(client, "/v1/access", site_key, {"reader": "cookie-1", "article": "a1", "explain": True})
    trace = explained.get_json()["trace"]
    assert [t["rule"] for t in trace[:2]] == ["level", "comp"] and trace[-1]["rule"] == "appeal"
    assert any("already read" in t["why"] for t in trace)


def test_subscriber_via_api(db: Database, client: FlaskClient, site_key: dict[str, str]) -> None:
    end = clock.now().replace(microsecond=0) + dt.timedelta(days=5)
    with db.transaction() as s:
        f.subscription(s, f.reader(s, "ana"), current_period_end=end, cancel_at_period_end=True)
    body = post(client, "/v1/access", site_key, {"reader": "ana", "article": "x"}).get_json()
    assert body["reason"] == "subscription" and body["until"] == clock.isoformat(end)
    assert body["meter"] is None and body["appeal"] is False


def test_metering_over_http_and_unknown_readers_stay_unregistered(
    db: Database, client: FlaskClient, site_key: dict[str, str]
) -> None:
    reasons = [
        post(client, "/v1/access", site_key, {"reader": "anon-7", "article": a}).get_json()["reason"]
        for a in ["a", "b", "c", "d", "a"]
    ]
    assert reasons == ["metered", "metered", "metered", "meter_exhausted", "metered"]
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Reader)) == 0


def test_concurrent_first_reads_over_http(
    app: Flask, db: Database, site_key: dict[str, str], make_settings: Any
) -> None:
    app.extensions["paywall.settings"] = make_settings(access={"free_articles_per_month": 3})
    barrier = threading.Barrier(10)
    allowed: list[bool] = []
    errors: list[BaseException] = []

    def read(i: int) -> None:
        try:
            client = app.test_client()
            barrier.wait(timeout=10)
            resp = client.post("/v1/access", json={"reader": "racer", "article": f"a{i}"}, headers=site_key)
            assert resp.status_code == 200, resp.get_json()
            allowed.append(resp.get_json()["allowed"])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert sorted(allowed) == [False] * 7 + [True] * 3
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(MeterRead)) == 3


def test_access_check_survives_the_database_dropping_its_connections(
    db: Database, client: FlaskClient, site_key: dict[str, str]
) -> None:
    """The hot path has no pre-ping: a dead pooled connection is replaced and the check run again."""
    if db.dialect != "postgresql":
        pytest.skip("needs a database server that can drop connections (PostgreSQL)")
    assert post(client, "/v1/access", site_key, {"reader": "r1", "article": "a1"}).status_code == 200
    with db.engine.connect() as conn:  # as a database restart would: every other session goes
        dropped = conn.exec_driver_sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).scalar_one()
        conn.commit()
    assert dropped >= 1
    for article in ("a2", "a2", "a3"):  # a first read (writes), a re-read, another first read
        resp = post(client, "/v1/access", site_key, {"reader": "r1", "article": article})
        assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["meter"]["used"] == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"article": "a"}, "reader"),
        ({"reader": "", "article": "a"}, "reader"),
        ({"reader": "   ", "article": "a"}, "reader"),
        ({"reader": "r" * 129, "article": "a"}, "reader"),
        ({"reader": 42, "article": "a"}, "reader"),
        ({"reader": None, "article": "a"}, "reader"),
        ({"reader": "r"}, "article"),
        ({"reader": "r", "article": "a" * 129}, "article"),
        ({"reader": "r", "article": ["a"]}, "article"),
        ({"reader": "r", "article": "a", "explain": "maybe"}, "explain"),
        ({"reader": "r", "article": "a", "extra": 1}, "extra"),
    ],
)
def test_bad_access_input_names_the_field(
    client: FlaskClient, site_key: dict[str, str], body: dict[str, Any], field: str
) -> None:
    resp = post(client, "/v1/access", site_key, body)
    assert resp.status_code == 422
    assert resp.mimetype == "application/problem+json"
    assert field in resp.get_json()["errors"]


@pytest.mark.parametrize(
    ("reader", "message"),
    [
        ("", "Must not be empty."),
        ("   ", "Must not be empty."),
        ("r" * 129, "Must be at most 128 characters."),
        ("a\u0000b", "Must not contain control characters."),
        (" r", "Must not start with a space."),
    ],
)
def test_a_bad_id_gets_the_one_message_that_fits(
    client: FlaskClient, site_key: dict[str, str], reader: str, message: str
) -> None:
    resp = post(client, "/v1/access", site_key, {"reader": reader, "article": "a"})
    assert resp.status_code == 422
    assert resp.get_json()["errors"] == {"reader": [message]}


def test_ids_of_exactly_128_characters_are_fine(client: FlaskClient, site_key: dict[str, str]) -> None:
    resp = post(client, "/v1/access", site_key, {"reader": "r" * 128, "article": "a" * 128})
    assert resp.status_code == 200


@pytest.mark.parametrize("path", ["/v1/access", "/v1/access/token", "/v1/appeals/dismiss"])
def test_site_routes_need_a_site_key(
    client: FlaskClient, finance_key: dict[str, str], admin_key: dict[str, str], path: str
) -> None:
    body = {"reader": "r", "article": "a"} if path == "/v1/access" else {"reader": "r"}
    assert client.post(path, json=body).status_code == 401
    assert client.post(path, json=body, headers={"Authorization": "Bearer pw_x_y"}).status_code == 401
    assert post(client, path, finance_key, body).status_code == 403
    assert post(client, path, admin_key, body).status_code == 200


def test_token_route_verifies_with_the_published_jwks(
    db: Database, client: FlaskClient, site_key: dict[str, str]
) -> None:
    with db.transaction() as s:
        f.payment(s, f.reader(s, "don"), clock.now() - dt.timedelta(days=1))
    resp = post(client, "/v1/access/token", site_key, {"reader": "don"})
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "private, no-store"
    body = resp.get_json()
    jwks = client.get("/.well-known/jwks.json").get_json()
    kid = jwt.get_unverified_header(body["token"])["kid"]
    jwk = next(k for k in jwks["keys"] if k["kid"] == kid)
    claims = jwt.decode(body["token"], jwt.PyJWK(jwk).key, algorithms=["EdDSA"])
    assert (claims["sub"], claims["access"], claims["reason"], claims["appeal"]) == (
        "don",
        True,
        "donation",
        False,
    )
    assert clock.isoformat(dt.datetime.fromtimestamp(claims["exp"], dt.UTC)) == body["expires_at"]
    assert post(client, "/v1/access/token", site_key, {"reader": ""}).status_code == 422
    assert post(client, "/v1/access/token", site_key, {}).get_json()["errors"].keys() == {"reader"}


def test_dismiss_route(client: FlaskClient, site_key: dict[str, str], settings: Settings) -> None:
    first = post(client, "/v1/appeals/dismiss", site_key, {"reader": "anon-1"})
    assert first.status_code == 200 and first.get_json()["outcome"] == "dismissed"
    assert first.get_json()["until"] is not None
    assert (
        post(client, "/v1/appeals/dismiss", site_key, {"reader": "anon-1"}).get_json()["outcome"]
        == "extended"
    )
    body = post(client, "/v1/access", site_key, {"reader": "anon-1", "article": "a"}).get_json()
    assert body["appeal"] is False
    assert post(client, "/v1/appeals/dismiss", site_key, {"reader": 5}).status_code == 422


def test_comps_through_the_admin_api(
    db: Database, client: FlaskClient, admin_key: dict[str, str], site_key: dict[str, str]
) -> None:
    until = (clock.now() + dt.timedelta(days=30)).date().isoformat()
    resp = client.put("/v1/comps/vip", json={"until": until, "note": "press"}, headers=admin_key)
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["until"].startswith(
        (dt.date.fromisoformat(until) + dt.timedelta(days=1)).isoformat()
    )
    again = client.put("/v1/comps/vip", json={"until": until}, headers=admin_key)
    assert again.status_code == 200 and again.get_json()["note"] is None
    assert client.put("/v1/comps/vip", json={"until": until}, headers=site_key).status_code == 403
    assert client.get("/v1/comps/vip", headers=admin_key).get_json()["until"] == again.get_json()["until"]

    body = post(client, "/v1/access", site_key, {"reader": "vip", "article": "a"}).get_json()
    assert (body["reason"], body["appeal"]) == ("comp", False)
    reader = client.get("/v1/readers/vip", headers=site_key).get_json()
    assert reader["supporter"]["comp"]["until"] == again.get_json()["until"]

    assert client.delete("/v1/comps/vip", headers=admin_key).get_json() == {
        "reader": "vip",
        "outcome": "revoked",
    }
    assert client.delete("/v1/comps/vip", headers=admin_key).status_code == 404
    assert client.get("/v1/readers/vip", headers=site_key).get_json()["supporter"]["comp"] is None
    assert (
        post(client, "/v1/access", site_key, {"reader": "vip", "article": "a"}).get_json()["reason"]
        == "metered"
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "until"),
        ({"until": "2001-01-01"}, "until"),
        ({"until": "tomorrow"}, "until"),
        ({"until": "2999-01-01T00:00:00"}, "until"),
        ({"until": 20990101}, "until"),
        ({"until": "2999-01-01", "note": "x" * 501}, "note"),
    ],
)
def test_bad_comp_input(
    client: FlaskClient, admin_key: dict[str, str], body: dict[str, Any], field: str
) -> None:
    resp = client.put("/v1/comps/vip", json=body, headers=admin_key)
    assert resp.status_code == 422 and field in resp.get_json()["errors"]


def test_comp_with_an_exact_datetime(db: Database, client: FlaskClient, admin_key: dict[str, str]) -> None:
    resp = client.put("/v1/comps/vip", json={"until": "2999-01-01T10:00:00+02:00"}, headers=admin_key)
    assert resp.get_json()["until"] == "2999-01-01T08:00:00Z"
    with db.transaction() as s:
        assert s.scalar(select(Comp.until)) == dt.datetime(2999, 1, 1, 8, tzinfo=dt.UTC)


def test_erasure_drops_meter_dismissal_and_comp_note(
    db: Database, client: FlaskClient, admin_key: dict[str, str], site_key: dict[str, str]
) -> None:
    client.put(
        "/v1/comps/ana", json={"until": "2999-01-01", "note": "Ana Example, editor"}, headers=admin_key
    )
    client.delete("/v1/comps/ana", headers=admin_key)
    client.put("/v1/comps/ana", json={"until": "2999-01-01", "note": "Ana Example"}, headers=admin_key)
    post(client, "/v1/appeals/dismiss", site_key, {"reader": "ana"})
    with db.transaction() as s:
        s.add(MeterRead(reader="ana", period="2026-01", article="a", slot=1))
    assert client.delete("/v1/readers/ana", headers=admin_key).status_code == 200
    with db.transaction() as s:
        assert s.scalar(select(Comp.note)) is None
        assert s.scalar(select(func.count()).select_from(MeterRead)) == 0
    assert client.get("/v1/comps/ana", headers=admin_key).status_code == 200


def test_openapi_documents_the_routes(client: FlaskClient) -> None:
    paths = client.get("/openapi.json").get_json()["paths"]
    assert {"/v1/access", "/v1/access/token", "/v1/appeals/dismiss", "/v1/comps/{reader}"} <= set(paths)
