"""The current time, timezone-aware UTC; tests pin it by replacing ``now``."""

from __future__ import annotations

import datetime as dt


def now() -> dt.datetime:
    """The current time in UTC (aware)."""
    return dt.datetime.now(dt.UTC)


def from_timestamp(seconds: int | float | None) -> dt.datetime | None:
    """A Stripe unix timestamp as an aware UTC datetime (None stays None)."""
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def isoformat(value: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, the one format the API writes."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
