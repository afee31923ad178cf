"""Fold raw appeal events into daily counts, and prune the raw events past ``keep_events_days``.

A MINIMAL STAND-IN written by the results piece (issue 18, part C) to test against, with the
signature of contract 5; the measurement piece (A) owns the real module, and the lead keeps A's.

``fold`` replaces the ``appeal_daily`` rows of every UTC day from ``now - 2 days`` to today with
counts from ``appeal_events`` (events arrive up to a day late: the ask lives 24 hours), plus every
older day that still has raw events but no daily rows; then deletes raw events older than
``keep_events_days`` on days already folded. Running it twice changes nothing.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from paywall.config import Settings
from paywall.models.appeals import AppealDaily, AppealEvent
from paywall.widget.settings import appeal_settings

RECENT_DAYS = 2


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _fold_day(session: Session, day: dt.date) -> None:
    start, end = _midnight(day), _midnight(day + dt.timedelta(days=1))
    session.execute(delete(AppealDaily).where(AppealDaily.day == day))
    keys = (
        AppealEvent.experiment,
        AppealEvent.variant,
        AppealEvent.channel,
        AppealEvent.type,
        AppealEvent.action,
    )
    rows = session.execute(
        select(*keys, func.count(), func.count(func.distinct(AppealEvent.subject)))
        .where(AppealEvent.at >= start, AppealEvent.at < end)
        .group_by(*keys)
    ).all()
    session.add_all(
        AppealDaily(
            day=day,
            experiment=experiment,
            variant=variant,
            channel=channel,
            type=type_,
            action=action,
            count=int(count),
            subjects=int(subjects),
        )
        for experiment, variant, channel, type_, action, count, subjects in rows
    )


def fold(session: Session, settings: Settings, now: dt.datetime) -> int:
    """Refold the recent days and any unfolded older day, then prune; returns the days folded."""
    today = now.astimezone(dt.UTC).date()
    first_recent = today - dt.timedelta(days=RECENT_DAYS)
    days = {first_recent + dt.timedelta(days=n) for n in range(RECENT_DAYS + 1)}
    oldest = session.scalar(select(func.min(AppealEvent.at)))
    if oldest is not None:
        if oldest.tzinfo is None:  # SQLite hands back naive UTC
            oldest = oldest.replace(tzinfo=dt.UTC)
        day = oldest.date()
        folded = set(session.scalars(select(AppealDaily.day).distinct()))
        while day < first_recent:
            start = _midnight(day)
            if day not in folded and session.scalar(
                select(AppealEvent.id)
                .where(AppealEvent.at >= start, AppealEvent.at < start + dt.timedelta(days=1))
                .limit(1)
            ):
                days.add(day)
            day += dt.timedelta(days=1)
    for day in sorted(days):
        _fold_day(session, day)
    keep = appeal_settings(settings).keep_events_days
    # Whole days before the cutoff, every one of them folded (now or by an earlier run).
    cutoff = _midnight(today - dt.timedelta(days=keep))
    session.execute(delete(AppealEvent).where(AppealEvent.at < cutoff))
    session.flush()
    return len(days)
