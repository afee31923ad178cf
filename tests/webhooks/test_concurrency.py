"""Concurrent deliveries: duplicates racing, and a first purchase's events all at once, while
two appliers drain the same backlog.

On PostgreSQL (CI runs it there too) the claim's SKIP LOCKED and the per-object advisory locks
must prevent deadlocks, unique violations, lost updates and double applies; on SQLite writers
queue on the database lock.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from paywall.context import db_of, settings_of
from paywall.db import Database
from paywall.models import OutboxMessage, Payment, Reader, StripeEvent, Subscription
from paywall.webhooks import applier, backlog
from tests.conftest import truncate_all
from tests.support.stripe_events import (
    assert_same_rows,
    body_of,
    deliver_all,
    load_scenario,
    mirror_rows,
    sign,
)
from tests.webhooks.test_scenarios import MONTHLY_SUB


def post_concurrently(
    app: Flask, events: list[dict[str, Any]], threads: int = 8, appliers: int = 2
) -> list[tuple[int, str]]:
    """Deliver ``events`` from ``threads`` clients started together while ``appliers`` applier
    loops drain the backlog; returns (status, outcome) once every event has been applied."""
    signed = [(body_of(e), e) for e in events]
    results: list[tuple[int, str]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def worker(index: int) -> None:
        client = app.test_client()
        barrier.wait()
        for body, _ in signed[index::threads]:
            resp = client.post(
                "/webhooks/stripe",
                data=body,
                headers={"Stripe-Signature": sign(body)},
                content_type="application/json",
            )
            with lock:
                results.append((resp.status_code, (resp.get_json() or {}).get("outcome", "")))

    stop = threading.Event()
    db, settings = db_of(app), settings_of(app)
    draining = [
        threading.Thread(
            target=applier.run, args=(db, settings, stop), kwargs={"limit": 5, "poll_seconds": 0.01}
        )
        for _ in range(appliers)
    ]
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in draining + pool:
        t.start()
    for t in pool:
        t.join(timeout=60)
    deadline = time.monotonic() + 60
    while waiting(db) and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    for t in draining:
        t.join(timeout=60)
    assert not waiting(db), "the appliers left events waiting"
    return results


def waiting(db: Database) -> int:
    with db.transaction(readonly=True) as session:
        return backlog.read(session).waiting


def test_concurrent_duplicates_store_one_event_and_one_payment(app: Flask, db: Database) -> None:
    event = load_scenario("one_time_donation_checkout")[0]
    results = post_concurrently(app, [event] * 16)
    assert [s for s, _ in results] == [200] * 16
    assert sorted(o for _, o in results) == ["duplicate"] * 15 + ["queued"]
    with db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(StripeEvent)) == 1
        assert session.scalar(select(func.count()).select_from(Payment)) == 1
        row = session.scalar(select(StripeEvent))
        assert row is not None and (row.deliveries, row.attempts, row.status) == (16, 1, "processed")


def test_first_purchase_race_all_events_at_once(app: Flask, db: Database) -> None:
    rng = random.Random(8731)
    deliver_all(
        app.test_client(),
        load_scenario("monthly_subscription_checkout") + load_scenario("one_time_donation_checkout"),
    )
    with db.transaction(readonly=True) as session:
        in_order = mirror_rows(session)
    for _ in range(3):
        truncate_all(db)
        events = load_scenario("monthly_subscription_checkout") + load_scenario("one_time_donation_checkout")
        events = events + events[::2]
        rng.shuffle(events)
        results = post_concurrently(app, events)
        assert all(s == 200 for s, _ in results), results
        with db.transaction(readonly=True) as session:
            assert session.scalar(select(func.count()).select_from(StripeEvent)) == 13
            # Each event applied exactly once, whichever applier took it.
            attempts = set(session.scalars(select(StripeEvent.attempts)))
            statuses = set(session.scalars(select(StripeEvent.status)))
            assert (attempts, statuses) == ({1}, {"processed"})
            check_a_and_b(session)
            # Every stored column, not only the checked state, matches the in-order replay.
            assert_same_rows(mirror_rows(session), in_order)


def check_a_and_b(session: Any) -> None:
    payments = {p.stripe_charge_id: p for p in session.scalars(select(Payment))}
    assert set(payments) == {"ch_1uTR50Qz8wLm3xTnXwfooTjn", "ch_1CqRspQz8wLm3xTnAmmTDyRh"}
    donation = payments["ch_1CqRspQz8wLm3xTnAmmTDyRh"]
    assert (donation.kind, donation.campaign, donation.email) == (
        "donation",
        "fall-appeal-2026",
        "sam.okafor@example.net",
    )
    plan = payments["ch_1uTR50Qz8wLm3xTnXwfooTjn"]
    assert (plan.kind, plan.stripe_invoice_id, plan.stripe_subscription_id) == (
        "subscription",
        "in_1JfITSQz8wLm3xTn1HXTOk6l",
        MONTHLY_SUB,
    )
    sub = session.scalar(select(Subscription).where(Subscription.stripe_subscription_id == MONTHLY_SUB))
    assert sub is not None and sub.status == "active" and sub.current_period_end is not None
    readers = set(
        session.scalars(select(Reader.external_id).where(Reader.id.in_([plan.reader_id, sub.reader_id])))
    )
    assert readers == {"member_8731"}
    assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 1
