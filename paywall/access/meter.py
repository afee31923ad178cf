"""The free-article meter: one row per new (reader id, period, article), claimed race-safely.

Ten concurrent first reads by one reader must spend exactly the allowance, never more, and the
check runs on every article view, so spending takes no lock and no transaction. Each free read
holds a numbered *slot*, unique per (reader, period). A read that saw *n* reads claims slot
*n + 1* (one above the highest it saw) with one ``INSERT ... ON CONFLICT DO NOTHING``. Slots only
grow, so "n + 1 is free" means exactly "nobody spent since I looked": two reads that saw the same
meter claim the same slot and the database lets one of them in; the loser re-reads the meter and
the rules decide again. Claiming is idempotent too: a retried claim of an article that was already
counted conflicts on the primary key, and the re-read shows it as a re-read.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from paywall.db import DriverStatement
from paywall.models import MeterRead

# On the driver's cursor, as it runs on the hot path (see DriverStatement). Both databases accept
# this upsert form, and its conflict clause covers the primary key (this article was counted
# already) and the slot (another read spent it first).
_CLAIM = DriverStatement(
    "INSERT INTO meter_reads (reader, period, article, slot, read_at) "
    "VALUES (:reader, :period, :article, :slot, :read_at) ON CONFLICT DO NOTHING",
    datetime_params=("read_at",),
)


def read_meter(conn: Session | Connection, reader: str, period: str) -> tuple[frozenset[str], int]:
    """The articles ``reader`` has spent the allowance on in ``period``, and the highest slot taken."""
    rows = conn.execute(
        select(MeterRead.article, MeterRead.slot).where(
            MeterRead.reader == reader, MeterRead.period == period
        )
    ).all()
    return frozenset(article for article, _ in rows), max((slot or 0 for _, slot in rows), default=0)


def claim(
    conn: Session | Connection, reader: str, period: str, article: str, slot: int, now: dt.datetime
) -> bool:
    """Count ``article`` as ``reader``'s free read number ``slot``; False if the slot or article is taken."""
    params = {"reader": reader, "period": period, "article": article, "slot": slot, "read_at": now}
    _, inserted = _CLAIM.execute(conn, params)
    return inserted == 1


def purge_before(session: Session, period: str) -> int:
    """Delete the meter rows of periods before ``period`` (``YYYY-MM``); returns how many went.

    Only the current period decides access, so older rows are history nobody reads: without a
    purge the table grows by every anonymous visitor's first reads, month after month.
    """
    result = session.execute(delete(MeterRead).where(MeterRead.period < period))
    return int(getattr(result, "rowcount", 0) or 0)
