"""The applier's backlog, seen from outside: /metrics gauges, /readyz degraded past the bound, and
the lag of first applies (replays left out)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from flask.testing import FlaskClient
from sqlalchemy import update

from paywall import clock
from paywall.app import create_app
from paywall.config import Settings
from paywall.db import Database
from paywall.models import StripeEvent
from paywall.webhooks import backlog
from tests.support.stripe_events import deliver, drain, load_scenario

EVENTS = load_scenario("one_time_donation_checkout")


def age_waiting(db: Database, seconds: float) -> None:
    """Make every waiting event look as if it was recorded ``seconds`` ago."""
    with db.transaction() as session:
        session.execute(
            update(StripeEvent)
            .where(StripeEvent.status == "received")
            .values(received_at=clock.now() - dt.timedelta(seconds=seconds))
        )


def test_backlog_counts_waiting_events_and_the_lag_of_applied_ones(client: FlaskClient, db: Database) -> None:
    for event in EVENTS:
        assert deliver(client, event, apply=False).get_json()["outcome"] == "queued"
    age_waiting(db, 2.5)
    with db.transaction(readonly=True) as session:
        waiting = backlog.read(session)
    assert waiting.waiting == len(EVENTS) and 2.5 <= waiting.oldest_seconds < 10
    assert waiting.lag_p99 is None and waiting.applied_recently == 0

    assert drain(client.application) == {"processed": len(EVENTS)}
    with db.transaction(readonly=True) as session:
        after = backlog.read(session)
    assert (after.waiting, after.oldest_seconds, after.applied_recently) == (0, 0.0, len(EVENTS))
    assert after.lag_p50 is not None and after.lag_p99 is not None
    assert 2.5 <= after.lag_p50 <= after.lag_p99 < 10


def test_metrics_show_the_backlog_and_the_lag(client: FlaskClient, db: Database) -> None:
    deliver(client, EVENTS[0], apply=False)
    text = client.get("/metrics").get_data(as_text=True)
    assert "paywall_stripe_events_waiting 1.0" in text
    assert "paywall_stripe_oldest_waiting_seconds" in text
    drain(client.application)
    text = client.get("/metrics").get_data(as_text=True)
    assert "paywall_stripe_events_waiting 0.0" in text
    assert 'paywall_stripe_apply_lag_seconds{quantile="0.99"}' in text
    assert "paywall_stripe_applied_recently 1.0" in text


def test_readyz_says_degraded_past_the_configured_lag_and_ok_once_applied(
    make_settings: Callable[..., Settings], db: Database
) -> None:
    settings = make_settings({"PAYWALL__STRIPE__MAX_APPLY_LAG_SECONDS": "30"})
    client = create_app(settings, db=db).test_client()
    deliver(client, EVENTS[0], apply=False)
    body = client.get("/readyz").get_json()
    assert (body["status"], body["stripe_sync"], body["waiting"]) == ("ok", "ok", 1)

    age_waiting(db, 31)
    resp = client.get("/readyz")
    # Still 200: the server records events and answers readers; the applier needs a look.
    assert resp.status_code == 200
    body = resp.get_json()
    assert (body["status"], body["stripe_sync"], body["waiting"]) == ("degraded", "lagging", 1)
    assert body["oldest_waiting_seconds"] >= 31

    drain(client.application)
    body = client.get("/readyz").get_json()
    assert (body["status"], body["stripe_sync"], body["waiting"]) == ("ok", "ok", 0)


def test_a_replayed_event_does_not_count_as_lag(client: FlaskClient, db: Database) -> None:
    deliver(client, EVENTS[0], apply=False)
    age_waiting(db, 3)  # recorded 3 s ago, applied now: a real lag of 3 s
    drain(client.application)
    with db.transaction() as session:
        assert backlog.read(session).applied_recently == 1
        session.execute(update(StripeEvent).values(status="received"))
    drain(client.application)  # the replay: its second apply
    with db.transaction(readonly=True) as session:
        assert backlog.read(session).applied_recently == 0
