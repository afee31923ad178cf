"""The applier on its own: a worker killed mid-batch loses nothing and applies nothing twice, a
bad event fails alone while the rest of its batch goes on, and ``paywall stripe apply --once``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import func, select

from paywall.cli import main
from paywall.config import Settings
from paywall.db import Database
from paywall.models import Payment, StripeEvent
from paywall.webhooks import applier, handlers
from tests.support.stripe_events import deliver, load_scenario

DONATION = load_scenario("one_time_donation_checkout")
PURCHASE = load_scenario("monthly_subscription_checkout")

# A worker that stops inside its batch, after the handler of the first charge wrote its payment
# (flushed to the database, not committed), and says so: the test kills it there.
STALLING_WORKER = textwrap.dedent(
    """
    import sys, time
    from paywall.config import load_settings
    from paywall.db import Database
    from paywall.webhooks import applier, handlers

    real = handlers.HANDLERS["charge.succeeded"]

    def stall(session, obj, src):
        outcome = real(session, obj, src)
        session.flush()
        print("in the batch", flush=True)
        time.sleep(120)
        return outcome

    handlers.HANDLERS["charge.succeeded"] = stall
    url = sys.argv[1]
    settings = load_settings(environ={"PAYWALL_DATABASE_URL": url})
    applier.drain(Database(url), settings)
    """
)


def count(db: Database, model: Any, *where: Any) -> int:
    with db.transaction(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


@pytest.mark.slow
def test_a_worker_killed_mid_batch_leaves_every_event_for_the_next_applied_once(
    app: Flask, db: Database, settings: Settings
) -> None:
    client = app.test_client()
    for event in DONATION + PURCHASE:
        assert deliver(client, event, apply=False).status_code == 200
    worker = subprocess.Popen(
        [sys.executable, "-c", STALLING_WORKER, db.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "in the batch"
        if db.dialect == "postgresql":
            # Meanwhile another applier skips the rows the stalled one holds: nothing to take.
            assert applier.apply_batch(db, settings).size == 0
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    events = len(DONATION) + len(PURCHASE)
    assert count(db, StripeEvent, StripeEvent.status == "received") == events, "nothing of the batch held"
    assert count(db, Payment) == 0

    deadline = time.monotonic() + 30  # SQLite: the killed writer's lock is released with its process
    while True:
        try:
            tally = applier.drain(db, settings)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert tally == {"processed": events}
    assert count(db, StripeEvent, StripeEvent.attempts == 1) == events, "each applied exactly once"
    assert count(db, Payment) == 2


def test_a_bad_event_fails_alone_and_the_rest_of_its_batch_is_applied(
    app: Flask, db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(session: Any, obj: Any, src: Any) -> str:
        raise KeyError("a field this code did not expect")

    monkeypatch.setitem(handlers.HANDLERS, "payment_intent.succeeded", broken)
    client = app.test_client()
    for event in DONATION + PURCHASE:
        deliver(client, event, apply=False)
    tally = applier.drain(db, settings)
    failed = [e["id"] for e in DONATION + PURCHASE if e["type"] == "payment_intent.succeeded"]
    assert tally == {"failed": len(failed), "processed": len(DONATION) + len(PURCHASE) - len(failed)}
    with db.transaction(readonly=True) as session:
        rows = session.execute(
            select(StripeEvent.stripe_event_id, StripeEvent.error).where(StripeEvent.status == "failed")
        )
        assert {event_id for event_id, error in rows if "KeyError" in (error or "")} == set(failed)
    assert count(db, Payment) == 2, "both payments synced from their charges"


def test_apply_once_from_the_command_line(
    app: Flask, db: Database, runner: CliRunner, make_settings: Callable[..., Settings]
) -> None:
    client = app.test_client()
    for event in DONATION:
        deliver(client, event, apply=False)
    result = runner.invoke(main, ["stripe", "apply", "--once", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert f"applied {len(DONATION)}: {len(DONATION)} processed" in result.output
    again = runner.invoke(main, ["stripe", "apply", "--once"])
    assert "applied 0: nothing waiting" in again.output


def test_a_failure_no_event_can_be_blamed_for_is_narrowed_down_one_event_at_a_time(
    app: Flask, db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Settling derived facts fails for one payment: the batch is applied again one event per
    transaction, the events that lead to that payment are failed, the others are applied."""
    from paywall.webhooks.sync import derived

    poisoned = next(e["data"]["object"]["id"] for e in DONATION if e["type"] == "charge.succeeded")
    real = derived.relink_payment

    def relink(session: Any, payment: Any) -> bool:
        if payment.stripe_charge_id == poisoned:
            raise ValueError("a derived fact this code cannot compute")
        return real(session, payment)

    monkeypatch.setattr(derived, "relink_payment", relink)
    client = app.test_client()
    for event in PURCHASE + DONATION:
        deliver(client, event, apply=False)
    tally = applier.drain(db, settings)
    assert sum(tally.values()) == len(PURCHASE) + len(DONATION), tally
    assert tally["failed"] >= 1 and tally["processed"] >= len(PURCHASE), tally
    with db.transaction(readonly=True) as session:
        failed = list(
            session.execute(select(StripeEvent.type, StripeEvent.error).where(StripeEvent.status == "failed"))
        )
        charges = set(session.scalars(select(Payment.stripe_charge_id)))
    assert all("ValueError" in (error or "") for _, error in failed), failed
    assert "charge.succeeded" in {event_type for event_type, _ in failed}
    assert poisoned not in charges, "nothing of the failed events was applied"
    assert len(charges) == 1, "the subscription's payment was applied"
