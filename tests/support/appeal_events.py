"""POST /support/events' recording inside a test's own transaction, for tests that need measured appeals.

The rows come from the real recording code (paywall/experiments/events.py: ``parse_beacon`` checks
each beacon's shape, ``event_rows`` decodes the asks, drops bad, expired, preview and repeated
ones and works out the asks footer impressions spend); only the INSERT is done here, in the
caller's session, so a test can record events and payments in one transaction. Batches longer
than a beacon (``MAX_EVENTS``) are split as the widget would send them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from paywall.config import Settings
from paywall.experiments.events import MAX_EVENTS, event_rows, insert_statements, parse_beacon


def record_events(
    session: Session, settings: Settings, events: list[dict[str, Any]], now: dt.datetime
) -> tuple[int, int]:
    """Record ``[{"ask", "type", "action"?}, ...]`` as arrived at ``now``: (recorded, dropped)."""
    recorded = dropped = 0
    into_events, into_asks = insert_statements(session.get_bind().dialect.name)
    for start in range(0, len(events), MAX_EVENTS):
        reported = parse_beacon({"events": events[start : start + MAX_EVENTS]})
        rows, spent, lost = event_rows(settings, reported, now)
        if rows:
            session.execute(into_events, rows)
        if spent:
            session.execute(into_asks, spent)
        recorded, dropped = recorded + len(rows), dropped + lost
    return recorded, dropped
