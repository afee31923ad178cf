"""Migrations: upgrade from empty, agree with the models, downgrade to base."""

from __future__ import annotations

import os

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

import paywall.models  # noqa: F401 - registers every table
from paywall.cli import alembic_config
from paywall.db import Base, Database


@pytest.fixture
def scratch_url(tmp_path: pytest.TempPathFactory) -> str:
    """A database of its own: a fresh SQLite file, or a scratch schema-free PostgreSQL database."""
    url = os.environ.get("PAYWALL_TEST_DATABASE_URL")
    if not url:
        return f"sqlite:///{tmp_path}/migrations.sqlite3"
    base = url.rsplit("/", 1)[0]
    name = url.rsplit("/", 1)[1] + "_migrations"
    admin = Database(url)
    with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return f"{base}/{name}"


def test_upgrade_matches_models_and_downgrades_to_base(scratch_url: str) -> None:
    cfg = alembic_config(scratch_url)
    command.upgrade(cfg, "heads")
    db = Database(scratch_url)
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        tables = set(inspect(conn).get_table_names())
    assert diff == [], f"models and migrations disagree: {diff}"
    assert {t.name for t in Base.metadata.sorted_tables} <= tables

    command.downgrade(cfg, "base")
    with db.engine.connect() as conn:
        left = set(inspect(conn).get_table_names()) - {"alembic_version"}
    assert left == set()
    # And up again: downgrades leave nothing behind that blocks a re-run.
    command.upgrade(cfg, "heads")
    db.dispose()


def test_meter_slots_are_numbered_in_reading_order(scratch_url: str) -> None:
    """0005 gives the meter rows already stored slots 1..n per reader and period, oldest first."""
    cfg = alembic_config(scratch_url)
    command.upgrade(cfg, "0003")
    db = Database(scratch_url)
    rows = [  # (reader, period, article, minute read)
        ("ana", "2026-10", "z-first", 1),
        ("ana", "2026-10", "b-second", 2),
        ("ana", "2026-10", "a-third", 3),
        ("ana", "2026-11", "new-month", 4),
        ("bo", "2026-10", "same-minute-b", 5),
        ("bo", "2026-10", "same-minute-a", 5),
    ]
    with db.engine.begin() as conn:
        for reader, period, article, minute in rows:
            conn.execute(
                text("INSERT INTO meter_reads (reader, period, article, read_at) VALUES (:r, :p, :a, :t)"),
                {"r": reader, "p": period, "a": article, "t": f"2026-10-01 00:{minute:02d}:00"},
            )
    command.upgrade(cfg, "heads")
    with db.engine.connect() as conn:
        got = conn.execute(text("SELECT reader, period, article, slot FROM meter_reads")).all()
    db.dispose()
    assert sorted(tuple(r) for r in got) == [
        ("ana", "2026-10", "a-third", 3),
        ("ana", "2026-10", "b-second", 2),
        ("ana", "2026-10", "z-first", 1),
        ("ana", "2026-11", "new-month", 1),
        ("bo", "2026-10", "same-minute-a", 1),
        ("bo", "2026-10", "same-minute-b", 2),
    ]


def test_charge_only_refunds_are_backfilled_from_payments(scratch_url: str) -> None:
    """0006 gives each payment whose charge says more was refunded than its refund objects one
    charge-only refund row for the difference, dated by the charge state that said so."""
    cfg = alembic_config(scratch_url)
    command.upgrade(cfg, "0005")
    db = Database(scratch_url)
    payments = [  # (charge, amount, charge says refunded, event that last wrote the payment)
        ("ch_only", 5000, 2000, "2026-09-08 10:00:00"),
        ("ch_both", 5000, 3000, "2026-09-09 10:00:00"),
        ("ch_none", 5000, 0, None),
        ("ch_objects", 5000, 1000, "2026-09-10 10:00:00"),
    ]
    refunds = [  # (refund, charge, amount, status)
        ("re_both", "ch_both", 1000, "succeeded"),
        ("re_failed", "ch_both", 500, "failed"),
        ("re_objects", "ch_objects", 1000, "succeeded"),
    ]
    with db.engine.begin() as conn:
        for charge, amount, refunded, synced in payments:
            conn.execute(
                text(
                    "INSERT INTO payments (stripe_charge_id, kind, recurring, amount_minor, currency,"
                    " refunded_minor, charge_refunded_minor, disputed_minor, dispute_fee_minor, paid_at,"
                    " synced_event_at, synced_event_id, livemode)"
                    " VALUES (:c, 'donation', false, :a, 'usd', :r, :r, 0, 0, '2026-09-05 00:00:00',"
                    " :s, 'evt_x', false)"
                ),
                {"c": charge, "a": amount, "r": refunded, "s": synced},
            )
        for refund, charge, amount, status in refunds:
            conn.execute(
                text(
                    "INSERT INTO refunds (stripe_refund_id, stripe_charge_id, amount_minor, currency,"
                    " status, stripe_created, livemode) VALUES (:id, :c, :a, 'usd', :s,"
                    " '2026-09-07 00:00:00', false)"
                ),
                {"id": refund, "c": charge, "a": amount, "s": status},
            )
    command.upgrade(cfg, "heads")
    with db.engine.connect() as conn:
        got = conn.execute(
            text(
                "SELECT stripe_refund_id, stripe_charge_id, amount_minor, charge_amount_refunded,"
                " stripe_created FROM refunds WHERE charge_amount_refunded IS NOT NULL"
            )
        ).all()
    db.dispose()
    assert sorted((r[0], r[1], r[2], r[3], str(r[4])[:19]) for r in got) == [
        ("ch_both:refunded:3000", "ch_both", 2000, 3000, "2026-09-09 10:00:00"),
        ("ch_only:refunded:2000", "ch_only", 2000, 2000, "2026-09-08 10:00:00"),
    ]
