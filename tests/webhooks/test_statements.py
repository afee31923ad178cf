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
# is one statement (INSERT … ON CONFLICT; a duplicate is counted with one UPDATE more on
# PostgreSQL, and by the same statement's DO UPDATE on SQLite). Applying the ten in
# one batch costs FIRST_PURCHASE_BATCH_MAX statements in all, on SQLite (BEGIN IMMEDIATE
# included) and on PostgreSQL (the claim's FOR UPDATE and one advisory lock statement), against
# 115 when each event was applied in a transaction of its own, and 147 before that. The batch
# looks up the rows its events name once per table (rows.prefetch), flushes when a query needs
# it and once at the end, and settles derived facts once.
FIRST_PURCHASE_BATCH_MAX = 40


@contextmanager
def counted(db: Database) -> Iterator[list[str]]:
    """Every statement sent to the database meanwhile. On PostgreSQL at the driver (psycopg's
    cursor), which also sees the inbox's INSERT, sent on the driver's cursor past SQLAlchemy; on
    SQLite at SQLAlchemy's cursor events."""
    seen: list[str] = []
    # Connect both pools first: a new connection's own set-up queries are not the work counted.
    db.run_idempotent(lambda conn: None, durable=True)
    with db.transaction(readonly=True):
        pass
    if db.dialect == "postgresql":
        import psycopg

        real_execute, real_executemany = psycopg.Cursor.execute, psycopg.Cursor.executemany

        def execute(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(str(query))
            return real_execute(cursor, query, *args, **kwargs)

        def executemany(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(str(query))
            return real_executemany(cursor, query, *args, **kwargs)

        psycopg.Cursor.execute = execute  # type: ignore[method-assign,assignment]
        psycopg.Cursor.executemany = executemany  # type: ignore[method-assign,assignment]
        try:
            yield seen
        finally:
            psycopg.Cursor.execute = real_execute  # type: ignore[method-assign]
            psycopg.Cursor.executemany = real_executemany  # type: ignore[method-assign]
        return

    def listener(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    sa_event.listen(db.engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        sa_event.remove(db.engine, "before_cursor_execute", listener)


def record(db: Database, settings: Settings, event: dict[str, Any]) -> str:
    return inbox.accept(db, settings, body_of(event), event).outcome


def test_recording_an_event_is_one_statement_and_a_duplicate_at_most_two(
    db: Database, settings: Settings
) -> None:
    (first, *_) = load_scenario("monthly_subscription_checkout")
    with counted(db) as seen:
        assert record(db, settings, first) == "queued"
    assert len(seen) == 1, seen
    with counted(db) as seen:
        assert record(db, settings, first) == "duplicate"
    assert len(seen) == (2 if db.dialect == "postgresql" else 1), seen


def test_first_purchase_batch_statements_have_an_upper_bound(db: Database, settings: Settings) -> None:
    events = load_scenario("monthly_subscription_checkout")
    for event in events:
        record(db, settings, event)
    with counted(db) as seen:
        outcomes = applier.drain(db, settings)
    assert outcomes == {"processed": len(events)}
    # The drain's last claim finds nothing: one transaction of its own, not part of the batch.
    assert len(seen) <= FIRST_PURCHASE_BATCH_MAX + 3, (len(seen) / len(events), seen)


def test_a_batch_of_purchases_writes_each_table_in_one_statement(db: Database, settings: Settings) -> None:
    """Ten first purchases in one batch: each table's new rows are one multi-row INSERT and their
    payments one look-up each of invoices and Checkout Sessions, whatever the number of purchases
    (a reader look-up used to flush the batch once per purchase: an INSERT per row and table)."""
    import json

    text = json.dumps(load_scenario("monthly_subscription_checkout"))
    for i in range(10):
        copy = (
            text.replace("Qz8wLm3xTn", f"B{i:07d}x")
            .replace("cus_ZDb1GURItsMuYl", f"cus_batch{i:07d}")
            .replace("member_8731", f"member_batch_{i}")
        )
        for event in json.loads(copy):
            record(db, settings, event)
    with counted(db) as seen:
        assert applier.drain(db, settings) == {"processed": 100}

    def starting(prefix: str) -> int:
        return sum(1 for s in seen if " ".join(s.split()).startswith(prefix))

    if db.dialect == "postgresql":  # SQLite's driver takes one row per INSERT … RETURNING
        for table in ("payments", "invoices", "subscriptions", "stripe_customers", "stripe_prices"):
            assert starting(f"INSERT INTO {table} ") == 1, (table, [s for s in seen if table in s])
    # Not one per purchase (10): the batch's prefetch and settle's one look-up for its payments.
    assert starting("SELECT invoices.id") <= 4 and starting("SELECT checkout_sessions.id") <= 4, seen
    assert starting("INSERT INTO readers ") == 10  # one each: a new reader's id is needed at once
    assert starting("UPDATE ") <= 8, [s for s in seen if s.startswith("UPDATE")]
    # 44 on PostgreSQL and 88 on SQLite when written; about 190 when readers flushed the batch.
    assert len(seen) <= (50 if db.dialect == "postgresql" else 100), seen
