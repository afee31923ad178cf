"""POST /support/events: the widget's beacons recorded in appeal_events (and footer impressions in
appeal_asks); bad input is a 4xx naming the field or a dropped event, never a 500."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from paywall import clock
from paywall.app import create_app
from paywall.config import Settings
from paywall.db import Database
from paywall.experiments.asks import Ask, encode_ask, subject_hash
from paywall.experiments.events import MAX_EVENTS
from paywall.models.appeals import AppealAsk, AppealEvent

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


def test_a_repeated_view_or_impression_in_one_beacon_counts_once(
    client: FlaskClient, settings: Settings, db: Database
) -> None:
    token = ask(settings)
    events = [{"ask": token, "type": "impression"}] * 3 + [
        {"ask": token, "type": "click", "action": "donate"}
    ] * 2
    assert beacon(client, events).get_json() == {"recorded": 3, "dropped": 2}
    assert len(asks(db)) == 1


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
