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
        return f"sqlite:///{tmp_path}/migrations.sqlite3"  # type: ignore[operator]
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
