"""Absurd values in a genuinely signed event (issue 13, point 5): recorded ``failed`` naming the
field, answered 2xx, nothing coerced, nothing of the event applied.

Each case takes a real scenario event, changes one field, signs and POSTs it like Stripe would."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import select, text

from paywall.cli import main
from paywall.db import Base, Database
from paywall.models import StripeEvent
from tests.support.stripe_events import applied, body_of, deliver, deliver_all, drain, load_scenario, sign

DELETE = object()
LONG_ID = "ch_" + "x" * 300

# (scenario, event type, path in data.object, absurd value)
CASES: list[tuple[str, str, str, Any]] = [
    ("one_time_donation_checkout", "charge.succeeded", "amount", -5000),
    ("one_time_donation_checkout", "charge.succeeded", "amount", 12.99),
    ("one_time_donation_checkout", "charge.succeeded", "amount", "5000"),
    ("one_time_donation_checkout", "charge.succeeded", "amount", 9e18),
    ("one_time_donation_checkout", "charge.succeeded", "amount", 9_000_000_000_000_000_000),
    ("one_time_donation_checkout", "charge.succeeded", "amount", 10**13),
    ("one_time_donation_checkout", "charge.succeeded", "amount", float("nan")),
    ("one_time_donation_checkout", "charge.succeeded", "amount", True),
    ("one_time_donation_checkout", "charge.succeeded", "amount_captured", 4999.5),
    ("one_time_donation_checkout", "charge.succeeded", "amount_refunded", float("inf")),
    ("one_time_donation_checkout", "charge.succeeded", "currency", DELETE),
    ("one_time_donation_checkout", "charge.succeeded", "currency", None),
    ("one_time_donation_checkout", "charge.succeeded", "currency", "USD"),
    ("one_time_donation_checkout", "charge.succeeded", "currency", "usdx"),
    ("one_time_donation_checkout", "charge.succeeded", "currency", "u\x00d"),
    ("one_time_donation_checkout", "charge.succeeded", "currency", 840),
    ("one_time_donation_checkout", "charge.succeeded", "created", 10**12),
    ("one_time_donation_checkout", "charge.succeeded", "created", -86_400),
    ("one_time_donation_checkout", "charge.succeeded", "created", 1788633095.5),
    ("one_time_donation_checkout", "charge.succeeded", "created", True),
    ("one_time_donation_checkout", "charge.succeeded", "created", 0),
    ("one_time_donation_checkout", "charge.succeeded", "id", LONG_ID),
    ("one_time_donation_checkout", "charge.succeeded", "id", "ch_\x1b[31m"),
    ("one_time_donation_checkout", "charge.succeeded", "payment_intent", "pi_" + "y" * 300),
    ("one_time_donation_checkout", "charge.succeeded", "balance_transaction", 12345),
    ("one_time_donation_checkout", "charge.succeeded", "billing_details.name", "Sam\x07Okafor"),
    ("one_time_donation_checkout", "charge.succeeded", "metadata.campaign", "c" * 101),
    ("one_time_donation_checkout", "payment_intent.succeeded", "amount_received", -1),
    ("one_time_donation_checkout", "checkout.session.completed", "amount_total", 50.0),
    ("one_time_donation_checkout", "checkout.session.completed", "currency", "US$"),
    ("one_time_donation_checkout", "checkout.session.completed", "client_reference_id", "member\n8731"),
    ("donation_refund", "refund.created", "currency", DELETE),
    ("donation_refund", "refund.created", "amount", "5000"),
    ("dispute_lost", "charge.dispute.created", "balance_transactions[0].fee", "1500"),
    ("dispute_lost", "charge.dispute.created", "amount", -5000),
    ("monthly_subscription_checkout", "invoice.paid", "amount_paid", 15.0),
    ("monthly_subscription_checkout", "invoice.paid", "currency", DELETE),
    (
        "monthly_subscription_checkout",
        "customer.subscription.created",
        "items.data[0].price.unit_amount",
        1e21,
    ),
    (
        "monthly_subscription_checkout",
        "customer.subscription.created",
        "items.data[0].current_period_end",
        2**40,
    ),
    ("monthly_subscription_checkout", "customer.subscription.created", "items.data[0].quantity", 1.5),
    ("monthly_subscription_checkout", "invoice.paid", "attempt_count", "1"),
]
STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def steps(path: str) -> list[str | int]:
    return [int(index) if index else key for key, index in STEP.findall(path)]


def mutate(event: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``event`` with ``data.object.<path>`` set to ``value`` (or removed)."""
    event = copy.deepcopy(event)
    *parents, last = steps(path)
    target: Any = event["data"]["object"]
    for step in parents:
        target = target[step]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return event


def dump(db: Database) -> dict[str, list[str]]:
    """Every row of every table but the inbox (and the API keys), to show an event left nothing."""
    with db.engine.connect() as conn:
        return {
            t.name: sorted(map(repr, conn.execute(select(t)).all()))
            for t in Base.metadata.sorted_tables
            if t.name not in ("stripe_events", "api_keys")
        }


def setup(client: FlaskClient, scenario: str, event_type: str) -> dict[str, Any]:
    """Deliver the scenario (base included) up to the event of ``event_type``; return that event."""
    events = load_scenario(scenario)
    index = next(i for i, e in enumerate(events) if e["type"] == event_type)
    deliver_all(client, events[:index])
    return events[index]


def case_id(case: tuple[str, str, str, Any]) -> str:
    scenario, event_type, path, value = case
    shown = "missing" if value is DELETE else repr(value)[:20]
    return f"{scenario}-{event_type}-{path}={shown}"


@pytest.mark.parametrize(("scenario", "event_type", "path", "value"), CASES, ids=map(case_id, CASES))
def test_absurd_value_in_signed_event_is_failed_naming_the_field(
    client: FlaskClient,
    db: Database,
    admin_key: dict[str, str],
    scenario: str,
    event_type: str,
    path: str,
    value: Any,
) -> None:
    event = mutate(setup(client, scenario, event_type), path, value)
    event["id"] = "evt_absurd_value"
    before = dump(db)

    resp = deliver(client, event)

    assert resp.status_code == 200, resp.get_json()
    # Recorded at once; applying it fails on the absurd value, and the inbox says so.
    assert resp.get_json() == {"event": "evt_absurd_value", "outcome": "queued"}
    listed = client.get("/v1/events?status=failed", headers=admin_key).get_json()["events"]
    assert [e["stripe_event_id"] for e in listed] == ["evt_absurd_value"]
    error = listed[0]["error"]
    kind, where, _ = error.split(": ", 2)
    # A shared value (True, a small int) may be in several fields: all of them are named.
    assert kind == "InvalidField" and f"data.object.{path}" in where.removeprefix("one of ").split(", "), (
        error
    )
    assert "Okafor" not in error and "\x00" not in error, "no value echoed into the error"
    assert dump(db) == before, "nothing of the event was applied"


def test_absurd_value_is_not_coerced_by_replay(client: FlaskClient, db: Database, runner: CliRunner) -> None:
    """A failed event stays failed when replayed: 12.99 never becomes 12."""
    event = mutate(load_scenario("one_time_donation_checkout")[0], "amount_captured", 12.99)
    assert applied(client, event) == "failed"
    result = runner.invoke(main, ["events", "replay", "--failed"])
    assert result.exit_code == 0 and "1 failed" in result.output, result.output
    with db.transaction(readonly=True) as session:
        row = session.scalar(select(StripeEvent))
        assert row is not None and row.status == "failed" and row.attempts == 2
        assert session.scalar(text("SELECT count(*) FROM payments")) == 0


def test_nan_in_a_signed_event_is_stored_and_failed(client: FlaskClient, db: Database) -> None:
    """Python's json reads NaN; PostgreSQL's json type does not: the stored copy keeps it as text."""
    event = load_scenario("one_time_donation_checkout")[0]
    body = body_of(event).replace(b'"amount":5000,', b'"amount":NaN,', 1)
    assert b"NaN" in body
    resp = deliver_raw(client, body)
    assert resp.status_code == 200 and resp.get_json()["outcome"] == "queued"
    drain(client.application)
    with db.transaction(readonly=True) as session:
        row = session.scalar(select(StripeEvent))
        assert row is not None and row.error is not None
        # The applier reads the stored copy, where NaN is the text "NaN": still not an amount.
        assert row.error.startswith("InvalidField: data.object.amount: ")
        assert row.payload["data"]["object"]["amount"] == "NaN"


def deliver_raw(client: FlaskClient, body: bytes) -> Any:
    return client.post(
        "/webhooks/stripe",
        data=body,
        headers={"Stripe-Signature": sign(body)},
        content_type="application/json",
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "evt_" + "x" * 300),
        ("id", "evt_\x00"),
        ("created", 10**15),
        ("created", True),
        ("created", 1.5),
    ],
)
def test_absurd_event_id_or_created_is_400_naming_the_field(
    client: FlaskClient, db: Database, field: str, value: Any
) -> None:
    """The envelope keys the inbox row: an absurd one cannot be recorded, so it is refused, not a 500."""
    event = {**load_scenario("one_time_donation_checkout")[0], field: value}
    resp = deliver_raw(client, json.dumps(event).encode())
    assert resp.status_code == 400, resp.get_json()
    assert field in resp.get_json()["errors"]
    with db.transaction(readonly=True) as session:
        assert session.scalar(text("SELECT count(*) FROM stripe_events")) == 0


@pytest.mark.parametrize(("depth", "status"), [(900, 200), (100_000, 400)])
def test_deeply_nested_signed_event_is_never_a_500(
    client: FlaskClient, db: Database, depth: int, status: int
) -> None:
    """Nested past what Python's json parses (RecursionError): a 400 "not JSON"; within it: stored."""
    body = body_of(load_scenario("one_time_donation_checkout")[0]).replace(
        b'"metadata":{}', b'"metadata":{"deep":' + b"[" * depth + b"]" * depth + b"}", 1
    )
    resp = deliver_raw(client, body)
    assert resp.status_code == status, resp.get_data()[:300]
