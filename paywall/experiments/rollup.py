"""Daily counts from raw appeal events, and pruning of the raw events once counted.

``fold`` rebuilds ``appeal_daily`` for the last days from ``appeal_events`` (delete a day's rows,
insert them again from one GROUP BY), so running it twice changes nothing and events that arrive
late in a recent day are counted at the next run. Raw events older than ``[appeal]
keep_events_days`` are then deleted, whole UTC days at a time, and only days that are counted:
the daily counts are what the results read, and they are kept for good.

Days are UTC. Their bounds are computed here and each day is read with a range on ``at`` (the
``ix_appeal_events_at`` index), which works alike on SQLite and PostgreSQL without date functions.
``paywall worker`` runs it every few minutes; ``paywall experiments rollup`` on demand; the results
call it in their own short transaction before reading.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Date, Table, bindparam, delete, distinct, exists, func, insert, literal, select
from sqlalchemy.orm import Session

from paywall.config import Settings
from paywall.models.appeals import AppealDaily, AppealEvent
from paywall.widget.settings import appeal_settings

# Days before today that are always counted again: events still arrive for them (a page left
# open over midnight reports its click the next morning; an ask is valid for 24 hours).
REFOLD_DAYS = 2
# Serializes concurrent folds on PostgreSQL (the worker's and a report's): two would both delete
# a day and then both insert it. SQLite's BEGIN IMMEDIATE already lets one writer in at a time.
_LOCK_KEY = 0x61707065616C  # "appeal"

_events = cast(Table, AppealEvent.__table__)
_daily = cast(Table, AppealDaily.__table__)
_GROUP = ("experiment", "variant", "channel", "type", "action")


@dataclass(frozen=True)
class Folded:
    """What ``fold`` did: the days it (re)counted, and the raw events it pruned."""

    days: tuple[dt.date, ...]
    pruned: int


def _start(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _fold_day(session: Session, day: dt.date) -> None:
    """Replace the day's counts with what its raw events say."""
    session.execute(delete(_daily).where(_daily.c.day == day))
    start, end = _start(day), _start(day + dt.timedelta(days=1))
    counts = (
        select(
            literal(day, Date()),
            *(_events.c[name] for name in _GROUP),
            func.count(),
            func.count(distinct(_events.c.subject)),
        )
        .where(_events.c.at >= bindparam("start", start, type_=_events.c.at.type))
        .where(_events.c.at < bindparam("end", end, type_=_events.c.at.type))
        .group_by(*(_events.c[name] for name in _GROUP))
    )
    session.execute(insert(_daily).from_select(["day", *_GROUP, "count", "subjects"], counts))


def _has_events(session: Session, day: dt.date) -> bool:
    start, end = _start(day), _start(day + dt.timedelta(days=1))
    query = select(exists().where(_events.c.at >= start, _events.c.at < end))
    return bool(session.scalar(query))


def fold(session: Session, settings: Settings, now: dt.datetime) -> Folded:
    """Count ``appeal_events`` into ``appeal_daily`` for every UTC day from ``now`` - 2 days to today,
    and every older day that has raw events but no counts; then delete raw events of whole days
    older than ``keep_events_days`` (all counted by then). Idempotent; the caller commits."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(_LOCK_KEY)))
    today = now.astimezone(dt.UTC).date()
    recent = today - dt.timedelta(days=REFOLD_DAYS)
    # Raw events before this day are pruned. Never a recent day: those are recounted from their
    # raw events, so they must all be there (keep_events_days 1 keeps REFOLD_DAYS days).
    keep_from = min(today - dt.timedelta(days=appeal_settings(settings).keep_events_days), recent)
    oldest = session.scalar(select(func.min(_events.c.at)))
    first = min(oldest.astimezone(dt.UTC).date(), recent) if oldest is not None else recent
    counted = set(session.scalars(select(_daily.c.day).where(_daily.c.day >= first).distinct()))
    folded = []
    day = first
    while day <= today:
        if day >= recent or (day not in counted and _has_events(session, day)):
            _fold_day(session, day)
            folded.append(day)
        day += dt.timedelta(days=1)
    result = session.execute(delete(_events).where(_events.c.at < _start(keep_from)))
    return Folded(tuple(folded), int(result.rowcount or 0))  # type: ignore[attr-defined]
