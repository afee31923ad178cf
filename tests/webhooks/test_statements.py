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
from paywall.webhooks import applier, inbox
from tests.support.stripe_events import body_of, load_scenario

# monthly_subscription_checkout, the first purchase of a subscription: 10 events. Recording each
# is one statement (the INSERT … ON CONFLICT that also counts a duplicate). Applying the ten in
# one batch costs FIRST_PURCHASE_BATCH_MAX statements in all, on SQLite (BEGIN IMMEDIATE
# included) and on PostgreSQL (the claim's FOR UPDATE and one advisory lock statement), against
# 115 when each event was applied in a transaction of its own, and 147 before that. The batch
# looks up the rows its events name once per table (rows.prefetch), flushes when a query needs
# it and once at the end, and settles derived facts once.
FIRST_PURCHASE_BATCH_MAX = 40


@contextmanager
def counted(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def listener(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    # On SQLite the durable engine is ``engine`` with options, sharing its listeners.
    engines = [db.engine] + ([db.durable_autocommit_engine] if db.dialect == "postgresql" else [])
    for engine in engines:
        sa_event.listen(engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        for engine in engines:
            sa_event.remove(engine, "before_cursor_execute", listener)


def record(db: Database, settings: Settings, event: dict[str, Any]) -> str:
    return inbox.accept(db, settings, body_of(event), event).outcome


def test_recording_an_event_is_one_statement_and_so_is_a_duplicate(db: Database, settings: Settings) -> None:
    (first, *_) = load_scenario("monthly_subscription_checkout")
    with counted(db) as seen:
        assert record(db, settings, first) == "queued"
    assert len(seen) == 1, seen
    with counted(db) as seen:
        assert record(db, settings, first) == "duplicate"
    assert len(seen) == 1, seen


def test_first_purchase_batch_statements_have_an_upper_bound(db: Database, settings: Settings) -> None:
    events = load_scenario("monthly_subscription_checkout")
    for event in events:
        record(db, settings, event)
    with counted(db) as seen:
        outcomes = applier.drain(db, settings)
    assert outcomes == {"processed": len(events)}
    # The drain's last claim finds nothing: one transaction of its own, not part of the batch.
    assert len(seen) <= FIRST_PURCHASE_BATCH_MAX + 3, (len(seen) / len(events), seen)
