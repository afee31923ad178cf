"""POST /v1/access in front of Flask (paywall/access/endpoint.py) answers as the Flask route does.

Each request goes to both: the app as served (the front answers it) and Flask's own WSGI app
behind the front (the flask-smorest route, kept for the OpenAPI description), with the clock
pinned so tokens come out the same, and the meter put back between the two so both see one state
(and make the same write).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import delete, insert, select
from werkzeug.test import Client, TestResponse

from paywall import clock
from paywall.app import create_app
from paywall.config import Settings
from paywall.db import Database
from paywall.front import FRONT_ROUTES, front_of
from paywall.models import MeterRead
from tests.support import access_rows as f

NOW = dt.datetime(2027, 3, 14, 9, 30, tzinfo=dt.UTC)
# Headers that differ by design between any two answers (a fresh request id each time).
VARYING = {"X-Request-ID"}

Send = Callable[..., tuple[TestResponse, TestResponse]]


@pytest.fixture
def send(app: Flask, db: Database, monkeypatch: pytest.MonkeyPatch) -> Send:
    """Send one request to the front and to Flask alone; returns both answers."""
    monkeypatch.setattr(clock, "now", lambda: NOW)
    return make_send(app, db)


def make_send(app: Flask, db: Database) -> Send:
    served = Client(app, TestResponse)
    flask_only = Client(front_of(app).app, TestResponse)

    def meter() -> list[dict[str, Any]]:
        with db.transaction() as s:
            rows = s.scalars(select(MeterRead)).all()
            return [
                {c: getattr(r, c) for c in ("reader", "period", "article", "slot", "read_at")} for r in rows
            ]

    def restore(rows: list[dict[str, Any]]) -> None:
        with db.transaction() as s:
            s.execute(delete(MeterRead))
            if rows:
                s.execute(insert(MeterRead), rows)

    def send(method: str = "POST", **kwargs: Any) -> tuple[TestResponse, TestResponse]:
        kwargs.setdefault("path", "/v1/access")
        before = meter()
        ours = served.open(method=method, **kwargs)
        after = meter()
        restore(before)
        theirs = flask_only.open(method=method, **kwargs)
        assert meter() == after  # the same write, too
        restore(before)
        return ours, theirs

    return send


def assert_same(ours: TestResponse, theirs: TestResponse) -> None:
    assert ours.status_code == theirs.status_code, (ours.data, theirs.data)
    assert ours.mimetype == theirs.mimetype
    assert {k: v for k, v in ours.headers if k not in VARYING} == {
        k: v for k, v in theirs.headers if k not in VARYING
    } or _same_but_length(ours, theirs)
    assert "X-Request-ID" in ours.headers
    if ours.mimetype == "application/json":
        assert ours.data == theirs.data  # byte for byte: Flask's sorted, compact JSON
    else:
        assert json.loads(ours.data or b"null") == json.loads(theirs.data or b"null")


def _same_but_length(ours: TestResponse, theirs: TestResponse) -> bool:
    """Problem bodies are the same JSON, spaced differently (the front writes json.dumps' default)."""
    skip = VARYING | {"Content-Length"}
    return ours.mimetype == "application/problem+json" and {
        k: v for k, v in ours.headers if k not in skip
    } == {k: v for k, v in theirs.headers if k not in skip}


def test_the_front_answers_the_route(app: Flask, site_key: dict[str, str]) -> None:
    assert ("POST", "/v1/access") in app.extensions[FRONT_ROUTES]
    # Flask still has it, for the OpenAPI description (and the other methods)...
    assert app.url_map.bind("x").match("/v1/access", method="POST")[0] == "access.post_access"
    assert "/v1/access" in app.test_client().get("/openapi.json").get_json()["paths"]

    def unreachable(*_: Any, **__: Any) -> Any:
        raise AssertionError("Flask's view answered")

    # ... but never answers it.
    app.view_functions["access.post_access"] = unreachable
    resp = app.test_client().post("/v1/access", json={"reader": "r1", "article": "a1"}, headers=site_key)
    assert resp.status_code == 200


def test_answers_are_the_same_for_each_kind_of_reader(
    db: Database, send: Send, site_key: dict[str, str], admin_key: dict[str, str]
) -> None:
    with db.transaction() as s:
        f.subscription(s, f.reader(s, "subscriber"), current_period_end=NOW + dt.timedelta(days=9))
        f.payment(s, f.reader(s, "donor"), NOW - dt.timedelta(days=3))
        f.reader(s, "known")
    bodies = [
        {"reader": "subscriber", "article": "a1"},
        {"reader": "donor", "article": "a1", "explain": True},
        {"reader": "known", "article": "a1"},
        {"reader": "cookie-1", "article": "a1", "level": "registered"},
        {"reader": "cookie-1", "article": "a1", "level": "supporters", "explain": True},
        {"reader": "cookie-1", "article": "a1", "level": "free"},
        {"reader": "caf\u00e9 \u263a", "article": "\u00e9t\u00e9"},
    ]
    for key in (site_key, admin_key):
        for body in bodies:
            ours, theirs = send(json=body, headers=key)
            assert ours.status_code == 200, ours.get_json()
            assert ours.headers["Cache-Control"] == "private, no-store"
            assert_same(ours, theirs)
    # A denial carries the same token (the clock is pinned).
    for n in range(3):
        with db.transaction() as s:
            s.add(MeterRead(reader="cookie-2", period="2027-03", article=f"x{n}", slot=n + 1, read_at=NOW))
    ours, theirs = send(json={"reader": "cookie-2", "article": "a9"}, headers=site_key)
    assert ours.get_json()["allowed"] is False and "token" in ours.get_json()
    assert_same(ours, theirs)


BAD_BODIES: list[tuple[str, str | bytes]] = [
    ("application/json", '{"reader": "r1"}'),
    ("application/json", '{"article": "a1"}'),
    ("application/json", "{}"),
    ("application/json", ""),
    ("application/json", " "),
    ("application/json", "[]"),
    ("application/json", '"r1"'),
    ("application/json", "null"),
    ("application/json", "12"),
    ("application/json", "{nope"),
    ("application/json", b"\xff\xfe{}"),
    ("application/json", '{"reader": "r1", "article": "a1"}'.encode("utf-16")),
    ("application/json", b'\xef\xbb\xbf{"reader": "r1", "article": "a1"}'),
    ("application/json", '{"reader": "", "article": "a1"}'),
    ("application/json", '{"reader": " r", "article": "a1"}'),
    ("application/json", '{"reader": "r\\u0001", "article": "a1"}'),
    ("application/json", '{"reader": "r\\u0000", "article": "a1"}'),
    ("application/json", '{"reader": "\\ud800", "article": "a1"}'),
    ("application/json", '{"reader": "' + "r" * 129 + '", "article": "a1"}'),
    ("application/json", '{"reader": 7, "article": "a1"}'),
    ("application/json", '{"reader": "r1", "article": null}'),
    ("application/json", '{"reader": "r1", "article": "a1", "explain": 1}'),
    ("application/json", '{"reader": "r1", "article": "a1", "explain": "true"}'),
    ("application/json", '{"reader": "r1", "article": "a1", "level": "gold"}'),
    ("application/json", '{"reader": "r1", "article": "a1", "level": null}'),
    ("application/json", '{"reader": "r1", "article": "a1", "extra": 1}'),
    ("application/json", '{"reader": "r1", "article": "a1", "extra": {"k": "\\u0000"}}'),
    ("application/json", '{"reader": "r1", "article": "a1", "n": ' + "9" * 4301 + "}"),
    ("application/json", '{"reader": "r1", "article": "a1", "n": 1e999}'),
    ("application/json", "[" * 100_000 + "]" * 100_000),
    ("application/json", "[" * 2_000),
    ("application/json; charset=utf-8", '{"reader": "r1", "article": "a1"}'),
    ("application/merge-patch+json", '{"reader": "r1", "article": "a1"}'),
    ("APPLICATION/JSON", '{"reader": "r1", "article": "a1"}'),
    ("text/plain", '{"reader": "r1", "article": "a1"}'),
    ("application/x-www-form-urlencoded", "reader=r1&article=a1"),
    ("", '{"reader": "r1", "article": "a1"}'),
]


@pytest.mark.parametrize("content_type, body", BAD_BODIES, ids=lambda v: repr(v)[:40])
def test_bad_and_odd_bodies_answer_the_same(
    send: Send, site_key: dict[str, str], content_type: str, body: str | bytes
) -> None:
    for headers in (site_key, {}, {"Authorization": "Bearer pw_x_y"}):
        ours, theirs = send(data=body, content_type=content_type or None, headers=headers)
        assert_same(ours, theirs)


def test_too_large_bodies_answer_the_same(
    make_settings: Callable[..., Settings],
    db: Database,
    site_key: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(clock, "now", lambda: NOW)
    app = create_app(make_settings(server={"max_body_bytes": 100}), db=db)
    send = make_send(app, db)
    small = '{"reader": "r1", "article": "a1"}'
    large = '{"reader": "r1", "article": "a1", "explain": false' + " " * 200 + "}"
    for content_type in ("application/json", "text/plain"):
        for body in (small, large):
            for headers in (site_key, {}):
                ours, theirs = send(data=body, content_type=content_type, headers=headers)
                assert_same(ours, theirs)
    ours, _ = send(data=large, content_type="application/json", headers=site_key)
    assert ours.status_code == 413 and ours.get_json()["errors"] == {"body": ["At most 100 bytes."]}


def test_keys_and_roles_answer_the_same(send: Send, make_key: Callable[[str], dict[str, str]]) -> None:
    body = {"reader": "r1", "article": "a1"}
    for headers in (
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer nonsense"},
        {"Authorization": "Basic eDp5"},
        {"Authorization": "Bearer pw_0000000000000000_forged"},
        make_key("finance"),
        make_key("site"),
        make_key("admin"),
    ):
        ours, theirs = send(json=body, headers=headers)
        assert_same(ours, theirs)
        if ours.status_code == 401:
            assert ours.headers["WWW-Authenticate"] == 'Bearer realm="paywall"'
    ours, _ = send(json=body, headers=make_key("finance"))
    assert ours.status_code == 403 and ours.get_json()["type"].endswith("/forbidden")


def test_other_methods_are_flasks(send: Send, site_key: dict[str, str]) -> None:
    for method in ("GET", "PUT", "DELETE", "OPTIONS", "HEAD"):
        ours, theirs = send(method, headers=site_key)
        assert_same(ours, theirs)
    ours, _ = send("GET", headers=site_key)
    assert ours.status_code == 405 and "POST" in ours.headers["Allow"]


@pytest.mark.parametrize("limit", ["3/minute", "3/minute;100/hour", "100/hour;3/minute"])
def test_failed_keys_are_counted_by_the_front_per_address(
    make_settings: Callable[..., Settings],
    db: Database,
    make_key: Callable[[str], dict[str, str]],
    limit: str,
) -> None:
    """The failed-key throttle of paywall/checkout/limits.py counts the front's failures too, per
    client address (X-Forwarded-For with proxy_hops), and shares its counts with Flask's routes;
    with two windows the shorter one still stops the fourth try (the longest is read first)."""
    settings = make_settings(ratelimit={"auth_failures_per_address": limit, "proxy_hops": 1})
    app = create_app(settings, db=db)
    client = app.test_client()
    site = make_key("site")
    body = {"reader": "r1", "article": "a1"}
    here = {"X-Forwarded-For": "203.0.113.5"}
    for _ in range(10):  # no key at all: nothing counted
        assert client.post("/v1/access", json=body, headers=here).status_code == 401
    assert client.post("/v1/access", json=body, headers={**site, **here}).status_code == 200
    forged = {"Authorization": "Bearer pw_0000000000000000_forged", **here}
    assert client.post("/v1/access", json=body, headers=forged).status_code == 401
    assert (
        client.post("/v1/access", json=body, headers={"Authorization": "Bearer x", **here}).status_code == 401
    )
    assert client.get("/v1/readers/r1", headers=forged).status_code == 401  # Flask's route: the same count
    resp = client.post("/v1/access", json=body, headers={**site, **here})
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) > 0
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json()["type"].endswith("/too-many-requests")
    assert client.get("/v1/readers/r1", headers={**site, **here}).status_code == 429
    elsewhere = {**site, "X-Forwarded-For": "203.0.113.6"}
    assert client.post("/v1/access", json=body, headers=elsewhere).status_code == 200
