"""payout.* webhooks record the payout (its transactions come from ``paywall stripe sync``)."""

from __future__ import annotations

import copy
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select

from paywall.db import Database
from paywall.models import Payout, PayoutTransaction
from tests.support.stripe_events import applied, scenario_file
from tests.support.stripe_payouts import payout

PAYOUT_ID = "po_1WebhookQz8wLm3xTn"


def _event(type_: str, obj: dict[str, Any], n: int, created: int) -> dict[str, Any]:
    """A payout event in the envelope the scenarios' events have."""
    event: dict[str, Any] = copy.deepcopy(scenario_file("one_time_donation_checkout")[0])
    event.update(id=f"evt_1Payout{n}Qz8wLm3xTn", type=type_, created=created, data={"object": obj})
    event["request"] = {"id": None, "idempotency_key": None}  # automatic payouts: no API request
    return event


def test_payout_events_record_the_newest_state_in_any_order(client: FlaskClient, db: Database) -> None:
    in_transit = payout(
        PAYOUT_ID, amount=6052, currency="usd", arrival_date=1_789_000_000, status="in_transit"
    )
    in_transit["reconciliation_status"] = "in_progress"
    paid = {**in_transit, "status": "paid"}
    failed = {**paid, "status": "failed", "failure_code": "account_closed"}
    reconciled = {**failed, "reconciliation_status": "completed"}
    events = [
        _event("payout.reconciliation_completed", reconciled, 4, 1_789_100_000),
        _event("payout.created", in_transit, 1, 1_788_900_000),
        _event("payout.failed", failed, 3, 1_789_050_000),
        _event("payout.paid", paid, 2, 1_789_000_000),
    ]
    # The webhook answers `queued`; each event is applied (as the applier would) before the next.
    assert [applied(client, e) for e in events] == ["processed"] * 4
    with db.transaction(readonly=True) as session:
        (row,) = session.scalars(select(Payout))
        assert (row.stripe_payout_id, row.status, row.reconciliation_status, row.failure_code) == (
            PAYOUT_ID,
            "failed",
            "completed",
            "account_closed",
        )
        assert (row.amount_minor, row.currency, row.automatic, row.livemode) == (6052, "usd", True, False)
        assert row.arrival_date.timestamp() == 1_789_000_000
        # The webhook lists no transactions; the next `paywall stripe sync` does.
        assert row.transactions_synced_at is None
        assert session.scalars(select(PayoutTransaction)).all() == []


def test_a_payout_event_with_an_absurd_amount_fails_and_writes_nothing(
    client: FlaskClient, db: Database
) -> None:
    bad = payout(PAYOUT_ID, amount=6052, currency="usd", arrival_date=1_789_000_000)
    bad["amount"] = 10.5
    assert applied(client, _event("payout.paid", bad, 9, 1_789_000_000)) == "failed"
    with db.transaction(readonly=True) as session:
        assert session.scalars(select(Payout)).all() == []


def test_a_failure_code_from_a_losing_event_of_the_same_second_is_kept(
    client: FlaskClient, db: Database
) -> None:
    """payout.created already saying `failed` (no code yet) and payout.failed with the code, in the
    same second: the event id breaks the tie, and the code must survive whichever wins (as
    localstripe sends them for a payout that fails at once)."""
    created = payout(PAYOUT_ID, amount=1300, currency="eur", arrival_date=1_789_000_000, status="failed")
    failed = {**created, "failure_code": "could_not_process"}
    # "evt_1Payout8..." sorts after "evt_1Payout7...": applied first, it wins the tie.
    assert applied(client, _event("payout.created", created, 8, 1_789_000_000)) == "processed"
    assert applied(client, _event("payout.failed", failed, 7, 1_789_000_000)) == "processed"
    with db.transaction(readonly=True) as session:
        (row,) = session.scalars(select(Payout))
        assert (row.status, row.failure_code) == ("failed", "could_not_process")
