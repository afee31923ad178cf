"""The inbox backlog: how many events wait to be applied, how old the oldest is, and how long
recent events took from the 2xx to being applied. Read from the database, so every web process,
applier and command sees the same figures (``/metrics``, ``/readyz``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import BindParameter, bindparam, func, select, text
from sqlalchemy.orm import Session

from paywall import clock
from paywall.models import StripeEvent

WINDOW = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Backlog:
    waiting: int
    # Seconds the oldest waiting event has waited: the lag right now (0 with nothing waiting).
    oldest_seconds: float
    # Lag quantiles (seconds from the 2xx to applied) of first applies in the last ``WINDOW``;
    # None with none. Replays are left out: their wait is the operator's, not the applier's.
    lag_p50: float | None
    lag_p99: float | None
    applied_recently: int


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    # SQLite aggregate results skip the column type: naive, but UTC like every stored time.
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value


def read(session: Session, now: dt.datetime | None = None) -> Backlog:
    """The backlog now, in three indexed queries."""
    now = now or clock.now()
    waiting, first = session.execute(
        select(func.count(), func.min(StripeEvent.received_at)).where(StripeEvent.status == "received")
    ).one()
    oldest = _aware(first)
    p50, p99, recent = _lag_quantiles(session, now - WINDOW)
    return Backlog(
        waiting=int(waiting or 0),
        oldest_seconds=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        lag_p50=p50,
        lag_p99=p99,
        applied_recently=recent,
    )


def _since(since: dt.datetime) -> BindParameter[dt.datetime]:
    # The column's own type, so SQLite gets the naive UTC text every stored time has.
    return bindparam("since", since, type_=StripeEvent.__table__.c.received_at.type)


def _lag_quantiles(session: Session, since: dt.datetime) -> tuple[float | None, float | None, int]:
    if session.get_bind().dialect.name == "postgresql":
        row = session.execute(
            text(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), "
                "percentile_cont(0.99) WITHIN GROUP (ORDER BY lag), count(*) FROM ("
                " SELECT extract(epoch FROM processed_at - received_at) AS lag FROM stripe_events"
                " WHERE status IN ('processed', 'ignored', 'failed') AND received_at >= :since"
                " AND attempts = 1 AND processed_at IS NOT NULL) AS recent"
            ).bindparams(_since(since))
        ).one()
        return (
            float(row[0]) if row[0] is not None else None,
            float(row[1]) if row[1] is not None else None,
            int(row[2]),
        )
    # SQLite: no percentile function; the lags of the window, sorted, in one query (a few
    # thousand numbers at most on the kind of site that runs on SQLite).
    lags = [
        float(v)
        for v in session.scalars(
            text(
                "SELECT (julianday(processed_at) - julianday(received_at)) * 86400.0 AS lag"
                " FROM stripe_events WHERE status IN ('processed', 'ignored', 'failed')"
                " AND received_at >= :since AND attempts = 1 AND processed_at IS NOT NULL ORDER BY lag"
            ).bindparams(_since(since)),
        )
    ]
    if not lags:
        return None, None, 0
    return _quantile(lags, 0.5), _quantile(lags, 0.99), len(lags)


def _quantile(ordered: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks, as PostgreSQL's percentile_cont."""
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)
