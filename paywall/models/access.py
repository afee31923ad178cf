"""Access: staff comps, the meter of free articles, and dismissed appeals.

The meter and the dismissals are keyed by the site's reader id *string*, not by ``readers.id``: the
site meters anonymous visitors by a cookie id too, and those are not registered readers. Creating a
``Reader`` row per cookie would fill the readers table with strangers and put a write on every
anonymous page view. Comps are given by staff to a known reader, so they point at ``readers.id``.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, SmallInteger, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from paywall import clock
from paywall.db import Base

ReaderKey = String(128)


class Comp(Base):
    """Complimentary access given by staff, until ``until`` (exclusive). One per reader."""

    __tablename__ = "comps"

    id: Mapped[int] = mapped_column(primary_key=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id"), unique=True)
    until: Mapped[dt.datetime]
    note: Mapped[str | None] = mapped_column(Text)
    # Who granted it: the API key's name, or "cli".
    granted_by: Mapped[str | None] = mapped_column(String(100))
    granted_at: Mapped[dt.datetime] = mapped_column(default=clock.now)


class MeterRead(Base):
    """One free article read by one reader id in one meter period (``YYYY-MM`` in meter_timezone).

    The primary key is (reader, period, article), so a second first-read of the same article cannot
    count twice, and counting a reader's month is an index range scan.

    ``slot`` numbers a reader's free reads in a period 1, 2, 3... and is unique per (reader, period):
    a read is only ever claimed as slot *n + 1* after seeing *n* reads, so two concurrent first reads
    that saw the same meter race for the same slot and the database lets exactly one win. That is
    what keeps the allowance exact without a lock or a transaction (paywall/access/meter.py).
    """

    __tablename__ = "meter_reads"
    __table_args__ = (UniqueConstraint("reader", "period", "slot"),)

    reader: Mapped[str] = mapped_column(ReaderKey, primary_key=True)
    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    article: Mapped[str] = mapped_column(ReaderKey, primary_key=True)
    # NULL only on rows written by code older than migration 0005 during its rollout.
    slot: Mapped[int | None] = mapped_column(SmallInteger)
    read_at: Mapped[dt.datetime] = mapped_column(default=clock.now)


class AppealDismissal(Base):
    """The last time a reader id closed the support appeal (one row per reader id)."""

    __tablename__ = "appeal_dismissals"

    reader: Mapped[str] = mapped_column(ReaderKey, primary_key=True)
    dismissed_at: Mapped[dt.datetime] = mapped_column(default=clock.now)
