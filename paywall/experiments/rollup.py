"""Daily counts from raw appeal events, and pruning of the raw events once counted.

``fold`` rebuilds ``appeal_daily`` for the last days from ``appeal_events`` (delete a day's rows,
insert them again from one GROUP BY), so running it twice changes nothing and events that arrive
late in a recent day are counted at the next run; an older day is counted again whenever it has
raw events recorded after its last fold (``appeal_folds``), so a worker that was down for days
loses nothing. Each folded day also adds its readers' first ``view`` per experiment to
``appeal_exposures`` (the readers the results divide by). Raw events older than ``[appeal]
keep_events_days`` are then deleted, whole UTC days at a time, and only days that are counted:
the daily counts are what the results read, and they are kept for good. Asks older than
``[appeal] per_days`` are deleted too: they no longer count against anyone's budget.

Days are UTC. Their bounds are computed here and each day is read with a range on ``at`` (the
``ix_appeal_events_at`` index), which works alike on SQLite and PostgreSQL without date functions.
``paywall worker`` runs it every few minutes; ``paywall experiments rollup`` on demand; the results
read the counts as they are and say when the last fold ran (``last_folded``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Date, Table, bindparam, delete, distinct, exists, func, insert, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from paywall.config import Settings
from paywall.models.appeals import AppealAsk, AppealDaily, AppealEvent, AppealExposure, AppealFold
from paywall.widget.settings import appeal_settings

# Days before today that are always counted again: events still arrive for them (a page left
# open over midnight reports its click the next morning; an ask is valid for 24 hours).
REFOLD_DAYS = 2
# An event's ``at`` is taken when its request starts and it commits a moment later, so one stamped
# just before a fold may land just after it: a day counts as changed since its fold from this much
# before ``folded_at`` on (a day folded long after it ended is not recounted by it).
FOLD_GRACE = dt.timedelta(minutes=1)
# Serializes concurrent folds on PostgreSQL (the worker's and a report's): two would both delete
# a day and then both insert it. SQLite's BEGIN IMMEDIATE already lets one writer in at a time.
_LOCK_KEY = 0x61707065616C  # "appeal"

_events = cast(Table, AppealEvent.__table__)
_daily = cast(Table, AppealDaily.__table__)
_exposures = cast(Table, AppealExposure.__table__)
_folds = cast(Table, AppealFold.__table__)
_asks = cast(Table, AppealAsk.__table__)
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


def _derive_exposures(session: Session, day: dt.date) -> None:
    """The readers first seen (a ``view``) in an experiment on ``day``: one ``appeal_exposures``
    row per experiment and subject hash, keeping the earliest ``first_at`` when a later day was
    folded first. Plain-copy views (no experiment) expose nobody to anything."""
    start, end = _start(day), _start(day + dt.timedelta(days=1))
    first = (
        select(
            _events.c.experiment,
            _events.c.subject,
            func.min(_events.c.variant),
            func.min(_events.c.channel),
            func.min(_events.c.at),
        )
        .where(_events.c.type == "view", _events.c.experiment != "")
        .where(_events.c.at >= bindparam("start", start, type_=_events.c.at.type))
        .where(_events.c.at < bindparam("end", end, type_=_events.c.at.type))
        .group_by(_events.c.experiment, _events.c.subject)
    )
    upsert = _upsert(session)(_exposures).from_select(
        ["experiment", "subject", "variant", "channel", "first_at"], first
    )
    session.execute(
        upsert.on_conflict_do_update(
            index_elements=["experiment", "subject"],
            set_={name: upsert.excluded[name] for name in ("variant", "channel", "first_at")},
            where=upsert.excluded.first_at < _exposures.c.first_at,
        )
    )


def _upsert(session: Session) -> Any:
    """The dialect's INSERT with ON CONFLICT (both SQLite and PostgreSQL have it)."""
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def _mark_folded(session: Session, day: dt.date, now: dt.datetime) -> None:
    upsert = _upsert(session)(_folds).values(day=day, folded_at=now)
    session.execute(
        upsert.on_conflict_do_update(index_elements=["day"], set_={"folded_at": upsert.excluded.folded_at})
    )


def _newer_events(session: Session, day: dt.date, since: dt.datetime | None) -> bool:
    """Whether ``day`` has raw events recorded after ``since`` (any, when it was never folded)."""
    start, end = _start(day), _start(day + dt.timedelta(days=1))
    if since is not None:
        start = max(start, since - FOLD_GRACE)
    query = select(exists().where(_events.c.at >= start, _events.c.at < end))
    return bool(session.scalar(query))


def last_folded(session: Session) -> dt.datetime | None:
    """When the last fold ran (the counts are complete up to then), or None: never."""
    value = session.scalar(select(func.max(_folds.c.folded_at)))
    return value.astimezone(dt.UTC) if value is not None else None


def fold(session: Session, settings: Settings, now: dt.datetime) -> Folded:
    """Count ``appeal_events`` into ``appeal_daily`` and ``appeal_exposures`` for every UTC day from
    ``now`` - 2 days to today, and every older day with raw events recorded after its last fold
    (or never folded); then delete raw events of whole days older than ``keep_events_days`` (all
    counted by then) and asks older than ``per_days`` (they no longer count against the budget).
    Idempotent; the caller commits."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(_LOCK_KEY)))
    conf = appeal_settings(settings)
    today = now.astimezone(dt.UTC).date()
    recent = today - dt.timedelta(days=REFOLD_DAYS)
    # Raw events before this day are pruned. Never a recent day: those are recounted from their
    # raw events, so they must all be there (keep_events_days 1 keeps REFOLD_DAYS days).
    keep_from = min(today - dt.timedelta(days=conf.keep_events_days), recent)
    oldest = session.scalar(select(func.min(_events.c.at)))
    first = min(oldest.astimezone(dt.UTC).date(), recent) if oldest is not None else recent
    folds = {
        day: at.astimezone(dt.UTC)
        for day, at in session.execute(select(_folds.c.day, _folds.c.folded_at).where(_folds.c.day >= first))
    }
    folded = []
    day = first
    while day <= today:
        if day >= recent or _newer_events(session, day, folds.get(day)):
            _fold_day(session, day)
            _derive_exposures(session, day)
            _mark_folded(session, day, now)
            folded.append(day)
        day += dt.timedelta(days=1)
    result = session.execute(delete(_events).where(_events.c.at < _start(keep_from)))
    session.execute(delete(_asks).where(_asks.c.asked_at < now - dt.timedelta(days=conf.per_days)))
    return Folded(tuple(folded), int(result.rowcount or 0))  # type: ignore[attr-defined]
