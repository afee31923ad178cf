"""POST /support/events: the widget's beacons recorded in appeal_events (and footer impressions in
appeal_asks); bad input is a 4xx naming the field or a dropped event, never a 500."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from paywall import clock
from paywall.app import create_app
from paywall.checkout.limits import WorkerLimiter, address_of
from paywall.config import Settings, load_settings
from paywall.db import Database
from paywall.experiments import events as events_module
from paywall.experiments.asks import Ask, encode_ask, subject_hash
from paywall.experiments.events import MAX_EVENTS, Writer, writer_of
from paywall.models.appeals import AppealAsk, AppealEvent
from tests.conftest import SIGNING_KEY
from tests.support.faults import gunicorn, http

URL = "/support/events"
EXPERIMENT = {
    "footer-copy": {
        "holdback": 0.2,
        "start": "2026-01-01",
        "end": "2099-12-31",
        "channels": ["footer"],
        "variants": {"plain": {"weight": 1}, "urgent": {"weight": 1, "headline": "We are in survival mode"}},
    }
}


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """With an ask budget: without one nothing reads appeal_asks, so no row is kept there."""
    return make_settings(appeal={"max_asks": 3})


def ask(settings: Settings, **changes: Any) -> str:
    fields: dict[str, Any] = {
        "channel": "footer",
        "experiment": "footer-copy",
        "variant": "urgent",
        "subject": "reader-42",
        "issued": clock.now(),
    }
    fields.update(changes)
    return encode_ask(settings, Ask(**fields))


def beacon(client: FlaskClient, events: list[dict[str, Any]], **kwargs: Any) -> Any:
    kwargs.setdefault("content_type", "text/plain;charset=UTF-8")
    return client.post(URL, data=json.dumps({"events": events}), **kwargs)


def rows(db: Database) -> list[AppealEvent]:
    with db.transaction(readonly=True) as session:
        return list(session.scalars(select(AppealEvent).order_by(AppealEvent.id)))


def asks(db: Database) -> list[AppealAsk]:
    with db.transaction(readonly=True) as session:
        return list(session.scalars(select(AppealAsk).order_by(AppealAsk.id)))


def test_a_beacon_records_its_events_in_one_go(client: FlaskClient, settings: Settings, db: Database) -> None:
    token = ask(settings)
    events = [
        {"ask": token, "type": "view"},
        {"ask": token, "type": "impression"},
        {"ask": token, "type": "click", "action": "donate"},
        {"ask": token, "type": "close"},
    ]
    resp = beacon(client, events)
    assert resp.status_code == 202
    assert resp.get_json() == {"recorded": 4, "dropped": 0}
    found = rows(db)
    assert [(r.type, r.action) for r in found] == [
        ("view", ""),
        ("impression", ""),
        ("click", "donate"),
        ("close", ""),
    ]
    hashed = subject_hash(settings, "reader-42")
    assert {(r.channel, r.experiment, r.variant, r.subject) for r in found} == {
        ("footer", "footer-copy", "urgent", hashed)
    }
    assert all(abs(r.at - clock.now()) < dt.timedelta(minutes=1) for r in found)
    # The reader id is nowhere in the events: only its keyed hash.
    assert "reader-42" not in hashed
    # The footer impression spent one ask of the budget, under the plain subject key.
    ((spent),) = [(a.subject, a.channel) for a in asks(db)]
    assert spent == ("reader-42", "footer")


def test_json_bodies_are_taken_too(client: FlaskClient, settings: Settings, db: Database) -> None:
    resp = client.post(URL, json={"events": [{"ask": ask(settings), "type": "view"}]})
    assert resp.status_code == 202
    assert len(rows(db)) == 1


def test_gate_impressions_do_not_spend_the_ask_budget(
    client: FlaskClient, settings: Settings, db: Database
) -> None:
    token = ask(settings, channel="gate", experiment="", variant="")
    resp = beacon(
        client, [{"ask": token, "type": "impression"}, {"ask": token, "type": "click", "action": "signin"}]
    )
    assert resp.get_json() == {"recorded": 2, "dropped": 0}
    assert [(r.channel, r.experiment, r.variant, r.action) for r in rows(db)] == [
        ("gate", "", "", ""),
        ("gate", "", "", "signin"),
    ]
    assert asks(db) == []


def test_a_repeated_event_in_one_beacon_counts_once(
    client: FlaskClient, settings: Settings, db: Database
) -> None:
    token = ask(settings)
    events = [{"ask": token, "type": "impression"}] * 3 + [
        {"ask": token, "type": "click", "action": "donate"}
    ] * 2
    assert beacon(client, events).get_json() == {"recorded": 2, "dropped": 3}
    assert len(asks(db)) == 1


def test_a_beacon_sent_again_counts_once_and_spends_one_ask(
    client: FlaskClient, settings: Settings, db: Database
) -> None:
    """A beacon replayed (by a retry or a script) adds nothing: one row per ask, type and action,
    and one ask spent per ask; a second click on another button of the same appeal still counts."""
    token = ask(settings)
    events = [
        {"ask": token, "type": "view"},
        {"ask": token, "type": "impression"},
        {"ask": token, "type": "click", "action": "donate"},
    ]
    for _ in range(4):
        assert beacon(client, events).status_code == 202
    beacon(client, [{"ask": token, "type": "click", "action": "subscribe"}])
    assert sorted((r.type, r.action) for r in rows(db)) == [
        ("click", "donate"),
        ("click", "subscribe"),
        ("impression", ""),
        ("view", ""),
    ]
    assert len(asks(db)) == 1
    # Another page view (another ask) is another sighting.
    beacon(
        client, [{"ask": ask(settings, issued=clock.now() - dt.timedelta(seconds=5)), "type": "impression"}]
    )
    assert len(asks(db)) == 2


def test_without_a_budget_no_asks_are_kept(make_settings: Callable[..., Settings], db: Database) -> None:
    settings = make_settings()  # [appeal] max_asks = 0
    client = create_app(settings, db=db).test_client()
    assert beacon(client, [{"ask": ask(settings), "type": "impression"}]).get_json() == {
        "recorded": 1,
        "dropped": 0,
    }
    assert len(rows(db)) == 1
    assert asks(db) == []


def test_forged_expired_preview_and_mail_asks_are_dropped(
    client: FlaskClient, settings: Settings, db: Database
) -> None:
    good = ask(settings)
    mac = good.split(".")[1]
    forged = ask(settings, variant="holdback").split(".")[0] + "." + mac
    expired = ask(settings, issued=clock.now() - dt.timedelta(days=2))
    preview = ask(settings, preview=True)
    mail = ask(settings, channel="spring-appeal")
    events = [{"ask": t, "type": "impression"} for t in (forged, expired, preview, mail, "nonsense", good)]
    resp = beacon(client, events)
    assert resp.status_code == 202
    assert resp.get_json() == {"recorded": 1, "dropped": 5}
    assert [(r.variant, r.type) for r in rows(db)] == [("urgent", "impression")]
    assert len(asks(db)) == 1


def test_a_beacon_of_nothing_but_bad_asks_writes_nothing(
    client: FlaskClient, settings: Settings, db: Database
) -> None:
    resp = beacon(client, [{"ask": "x.y", "type": "view"}])
    assert resp.get_json() == {"recorded": 0, "dropped": 1}
    assert rows(db) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("[1, 2]", "events"),
        ('{"event": []}', "events"),
        ('{"events": {}}', "events"),
        ('{"events": [1]}', "events.0"),
        ('{"events": [{"type": "view"}]}', "events.0.ask"),
        ('{"events": [{"ask": 5, "type": "view"}]}', "events.0.ask"),
        ('{"events": [{"ask": "a.b", "type": "glance"}]}', "events.0.type"),
        ('{"events": [{"ask": "a.b", "type": ["view"]}]}', "events.0.type"),
        ('{"events": [{"ask": "a.b", "type": "click"}]}', "events.0.action"),
        ('{"events": [{"ask": "a.b", "type": "click", "action": "buy"}]}', "events.0.action"),
        ('{"events": [{"ask": "a.b", "type": "view", "action": "donate"}]}', "events.0.action"),
    ],
)
def test_malformed_beacons_are_a_422_naming_the_field(
    client: FlaskClient, db: Database, body: str, field: str
) -> None:
    resp = client.post(URL, data=body, content_type="text/plain")
    assert resp.status_code == 422
    assert field in resp.get_json()["errors"]
    assert rows(db) == []


def test_too_many_events_are_refused(client: FlaskClient, settings: Settings, db: Database) -> None:
    token = ask(settings)
    resp = beacon(client, [{"ask": token, "type": "click", "action": "donate"}] * (MAX_EVENTS + 1))
    assert resp.status_code == 422
    assert "events" in resp.get_json()["errors"]
    assert rows(db) == []


@pytest.mark.parametrize("data", [b"not json", b"\xff\xfe{", b""])
def test_not_json_is_a_400(client: FlaskClient, db: Database, data: bytes) -> None:
    resp = client.post(URL, data=data, content_type="text/plain")
    assert resp.status_code == 400
    assert resp.get_json()["errors"] == {"body": ["Invalid JSON body."]}


def test_other_media_types_and_huge_bodies_are_refused(client: FlaskClient, db: Database) -> None:
    form = client.post(URL, data={"events": "[]"})
    assert form.status_code == 415
    assert "Content-Type" in form.get_json()["errors"]
    huge = client.post(URL, data="x" * 70_000, content_type="text/plain")
    assert huge.status_code == 413


def test_a_foreign_origin_may_not_post_and_allowed_origins_may_read(
    make_settings: Callable[..., Settings], db: Database
) -> None:
    settings = make_settings(server={"allowed_origins": ["https://news.example.org"]})
    client = create_app(settings, db=db).test_client()
    body = {"events": [{"ask": ask(settings), "type": "view"}]}
    foreign = client.post(URL, json=body, headers={"Origin": "https://evil.example.com"})
    assert foreign.status_code == 403
    ok = client.post(URL, json=body, headers={"Origin": "https://news.example.org"})
    assert ok.status_code == 202
    assert ok.headers["Access-Control-Allow-Origin"] == "https://news.example.org"
    assert len(rows(db)) == 1


def test_beacons_are_limited_per_address(make_settings: Callable[..., Settings], db: Database) -> None:
    settings = make_settings(ratelimit={"events_per_address": "2/minute"})
    client = create_app(settings, db=db).test_client()
    body = {"events": [{"ask": ask(settings), "type": "close"}]}
    assert [client.post(URL, json=body).status_code for _ in range(3)] == [202, 202, 429]


def test_erasing_a_reader_deletes_the_asks_they_spent(
    client: FlaskClient, settings: Settings, db: Database
) -> None:
    from paywall.erasure import erase_reader
    from paywall.readers.service import ensure_reader

    with db.transaction() as session:
        ensure_reader(session, "reader-42")
    beacon(client, [{"ask": ask(settings), "type": "impression"}])
    beacon(client, [{"ask": ask(settings, subject="reader-7"), "type": "impression"}])
    with db.transaction() as session:
        assert erase_reader(session, "reader-42") == "erased"
    assert [a.subject for a in asks(db)] == ["reader-7"]


# -- the lean path: served in front of Flask ---------------------------------------------------------


def test_the_route_answers_like_the_others_without_flask(client: FlaskClient, settings: Settings) -> None:
    resp = beacon(client, [{"ask": ask(settings), "type": "view"}], headers={"X-Request-Id": "req-18"})
    assert resp.status_code == 202
    assert resp.mimetype == "application/json"
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Request-Id"] == "req-18"
    assert "Origin" in resp.headers["Vary"]
    assert len(beacon(client, [], headers={"X-Request-Id": "bad id!"}).headers["X-Request-Id"]) == 32
    # Other methods: a 405 problem naming the allowed ones; other paths are Flask's as before.
    get = client.get(URL)
    assert get.status_code == 405 and get.mimetype == "application/problem+json"
    assert get.headers["Allow"] == "OPTIONS, POST"
    assert client.get("/support/events/x").status_code == 404
    assert client.get("/healthz").status_code == 200


def test_a_json_preflight_is_answered_for_allowed_origins(
    make_settings: Callable[..., Settings], db: Database
) -> None:
    settings = make_settings(server={"allowed_origins": ["https://news.example.org"]})
    client = create_app(settings, db=db).test_client()
    resp = client.options(
        URL,
        headers={"Origin": "https://news.example.org", "Access-Control-Request-Method": "POST"},
    )
    assert resp.status_code == 200
    assert resp.headers["Access-Control-Allow-Origin"] == "https://news.example.org"
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    assert resp.headers["Access-Control-Allow-Headers"] == "Content-Type"
    foreign = client.options(URL, headers={"Origin": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in foreign.headers


@pytest.mark.parametrize("data", [b"[" * 60_000, b"1" * 5000])
def test_json_the_parser_chokes_on_is_a_400(client: FlaskClient, db: Database, data: bytes) -> None:
    resp = client.post(URL, data=data, content_type="text/plain")
    assert resp.status_code == 400
    assert resp.get_json()["errors"] == {"body": ["Invalid JSON body."]}


def test_the_limit_answers_a_problem_with_retry_after(
    make_settings: Callable[..., Settings], db: Database
) -> None:
    settings = make_settings(ratelimit={"events_per_address": "1/hour", "proxy_hops": 1})
    client = create_app(settings, db=db).test_client()
    body = {"events": [{"ask": ask(settings), "type": "close"}]}
    reader = {"X-Forwarded-For": "203.0.113.7"}
    assert client.post(URL, json=body, headers=reader).status_code == 202
    refused = client.post(URL, json=body, headers=reader)
    assert refused.status_code == 429 and refused.mimetype == "application/problem+json"
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    # Counted per address (the proxy's last hop), not per server.
    assert client.post(URL, json=body, headers={"X-Forwarded-For": "203.0.113.8"}).status_code == 202


def test_the_worker_limiter_counts_fixed_windows_and_forgets_old_ones() -> None:
    limiter = WorkerLimiter("3/minute;5/hour")
    t = 7200.0  # the start of a minute and of an hour
    assert [limiter.hit("a", t + n) for n in range(3)] == [None, None, None]
    assert limiter.hit("a", t + 3) == 57  # seconds to the next minute
    assert limiter.hit("b", t + 3) is None  # another address
    # A new minute starts with an empty dict (the old window's counts are gone).
    assert [limiter.hit("a", t + 60), limiter.hit("a", t + 61)] == [None, None]
    assert limiter.hit("a", t + 62) == 3600 - 62  # the hour's 5 are spent (refusals not counted)
    assert limiter._windows[0][1] == {"a": 2}


def test_the_address_is_the_declared_proxy_hop() -> None:
    env = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.7"}
    assert address_of(env, 0) == "addr:127.0.0.1"
    assert address_of(env, 1) == "addr:203.0.113.7"
    assert address_of(env, 2) == "addr:6.6.6.6"
    assert address_of(env, 3) == "addr:127.0.0.1"


# -- the buffered writer (a gunicorn worker's) --------------------------------------------------------


def wait_until(check: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_started_writer_answers_first_and_its_thread_writes_soon(
    app: Flask, client: FlaskClient, settings: Settings, db: Database
) -> None:
    writer = writer_of(app)
    writer.every = 0.05
    writer.start()
    try:
        token = ask(settings)
        resp = beacon(client, [{"ask": token, "type": "view"}, {"ask": token, "type": "impression"}])
        assert resp.get_json() == {"recorded": 2, "dropped": 0}
        wait_until(lambda: len(rows(db)) == 2)
        assert [(a.subject, a.channel) for a in asks(db)] == [("reader-42", "footer")]
        assert writer.pending() == 0
    finally:
        writer.close()
    assert not writer.buffered


def test_buffered_rows_wait_and_the_exit_writes_them(
    app: Flask, client: FlaskClient, settings: Settings, db: Database
) -> None:
    writer = writer_of(app)
    writer.every = 3600
    writer.start()
    token = ask(settings)
    beacon(client, [{"ask": token, "type": "view"}, {"ask": token, "type": "impression"}])
    beacon(client, [{"ask": ask(settings, subject="reader-7"), "type": "close"}])
    assert rows(db) == [] and asks(db) == []
    assert writer.pending() == 3
    writer.close()  # gunicorn's worker_exit, and atexit
    assert sorted(r.type for r in rows(db)) == ["close", "impression", "view"]
    assert len(asks(db)) == 1
    assert writer.pending() == 0


def test_a_full_buffer_wakes_the_thread(
    app: Flask, client: FlaskClient, settings: Settings, db: Database
) -> None:
    writer = writer_of(app)
    writer.every, writer.max_rows = 3600, 3
    writer.start()
    try:
        token = ask(settings)
        beacon(client, [{"ask": token, "type": "view"}])
        time.sleep(0.1)
        assert rows(db) == []
        beacon(
            client,
            [{"ask": token, "type": "impression"}, {"ask": token, "type": "click", "action": "donate"}],
        )
        wait_until(lambda: len(rows(db)) == 3)
    finally:
        writer.close()


def test_a_failed_write_is_retried_once(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_write = events_module.write
    failures = [OperationalError("INSERT", {}, Exception("database is locked"))]

    def flaky(*args: Any) -> None:
        if failures:
            raise failures.pop()
        real_write(*args)

    monkeypatch.setattr(events_module, "write", flaky)
    writer = Writer(db, every=3600)
    writer.start()
    rows_, spent, _dropped = events_module.event_rows(
        settings, [events_module.Reported(ask(settings), "impression", "")], clock.now()
    )
    writer.add(rows_, spent)
    assert writer.flush() == 0
    assert "a write failed (OperationalError); its 1 events are tried once more" in caplog.text
    assert writer.pending() == 1
    assert writer.flush() == 1
    assert len(rows(db)) == 1 and len(asks(db)) == 1
    assert writer.lost == 0
    writer.close()


def test_a_write_that_fails_twice_is_dropped_and_counted_never_raised(
    tmp_path: Path, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    gone = Database(f"sqlite:///{tmp_path / 'missing' / 'paywall.sqlite3'}")  # no such directory
    writer = Writer(gone, every=0.02)
    writer.start()
    rows_, spent, _dropped = events_module.event_rows(
        settings, [events_module.Reported(ask(settings), "view", "")], clock.now()
    )
    writer.add(rows_, spent)
    wait_until(lambda: writer.lost == 1)
    assert "a write failed again (OperationalError); 1 events dropped (1 so far)" in caplog.text
    # The thread goes on: later rows are tried (and, the database still gone, dropped) in turn.
    writer.add(rows_ * 2, spent)
    wait_until(lambda: writer.lost == 3)
    assert writer.buffered
    writer.close()
    gone.dispose()


@pytest.mark.slow
def test_gunicorn_workers_buffer_and_flush_at_exit(tmp_path: Path) -> None:
    """`paywall serve` (config/gunicorn.conf.py, 2 workers): beacons are written by the workers'
    threads within a moment, and what waits when the server stops is written on the way out."""
    url = f"sqlite:///{tmp_path / 'paywall.sqlite3'}"
    env = {"PAYWALL_DATABASE_URL": url, "PAYWALL_SIGNING_KEY": SIGNING_KEY}
    full = {k: v for k, v in os.environ.items() if not k.startswith("PAYWALL_")}
    full.update(env)
    subprocess.run([sys.executable, "-m", "paywall.cli", "db", "upgrade"], env=full, cwd=tmp_path, check=True)
    settings = load_settings(environ=env)
    db = Database(url)

    def body() -> bytes:  # a new page view each time (one view counts once per ask)
        return json.dumps({"events": [{"ask": ask(settings), "type": "view"}]}).encode()

    headers = {"Content-Type": "text/plain;charset=UTF-8"}
    with gunicorn(env, tmp_path, workers=2) as (base, _proc):
        for _ in range(20):
            assert http("POST", base + URL, body(), headers) == (202, b'{"recorded": 1, "dropped": 0}')
        wait_until(lambda: len(rows(db)) == 20)
        for _ in range(20):
            http("POST", base + URL, body(), headers)
    # The context stopped the server (SIGTERM): the workers flushed as they went.
    assert len(rows(db)) == 40
    db.dispose()
