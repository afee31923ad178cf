"""An anonymous browser's meter and dismissal become the reader's when it signs in.

This month's free reads of ``anonymous_key(browser id)`` move to the reader who signs in on that
browser, so signing in never hands out a fresh allowance: each article counts once (the reader's
own row wins), and the moved ones take the next free slots, so (reader, period, slot) stays unique
and the meter keeps counting exactly (paywall/access/meter.py). The anonymous dismissal moves too
(the later of the two wins).

Race-safe on both databases. The anonymous rows are claimed with ``DELETE ... RETURNING``: of two
transactions moving the same rows, the second finds them gone (PostgreSQL re-checks a deleted row
after the first commits; SQLite runs one writer at a time), so no read is moved twice. Merges into
one reader queue on the reader's row (``SELECT ... FOR UPDATE``; SQLite's BEGIN IMMEDIATE already
serialises writers). An access check of the same reader can still claim a slot meanwhile, without a
lock (it runs outside any transaction): a moved read that finds its slot taken re-reads the meter
and takes the next one.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from paywall.access.anonymous import anonymous_key
from paywall.access.meter import read_meter
from paywall.access.rules import meter_period
from paywall.access.settings import access_settings
from paywall.config import Settings
from paywall.db import dialect_insert
from paywall.models import AppealDismissal, MeterRead, Reader

# A moved read retries this often when concurrent access checks keep taking its slot.
MAX_SLOT_RETRIES = 50


def _lock_reader(session: Session, reader: Reader) -> None:
    """Queue concurrent merges into ``reader`` behind one another (a no-op on SQLite)."""
    session.execute(select(Reader.id).where(Reader.id == reader.id).with_for_update())


def _move_reads(session: Session, anon: str, reader: str, period: str, now: dt.datetime) -> int:
    """Move ``anon``'s reads of ``period`` to ``reader``; returns how many new articles it counted."""
    taken = session.execute(
        delete(MeterRead)
        .where(MeterRead.reader == anon, MeterRead.period == period)
        .returning(MeterRead.article, MeterRead.read_at)
    ).all()
    moved = 0
    for article, read_at in sorted(taken, key=lambda row: (row[1], row[0])):
        for _ in range(MAX_SLOT_RETRIES):
            articles, slot = read_meter(session, reader, period)
            if article in articles:
                break  # the reader read it too: it counts once
            inserted = session.execute(
                _insert_ignoring_conflict(session)
                .values(reader=reader, period=period, article=article, slot=slot + 1, read_at=read_at or now)
                .returning(MeterRead.slot)
            ).first()
            if inserted is not None:
                moved += 1
                break
        else:
            raise RuntimeError("could not find a free meter slot while merging an anonymous meter")
    return moved


def _insert_ignoring_conflict(session: Session) -> Any:
    # INSERT ... ON CONFLICT DO NOTHING: a taken slot (or article) inserts nothing, no error.
    return dialect_insert(session, MeterRead).on_conflict_do_nothing()


def _move_dismissal(session: Session, anon: str, reader: str) -> None:
    """The anonymous dismissal, if any, becomes the reader's unless theirs is later."""
    taken = session.execute(
        delete(AppealDismissal).where(AppealDismissal.reader == anon).returning(AppealDismissal.dismissed_at)
    ).first()
    if taken is None:
        return
    existing = session.scalar(
        select(AppealDismissal).where(AppealDismissal.reader == reader).with_for_update()
    )
    if existing is None:
        session.execute(insert(AppealDismissal).values(reader=reader, dismissed_at=taken[0]))
    elif existing.dismissed_at < taken[0]:
        existing.dismissed_at = taken[0]


def merge_anonymous(
    session: Session, settings: Settings, browser_id: str, reader: Reader, *, now: dt.datetime
) -> int:
    """Move this month's meter and the dismissal of anonymous ``browser_id`` to ``reader``.

    Returns how many articles were newly counted for the reader. Call valid_browser_id first."""
    period, _ = meter_period(now, access_settings(settings))
    anon = anonymous_key(browser_id)
    _lock_reader(session, reader)
    moved = _move_reads(session, anon, reader.external_id, period, now)
    _move_dismissal(session, anon, reader.external_id)
    session.flush()
    return moved
