"""The statements one applied event costs: an upper bound, so that a change that adds queries to
the sync's hot path shows here (a count, deterministic, not a time; bench/sync_statements.py lists
them per scenario)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event as sa_event

from paywall.config import Settings
from paywall.db import Database
from paywall.webhooks import inbox
from tests.support.stripe_events import load_scenario

# monthly_subscription_checkout, the first purchase of a subscription: 10 events, 115 statements on
# SQLite (BEGIN IMMEDIATE included) and on PostgreSQL (an advisory lock statement instead), against
# 147 before the inbox dropped its savepoint pair, merged its duplicate and erasure checks and the
# sync found the payments to re-derive once per event.
FIRST_PURCHASE_MAX_STATEMENTS = 115


@contextmanager
def counted(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def listener(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    sa_event.listen(db.engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        sa_event.remove(db.engine, "before_cursor_execute", listener)


def test_first_purchase_statements_have_an_upper_bound(db: Database, settings: Settings) -> None:
    events = load_scenario("monthly_subscription_checkout")
    with counted(db) as seen:
        outcomes = [inbox.receive(db, settings, event).outcome for event in events]
    assert "failed" not in outcomes
    assert len(seen) <= FIRST_PURCHASE_MAX_STATEMENTS, (len(seen) / len(events), seen)


def test_a_duplicate_costs_the_lock_the_check_and_one_update(db: Database, settings: Settings) -> None:
    (first, *_) = load_scenario("monthly_subscription_checkout")
    assert inbox.receive(db, settings, first).outcome == "processed"
    with counted(db) as seen:
        assert inbox.receive(db, settings, first).outcome == "duplicate"
    assert len(seen) == 3, seen
