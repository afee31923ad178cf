"""Dismissing the support appeal: the site reports "Close", and the appeal stays hidden for a while.

The dismissal check itself, ``dismissal_active``, lives with the rules (it is part of ``decide``).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from paywall import clock
from paywall.access.rules import dismissal_active
from paywall.access.settings import access_settings
from paywall.config import Settings
from paywall.db import dialect_insert
from paywall.models import AppealDismissal


def dismissed_until(session: Session, settings: Settings, reader: str) -> dt.datetime | None:
    """When the reader's current dismissal stops hiding the appeal (None: never dismissed)."""
    at = session.scalar(select(AppealDismissal.dismissed_at).where(AppealDismissal.reader == reader))
    return None if at is None else at + dt.timedelta(days=access_settings(settings).dismiss_days)


def dismiss_appeal(session: Session, settings: Settings, reader: str, now: dt.datetime | None = None) -> str:
    """Hide the appeal for ``reader`` (any id, registered or not) for ``dismiss_days`` from now.

    Returns 'dismissed', or 'extended' when an earlier dismissal was still running (the clock
    restarts either way). Safe under concurrency: one row per reader id, upserted.
    """
    now = now or clock.now()
    cfg = access_settings(settings)
    before = session.scalar(select(AppealDismissal.dismissed_at).where(AppealDismissal.reader == reader))
    stmt = dialect_insert(session, AppealDismissal).values(reader=reader, dismissed_at=now)
    session.execute(stmt.on_conflict_do_update(index_elements=["reader"], set_={"dismissed_at": now}))
    return "extended" if dismissal_active(before, now, cfg) else "dismissed"
