"""Report periods: half-open ``[start, end)`` dates in the reporting time zone, and SQL buckets.

Dates are local calendar days in ``reports.timezone``; their bounds become UTC instants (local
midnight) for the queries. A row's bucket (month, ISO week or day) is computed by the database:
PostgreSQL converts with ``AT TIME ZONE``; SQLite has no time zones, so the UTC offset, constant
between the zone's transitions, is added with a CASE over the few transitions inside the period.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import String, case, cast, func, literal
from sqlalchemy.sql.elements import ColumnElement, SQLColumnExpression

from paywall.config import Settings
from paywall.reports.settings import report_settings

TIME_GROUPS = ("month", "week", "day")


def livemode_filter(settings: Settings, requested: str | None = None) -> bool | None:
    """True/False to report only live/test rows, None for all.

    ``auto`` follows the configured Stripe key, so test-mode money never reaches live figures
    (Ghost once counted test payments in its MRR).
    """
    mode = requested or report_settings(settings).livemode
    if mode == "live":
        return True
    if mode == "test":
        return False
    if mode == "all":
        return None
    return settings.stripe_livemode


@dataclass(frozen=True)
class Period:
    """Local dates ``[start, end)`` in ``tz``."""

    start: dt.date
    end: dt.date
    tz: ZoneInfo

    @property
    def start_utc(self) -> dt.datetime:
        return local_midnight_utc(self.start, self.tz)

    @property
    def end_utc(self) -> dt.datetime:
        return local_midnight_utc(self.end, self.tz)


def local_midnight_utc(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    """The UTC instant at which ``day`` begins in ``tz``."""
    return dt.datetime.combine(day, dt.time(0), tzinfo=tz).astimezone(dt.UTC)


def bucket_start(day: dt.date, group_by: str) -> dt.date:
    """The first day of the month, ISO week (Monday) or day containing ``day``."""
    if group_by == "month":
        return day.replace(day=1)
    if group_by == "week":
        return day - dt.timedelta(days=day.weekday())
    return day


def next_bucket(day: dt.date, group_by: str) -> dt.date:
    """The first day of the bucket after the one starting at ``day``."""
    if group_by == "month":
        return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    if group_by == "week":
        return day + dt.timedelta(days=7)
    return day + dt.timedelta(days=1)


def bucket_label(key: str, group_by: str) -> str:
    """The label of a bucket key from SQL: '2026-09', '2026-W36' or '2026-09-01'."""
    if group_by == "week":
        year, week, _ = dt.date.fromisoformat(key).isocalendar()
        return f"{year}-W{week:02d}"
    return key


def bucket_key(day: dt.date, group_by: str) -> str:
    """The SQL bucket key of the bucket starting at ``day`` (see ``bucket_expr``)."""
    return day.strftime("%Y-%m") if group_by == "month" else day.isoformat()


def buckets(period: Period, group_by: str) -> Iterator[tuple[str, dt.date, dt.date]]:
    """(key, first day, next bucket's first day) of every bucket touching the period, in order."""
    day = bucket_start(period.start, group_by)
    while day < period.end:
        following = next_bucket(day, group_by)
        yield bucket_key(day, group_by), day, following
        day = following


def offset_changes(tz: ZoneInfo, start: dt.datetime, end: dt.datetime) -> list[tuple[dt.datetime, int]]:
    """[(from UTC instant, offset seconds)] for ``tz`` between ``start`` and ``end`` (UTC).

    The first item starts at ``start``. Transitions are found day by day, then to the second by
    bisection (zoneinfo exposes offsets, not its transition table).
    """

    def offset(at: dt.datetime) -> int:
        delta = at.astimezone(tz).utcoffset()
        return int(delta.total_seconds()) if delta else 0

    out = [(start, offset(start))]
    step = dt.timedelta(hours=12)
    at = start
    while at < end:
        nxt = min(at + step, end)
        if offset(nxt) != out[-1][1]:
            lo, hi = at, nxt
            while hi - lo > dt.timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                if offset(mid) == out[-1][1]:
                    lo = mid
                else:
                    hi = mid
            out.append((hi.replace(microsecond=0), offset(hi)))
        at = nxt
    return out


def bucket_expr(
    column: SQLColumnExpression[dt.datetime], group_by: str, period: Period, dialect: str
) -> ColumnElement[str]:
    """SQL for the bucket key of ``column`` in the period's zone: 'YYYY-MM' or the first day."""
    if dialect == "postgresql":
        local = func.timezone(period.tz.key, column)
        if group_by == "month":
            return func.to_char(local, "YYYY-MM")
        if group_by == "week":
            return func.to_char(func.date_trunc("week", local), "YYYY-MM-DD")
        return func.to_char(local, "YYYY-MM-DD")
    # SQLite (and anything else without time zones): shift by the offset in force, passed as a
    # strftime()/date() modifier ('+7200 seconds'); no modifier at all when the zone is UTC.
    changes = offset_changes(period.tz, period.start_utc, period.end_utc)
    modifiers = [f"{off:+d} seconds" for _, off in changes]
    shift: list[ColumnElement[str]] = []
    if len(changes) > 1:
        whens = [(column < at, literal(mod)) for (at, _), mod in zip(changes[1:], modifiers, strict=False)]
        shift = [case(*whens, else_=literal(modifiers[-1]))]
    elif changes[0][1] != 0:
        shift = [cast(literal(modifiers[0]), String)]
    if group_by == "month":
        return func.strftime("%Y-%m", column, *shift)
    if group_by == "week":
        return func.date(column, *shift, "-6 days", "weekday 1")
    return func.date(column, *shift)
