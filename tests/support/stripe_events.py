"""Stripe test helpers other test files may import: load scenarios, sign and deliver events, and
derive a pre-2025-shaped copy of a scenario."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import stripe
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from paywall.config import Settings
from paywall.context import db_of, settings_of
from paywall.db import Database
from paywall.models import StripeEvent
from paywall.webhooks import applier
from tests.conftest import FIXTURES, WEBHOOK_SECRET

SCENARIOS = FIXTURES / "scenarios"
# Scenario -> the scenario to replay first (fixtures README, "Base"). A scenario is named by its
# fixture file, without the letter that orders the files: a_monthly_subscription_checkout.json is
# "monthly_subscription_checkout".
BASES = {
    "renewal_failed_then_recovered": "monthly_subscription_checkout",
    "cancel_at_period_end_then_deleted": "monthly_subscription_checkout",
    "upgrade_with_proration": "monthly_subscription_checkout",
    "donation_refund": "one_time_donation_checkout",
    "dispute_lost": "one_time_donation_checkout",
    "partial_refund_on_the_charge_only": "one_time_donation_checkout",
}


def scenario_file(scenario: str) -> Any:
    (path,) = SCENARIOS.glob(f"?_{scenario}.json")
    return json.loads(path.read_text())


def load_scenario(scenario: str) -> list[dict[str, Any]]:
    """The events of a scenario, preceded by those of its base scenario, oldest first."""
    events: list[dict[str, Any]] = []
    if scenario in BASES:
        events.extend(scenario_file(BASES[scenario]))
    events.extend(scenario_file(scenario))
    return events


def with_metadata(
    events: list[dict[str, Any]], metadata: dict[str, str], *, session_only: bool = False
) -> list[dict[str, Any]]:
    """A copy of a scenario as if its Checkout had been made with ``metadata`` (say, the appeal's
    ``appeal_experiment``/``appeal_variant``/``appeal_channel``): where paywall's Checkout puts it
    (paywall/checkout/sessions.py), on every state of the Checkout Session and of the payment
    intent (mode payment) or subscription (mode subscription) it made; with ``session_only``, on
    the session alone (a Checkout made without payment_intent_data/subscription_data metadata)."""
    events = copy.deepcopy(events)
    objects: set[str] = set()
    for e in events:
        obj = e["data"]["object"]
        if obj.get("object") == "checkout.session":
            objects.add(obj["id"])
            made = obj.get("payment_intent") if obj.get("mode") == "payment" else obj.get("subscription")
            if made and not session_only:
                objects.add(made if isinstance(made, str) else made["id"])
    for e in events:
        obj = e["data"]["object"]
        if obj.get("id") in objects:
            obj["metadata"] = {**(obj.get("metadata") or {}), **metadata}
    return events


def body_of(event: dict[str, Any]) -> bytes:
    """Serialize once; the signature covers exactly these bytes."""
    return json.dumps(event, separators=(",", ":")).encode()


def sign(body: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """A Stripe-Signature header for ``body`` (stripe-python's own test signer)."""
    return str(
        stripe.WebhookSignature.generate_signature_header(
            body.decode(), secret, timestamp=int(time.time()) if timestamp is None else timestamp
        )
    )


def deliver(
    client: FlaskClient,
    event: dict[str, Any],
    secret: str = WEBHOOK_SECRET,
    header: str | None = None,
    *,
    apply: bool = True,
) -> TestResponse:
    """POST one event, signed, as Stripe would; then, unless ``apply`` is false, run the applier
    until nothing waits (what ``paywall serve``'s applier does within a moment), so the test
    reads the synced state. The answer is the webhook's own (``queued``, ``duplicate``, …)."""
    body = body_of(event)
    resp = client.post(
        "/webhooks/stripe",
        data=body,
        headers={"Stripe-Signature": header or sign(body, secret)},
        content_type="application/json",
    )
    if apply and resp.status_code == 200:
        drain(client.application)
    return resp


def drain(app: Flask) -> Counter[str]:
    """Apply every recorded event that waits, as the applier would; the outcomes counted."""
    return applier.drain(db_of(app), settings_of(app))


@contextmanager
def applying(db: Database, settings: Settings) -> Iterator[None]:
    """An applier loop in a thread for the block, as ``paywall serve`` runs beside its server:
    for tests of a live server that Stripe (or localstripe) posts events to."""
    stop = threading.Event()
    thread = threading.Thread(
        target=applier.run, args=(db, settings, stop), kwargs={"poll_seconds": 0.02}, daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


def status_of(app: Flask, event_id: str) -> str:
    """The inbox status of a stored event: received, processed, ignored or failed."""
    with db_of(app).transaction(readonly=True) as session:
        status = session.scalar(select(StripeEvent.status).where(StripeEvent.stripe_event_id == event_id))
    assert status is not None, f"no stored event {event_id}"
    return status


def applied(client: FlaskClient, event: dict[str, Any]) -> str:
    """Deliver one event and apply it; the outcome: ``duplicate`` when the answer said so, else
    the status applying it left (processed, ignored or failed)."""
    resp = deliver(client, event)
    assert resp.status_code == 200, (event["id"], event["type"], resp.get_json())
    answer = resp.get_json()["outcome"]
    return answer if answer == "duplicate" else status_of(client.application, event["id"])


def deliver_all(client: FlaskClient, events: list[dict[str, Any]]) -> list[str]:
    """Deliver events in the given order, each applied before the next; every answer must be
    2xx. Returns the outcomes (see ``applied``)."""
    return [applied(client, event) for event in events]


LEGACY_API_VERSION = "2024-06-20"


def to_legacy(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same scenario as an endpoint on a pre-2025 API version would receive it.

    Invoices name their subscription, charge and payment intent at the top level (no ``parent``,
    no ``invoice_payment.paid`` events); charges and intents name their invoice; subscriptions carry
    ``current_period_*``, ``plan`` and ``quantity`` at the top level; invoice lines carry ``price``.
    """
    events = copy.deepcopy(events)
    invoice_pi: dict[str, str] = {}
    pi_charge: dict[str, str] = {}
    for e in events:
        obj = e["data"]["object"]
        if e["type"] == "invoice_payment.paid":
            invoice_pi[obj["invoice"]] = obj["payment"]["payment_intent"]
        if obj.get("object") == "payment_intent" and obj.get("status") == "succeeded":
            pi_charge[obj["id"]] = obj["latest_charge"]
    pi_invoice = {pi: inv for inv, pi in invoice_pi.items()}
    out = []
    for e in events:
        if e["type"] == "invoice_payment.paid":
            continue
        e["api_version"] = LEGACY_API_VERSION
        obj = e["data"]["object"]
        kind = obj.get("object")
        if kind == "invoice":
            parent = obj.pop("parent", None) or {}
            details = parent.get("subscription_details") or {}
            obj["subscription"] = details.get("subscription")
            pi = invoice_pi.get(obj["id"]) if obj.get("status") == "paid" else None
            obj["payment_intent"] = pi
            obj["charge"] = pi_charge.get(pi) if pi else None
            obj["paid"] = obj.get("status") == "paid"
            for line in obj.get("lines", {}).get("data", []):
                pricing = line.pop("pricing", None) or {}
                price = (pricing.get("price_details") or {}).get("price")
                line["price"] = {"id": price, "object": "price"} if price else None
                line.pop("parent", None)
        elif kind in ("charge", "payment_intent"):
            pi = obj["id"] if kind == "payment_intent" else obj.get("payment_intent")
            obj["invoice"] = pi_invoice.get(pi)
        elif kind == "subscription":
            items = obj.get("items", {}).get("data", [])
            if items:
                item = items[0]
                obj["current_period_start"] = item.pop("current_period_start", None)
                obj["current_period_end"] = item.pop("current_period_end", None)
                obj["plan"] = item.get("plan")
                obj["quantity"] = item.get("quantity")
            for item in items[1:]:
                item.pop("current_period_start", None)
                item.pop("current_period_end", None)
        out.append(e)
    return out


# --- every stored column, for comparing two replays of the same events ----------------------

# The tables the sync mirrors from Stripe (plus the readers it creates on the fly). The inbox
# (stripe_events) is left out: it records deliveries (received_at, processed_at, attempts,
# deliveries), which legitimately differ with duplicates and order.
MIRRORED_TABLES = (
    "readers",
    "stripe_customers",
    "subscriptions",
    "stripe_prices",
    "invoices",
    "payments",
    "refunds",
    "disputes",
    "checkout_sessions",
)
# Columns left out of the comparison, each with why it may differ between two correct replays.
EXCLUDED_COLUMNS: dict[str, dict[str, str]] = {
    "*": {"id": "surrogate key, numbered in insertion order (reader_id is compared as external_id)"},
    "readers": {
        "created_at": "wall-clock time this replay first met the reader",
        "updated_at": "wall-clock time of the last write, not a Stripe fact",
    },
}


def mirror_rows(session: Any) -> dict[str, list[dict[str, Any]]]:
    """Every row and column of the mirrored tables, minus ``EXCLUDED_COLUMNS``; ``reader_id``
    becomes the reader's external id, and rows are sorted by their remaining values."""
    from sqlalchemy import select

    from paywall.db import Base
    from paywall.models import Reader

    external = {rid: ext for rid, ext in session.execute(select(Reader.id, Reader.external_id))}
    dump: dict[str, list[dict[str, Any]]] = {}
    for name in MIRRORED_TABLES:
        table = Base.metadata.tables[name]
        skip = {**EXCLUDED_COLUMNS["*"], **EXCLUDED_COLUMNS.get(name, {})}
        rows = []
        for found in session.execute(select(table)).mappings():
            row = {k: v for k, v in found.items() if k not in skip}
            if "reader_id" in row:
                row["reader_id"] = external.get(row["reader_id"])
            rows.append(row)
        dump[name] = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))
    return dump


def assert_same_rows(got: dict[str, list[dict[str, Any]]], want: dict[str, list[dict[str, Any]]]) -> None:
    """Table by table, row by row, so a failure names the column that depends on delivery order."""
    for table in want:
        assert len(got[table]) == len(want[table]), table
        for got_row, want_row in zip(got[table], want[table], strict=True):
            differ = {k: (got_row[k], want_row[k]) for k in want_row if got_row[k] != want_row[k]}
            assert not differ, (table, differ)
