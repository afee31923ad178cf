"""The free-article meter: one row per new (reader id, article, period), written race-safely.

Ten concurrent first reads by one reader must spend exactly the allowance, never more. Writers for
one reader id are serialized before the meter is re-read: on PostgreSQL by a transaction-scoped
advisory lock on the reader id; on SQLite by the write transaction itself (``BEGIN IMMEDIATE``, see
paywall/db.py), which already admits one writer at a time.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from paywall.models import MeterRead

# The first key of the two-key advisory lock: a namespace, so other features' locks never collide.
METER_LOCK_NAMESPACE = 0x6D657472  # "metr"


# One round trip: take the reader's lock, and let this transaction's commit skip the wait for the
# WAL flush. A meter row lost in a database crash costs one extra free article; waiting for a disk
# flush on every anonymous first read would cost the hot path far more.
_PG_LOCK = text(
    "SELECT pg_advisory_xact_lock(:ns, hashtext(:reader)), set_config('synchronous_commit', 'off', true)"
)


def lock_reader(session: Session, reader: str) -> None:
    """Serialize meter writers for ``reader`` until the transaction ends."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_PG_LOCK, {"ns": METER_LOCK_NAMESPACE, "reader": reader})


def read_articles(session: Session, reader: str, period: str) -> frozenset[str]:
    """The articles ``reader`` has spent the allowance on in ``period``."""
    rows = session.scalars(
        select(MeterRead.article).where(MeterRead.reader == reader, MeterRead.period == period)
    )
    return frozenset(rows)


def record_read(session: Session, reader: str, period: str, article: str, now: dt.datetime) -> str:
    """Count ``article`` for ``reader`` in ``period``: 'recorded', or 'already_recorded'."""
    values = {"reader": reader, "period": period, "article": article, "read_at": now}
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    result = session.execute(insert(MeterRead).values(**values).on_conflict_do_nothing())
    return "recorded" if getattr(result, "rowcount", 1) else "already_recorded"
