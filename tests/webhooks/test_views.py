"""POST /webhooks/stripe: signatures, the inbox, failures; GET /v1/events; the events CLI."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from paywall.app import create_app
from paywall.cli import main
from paywall.config import Settings
from paywall.db import Base, Database, TransientDatabaseError
from paywall.models import Payment, StripeEvent
from paywall.webhooks import handlers
from paywall.webhooks.sync import derived
from paywall.webhooks.sync import payments as sync
from tests.conftest import WEBHOOK_SECRET
from tests.support.stripe_events import applied, body_of, deliver, drain, load_scenario, sign, status_of

CHARGE_EVENT = load_scenario("one_time_donation_checkout")[0]


def count(db: Database, model: Any) -> int:
    with db.transaction(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def post(client: FlaskClient, body: bytes, header: str | None) -> Any:
    headers = {"Stripe-Signature": header} if header is not None else {}
    return client.post("/webhooks/stripe", data=body, headers=headers, content_type="application/json")


def test_valid_delivery_is_recorded_answered_then_applied(client: FlaskClient, db: Database) -> None:
    resp = deliver(client, CHARGE_EVENT, apply=False)
    assert resp.status_code == 200
    assert resp.get_json() == {"event": CHARGE_EVENT["id"], "outcome": "queued"}
    # Answered before anything was applied: the raw event waits for the applier.
    with db.transaction(readonly=True) as session:
        row = session.scalar(select(StripeEvent))
        assert row is not None and (row.status, row.attempts, row.processed_at) == ("received", 0, None)
    assert count(db, Payment) == 0
    assert drain(client.application) == {"processed": 1}
    with db.transaction(readonly=True) as session:
        row = session.scalar(select(StripeEvent))
        assert row is not None
        assert (row.type, row.status, row.object_id, row.api_version) == (
            "charge.succeeded",
            "processed",
            "ch_1CqRspQz8wLm3xTnAmmTDyRh",
            "2026-07-29.dahlia",
        )
        assert row.payload == CHARGE_EVENT and row.processed_at is not None


@pytest.mark.parametrize(
    "make_header",
    [
        pytest.param(lambda body: None, id="missing header"),
        pytest.param(lambda body: "garbage", id="unparsable header"),
        pytest.param(lambda body: sign(body, "whsec_wrong"), id="wrong secret"),
        pytest.param(lambda body: sign(body, timestamp=int(time.time()) - 301), id="stale timestamp"),
        pytest.param(lambda body: sign(body + b" "), id="body changed"),
        pytest.param(lambda body: sign(body).replace("v1=", "v0="), id="only other schemes"),
    ],
)
def test_bad_signatures_are_400_and_store_nothing(
    client: FlaskClient, db: Database, make_header: Callable[[bytes], str | None]
) -> None:
    body = body_of(CHARGE_EVENT)
    resp = post(client, body, make_header(body))
    assert resp.status_code == 400
    problem = resp.get_json()
    assert problem["status"] == 400 and problem["type"].endswith("/invalid-event")
    assert "Stripe-Signature" in problem["errors"]
    assert count(db, StripeEvent) == 0 and count(db, Payment) == 0


def test_several_v1_values_pass_if_one_matches(client: FlaskClient) -> None:
    body = body_of(CHARGE_EVENT)
    good = sign(body)
    t, v1 = good.split(",")
    bad = sign(body, "whsec_old_secret").split(",")[1]
    resp = post(client, body, f"{t},{bad},{v1},v0=deadbeef")
    assert resp.status_code == 200


def test_rotated_secret_both_accepted(make_settings: Callable[..., Settings], db: Database) -> None:
    settings = make_settings({"PAYWALL_STRIPE_WEBHOOK_SECRET": f"whsec_new_one, {WEBHOOK_SECRET}"})
    client = create_app(settings, db=db).test_client()
    events = load_scenario("one_time_donation_checkout")
    assert deliver(client, events[0], secret="whsec_new_one").status_code == 200
    assert deliver(client, events[1], secret=WEBHOOK_SECRET).status_code == 200
    assert deliver(client, events[2], secret="whsec_retired").status_code == 400


def test_no_webhook_secret_is_503_naming_the_setting(
    make_settings: Callable[..., Settings], db: Database
) -> None:
    client = create_app(make_settings({"PAYWALL_STRIPE_WEBHOOK_SECRET": ""}), db=db).test_client()
    resp = deliver(client, CHARGE_EVENT)
    assert resp.status_code == 503
    assert resp.get_json()["setting"] == "PAYWALL_STRIPE_WEBHOOK_SECRET"


@pytest.mark.parametrize(
    "payload",
    [
        b"not json at all",
        b'{"object": "customer", "id": "cus_1"}',
        b'{"object": "event", "id": "evt_1", "type": "charge.succeeded"}',
        b"[1, 2]",
    ],
)
def test_signed_body_that_is_not_an_event_is_400(client: FlaskClient, db: Database, payload: bytes) -> None:
    resp = post(client, payload, sign(payload))
    assert resp.status_code == 400
    assert "body" in resp.get_json()["errors"]
    assert count(db, StripeEvent) == 0


def test_body_over_one_mib_is_413(client: FlaskClient, db: Database) -> None:
    event = dict(CHARGE_EVENT, padding="x" * (1024 * 1024))
    body = body_of(event)
    resp = post(client, body, sign(body))
    assert resp.status_code == 413
    assert count(db, StripeEvent) == 0


def test_duplicate_delivery_answers_duplicate_and_changes_nothing(client: FlaskClient, db: Database) -> None:
    assert applied(client, CHARGE_EVENT) == "processed"
    with db.transaction(readonly=True) as session:
        before = session.scalar(select(Payment))
        assert before is not None
        snapshot = {c.key: getattr(before, c.key) for c in Payment.__table__.columns}
    resp = deliver(client, CHARGE_EVENT)
    assert resp.status_code == 200 and resp.get_json()["outcome"] == "duplicate"
    with db.transaction(readonly=True) as session:
        after = session.scalar(select(Payment))
        assert {c.key: getattr(after, c.key) for c in Payment.__table__.columns} == snapshot
        row = session.scalar(select(StripeEvent))
        assert row is not None and (row.deliveries, row.attempts) == (2, 1)


def test_unknown_type_is_stored_and_ignored(client: FlaskClient, db: Database) -> None:
    event = {**CHARGE_EVENT, "id": "evt_unknown_1", "type": "product.created"}
    resp = deliver(client, event)
    assert resp.status_code == 200 and resp.get_json()["outcome"] == "ignored"
    assert count(db, StripeEvent) == 1 and count(db, Payment) == 0


def test_livemode_mismatch_is_stored_and_ignored(
    make_settings: Callable[..., Settings], db: Database
) -> None:
    settings = make_settings({"PAYWALL_STRIPE_SECRET_KEY": "sk_live_abc"})
    client = create_app(settings, db=db).test_client()
    resp = deliver(client, CHARGE_EVENT)  # a test-mode event
    assert resp.get_json()["outcome"] == "ignored"
    with db.transaction(readonly=True) as session:
        row = session.scalar(select(StripeEvent))
        assert row is not None and row.status == "ignored" and "livemode" in (row.error or "")
    assert count(db, Payment) == 0
    test_key_client = create_app(
        make_settings({"PAYWALL_STRIPE_SECRET_KEY": "sk_test_abc"}), db=db
    ).test_client()
    other = {**CHARGE_EVENT, "id": "evt_same_mode"}
    assert applied(test_key_client, other) == "processed"


def test_handler_error_keeps_failed_row_then_replay_fixes_it(
    app: Flask, db: Database, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(session: Any, obj: Any, src: Any) -> str:
        sync.upsert_charge(session, obj, src)  # half the work, then a bug
        raise KeyError("amount_details")

    monkeypatch.setitem(handlers.HANDLERS, "charge.succeeded", broken)
    client = app.test_client()
    assert applied(client, CHARGE_EVENT) == "failed"
    with db.transaction(readonly=True) as session:
        row = session.scalar(select(StripeEvent))
        assert row is not None and row.status == "failed" and "KeyError" in (row.error or "")
    assert count(db, Payment) == 0, "the rolled-back transaction undid the handler's half-done work"
    # A redelivery is a duplicate: the fix comes from replay, not from Stripe.
    assert deliver(client, CHARGE_EVENT).get_json()["outcome"] == "duplicate"

    listed = runner.invoke(main, ["events", "list", "--status", "failed"])
    assert listed.exit_code == 0 and CHARGE_EVENT["id"] in listed.output and "KeyError" in listed.output

    monkeypatch.setitem(handlers.HANDLERS, "charge.succeeded", handlers.charge)
    result = runner.invoke(main, ["events", "replay", "--failed"])
    assert result.exit_code == 0, result.output
    assert "replayed 1: 1 processed" in result.output
    assert count(db, Payment) == 1
    with db.transaction(readonly=True) as session:
        row = session.scalar(select(StripeEvent))
        assert row is not None and (row.status, row.error, row.attempts) == ("processed", None, 2)


def test_unexpected_payload_is_failed_not_500(client: FlaskClient, db: Database) -> None:
    event = json.loads(json.dumps(CHARGE_EVENT))
    event["id"] = "evt_wrong_object"
    event["data"]["object"]["object"] = "invoice"
    assert applied(client, event) == "failed"


def test_database_failure_mid_batch_writes_nothing_then_the_next_batch_applies(
    app: Flask, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = derived.relink_payment

    def cut_off(session: Any, payment: Any) -> bool:
        real(session, payment)
        raise OperationalError("UPDATE payments", {}, Exception("server closed the connection unexpectedly"))

    # Patched where the batch's settle looks it up.
    monkeypatch.setattr(derived, "relink_payment", cut_off)
    client = app.test_client()
    resp = deliver(client, CHARGE_EVENT, apply=False)
    assert resp.status_code == 200 and resp.get_json()["outcome"] == "queued"
    with pytest.raises(TransientDatabaseError):
        drain(app)
    assert count(db, Payment) == 0
    assert status_of(app, CHARGE_EVENT["id"]) == "received", "left for the next batch"

    monkeypatch.setattr(derived, "relink_payment", real)
    assert drain(app) == {"processed": 1}
    assert count(db, StripeEvent) == 1 and count(db, Payment) == 1


def test_database_failure_while_recording_is_503_nothing_stored_then_redelivery_works(
    app: Flask, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Database.run_idempotent

    def gone(self: Database, work: Any, *, durable: bool = False) -> Any:
        raise OperationalError("INSERT INTO stripe_events", {}, Exception("could not connect to server"))

    monkeypatch.setattr(Database, "run_idempotent", gone)
    client = app.test_client()
    resp = deliver(client, CHARGE_EVENT)
    assert resp.status_code == 503 and resp.headers.get("Retry-After")
    assert count(db, StripeEvent) == 0

    monkeypatch.setattr(Database, "run_idempotent", real)
    assert applied(client, CHARGE_EVENT) == "processed"
    assert count(db, StripeEvent) == 1 and count(db, Payment) == 1


def test_events_api_is_admin_only_and_filters(
    client: FlaskClient, admin_key: dict[str, str], site_key: dict[str, str]
) -> None:
    for event in load_scenario("one_time_donation_checkout"):
        deliver(client, event)
    deliver(client, {**CHARGE_EVENT, "id": "evt_other", "type": "product.created"})
    assert client.get("/v1/events").status_code == 401
    assert client.get("/v1/events", headers=site_key).status_code == 403
    body = client.get("/v1/events", headers=admin_key).get_json()
    assert len(body["events"]) == 4 and body["next_before"] is None
    assert body["events"][0]["stripe_event_id"] == "evt_other"
    ignored = client.get("/v1/events?status=ignored", headers=admin_key).get_json()["events"]
    assert [e["stripe_event_id"] for e in ignored] == ["evt_other"]
    page = client.get("/v1/events?limit=2", headers=admin_key).get_json()
    assert len(page["events"]) == 2 and page["next_before"] is not None
    rest = client.get(f"/v1/events?limit=2&before={page['next_before']}", headers=admin_key).get_json()
    assert len(rest["events"]) == 2
    bad = client.get("/v1/events?status=weird", headers=admin_key)
    assert bad.status_code == 422 and "status" in bad.get_json()["errors"]


def test_replay_by_id_and_since_and_usage(client: FlaskClient, runner: CliRunner, db: Database) -> None:
    for event in load_scenario("one_time_donation_checkout"):
        deliver(client, event)
    one = runner.invoke(main, ["events", "replay", "--id", CHARGE_EVENT["id"]])
    assert one.exit_code == 0 and "replayed 1" in one.output
    since = runner.invoke(main, ["events", "replay", "--since", "2026-09-01"])
    assert since.exit_code == 0 and "replayed 3" in since.output
    assert runner.invoke(main, ["events", "replay"]).exit_code != 0
    assert runner.invoke(main, ["events", "replay", "--id", "evt_nope"]).exit_code != 0
    assert count(db, Payment) == 1


def test_livemode_event_under_a_test_key_is_ignored_and_creates_nothing(
    make_settings: Callable[..., Settings], db: Database
) -> None:
    """The guard works both ways: a live event reaching a test-mode deployment (a misconfigured
    endpoint) must not create a reader, customer, subscription, payment or mail."""
    client = create_app(make_settings({"PAYWALL_STRIPE_SECRET_KEY": "sk_test_abc"}), db=db).test_client()
    events = [
        {**e, "livemode": True}
        for e in load_scenario("monthly_subscription_checkout") + load_scenario("one_time_donation_checkout")
    ]
    for event in events:
        resp = deliver(client, event)
        assert resp.status_code == 200 and resp.get_json()["outcome"] == "ignored", event["type"]
    with db.engine.connect() as conn:
        rows = {
            table.name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            for table in Base.metadata.sorted_tables
        }
    assert rows.pop("stripe_events") == len(events)
    assert {name: n for name, n in rows.items() if n} == {}
    with db.transaction(readonly=True) as session:
        stored = list(session.scalars(select(StripeEvent)))
        assert all(e.status == "ignored" and "livemode True" in (e.error or "") for e in stored)


def test_answered_in_front_of_flask_with_request_id_and_metric(app: Flask, db: Database) -> None:
    """POST /webhooks/stripe never reaches Flask's request machinery (paywall/webhooks/endpoint.py)
    and keeps what it gave: the request id, nosniff, the latency metric under the route's path."""
    from prometheus_client import REGISTRY

    def refuse() -> None:
        raise AssertionError("reached Flask")

    app.before_request_funcs.setdefault(None, []).insert(0, refuse)
    client = app.test_client()
    labels = {"method": "POST", "route": "/webhooks/stripe", "status": "200"}
    before = REGISTRY.get_sample_value("paywall_http_request_duration_seconds_count", labels) or 0
    body = body_of(CHARGE_EVENT)
    resp = client.post(
        "/webhooks/stripe",
        data=body,
        headers={"Stripe-Signature": sign(body), "X-Request-ID": "abc123def456"},
        content_type="application/json",
    )
    assert resp.status_code == 200 and resp.get_json() == {"event": CHARGE_EVENT["id"], "outcome": "queued"}
    assert resp.headers["X-Request-ID"] == "abc123def456"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert REGISTRY.get_sample_value("paywall_http_request_duration_seconds_count", labels) == before + 1
    wrong = client.get("/webhooks/stripe")
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "OPTIONS, POST"
    # OPTIONS as Flask answered it before the route moved: 200 naming the methods.
    options = client.options("/webhooks/stripe")
    assert options.status_code == 200 and options.headers["Allow"] == "OPTIONS, POST"
    assert count(db, StripeEvent) == 1


def test_unusable_json_is_checked_before_the_signature_only_for_a_json_body(client: FlaskClient) -> None:
    """As before the route left Flask: a JSON body the parser crashes on is the 400 of every JSON
    route (naming the body); any other body goes to the signature check first."""
    nested = b"[" * 100_000 + b"]" * 100_000
    as_json = client.post("/webhooks/stripe", data=nested, content_type="application/json")
    assert as_json.status_code == 400 and as_json.get_json()["errors"] == {"body": ["Nested too deeply."]}
    as_text = client.post("/webhooks/stripe", data=nested, content_type="text/plain")
    assert as_text.status_code == 400 and "Stripe-Signature" in as_text.get_json()["errors"]
    signed = client.post(
        "/webhooks/stripe", data=nested, content_type="text/plain", headers={"Stripe-Signature": sign(nested)}
    )
    assert signed.status_code == 400 and signed.get_json()["errors"] == {"body": ["The body is not JSON."]}
