"""Comps: complimentary access given by staff until a date (CLI and admin API).

A comp names a reader the site knows, so granting one creates the reader row if needed. ``until``
is exclusive: a comp "until 2026-12-31" given as a date runs to the end of that day (UTC).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from paywall import clock
from paywall.clock import isoformat
from paywall.models import AppealAsk, AppealDismissal, Comp, MeterRead, Reader
from paywall.readers.service import ensure_reader

# The last day a comp may run through. Python's dates end on 9999-12-31, so that day has no
# exclusive end; a year earlier still reads as "for good" and leaves room for date arithmetic.
LAST_DAY = dt.date(9998, 12, 31)
TOO_LATE = f"Must be {LAST_DAY.isoformat()} or earlier."


def end_of_day(day: dt.date) -> dt.datetime:
    """The exclusive end of ``day`` in UTC: a comp until a date includes the whole date.

    ValueError (TOO_LATE) for a day after LAST_DAY."""
    if day > LAST_DAY:
        raise ValueError(TOO_LATE)
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


LATEST_UNTIL = end_of_day(LAST_DAY)


def find_comp(session: Session, external_id: str) -> Comp | None:
    return session.scalar(
        select(Comp).join(Reader, Reader.id == Comp.reader_id).where(Reader.external_id == external_id)
    )


def grant_comp(
    session: Session, external_id: str, *, until: dt.datetime, note: str | None, granted_by: str | None
) -> tuple[Comp, str]:
    """Give (or change) ``external_id``'s comp; returns (comp, 'granted' or 'updated')."""
    if until.tzinfo is None:
        raise ValueError("until must be timezone-aware")
    reader = ensure_reader(session, external_id)
    comp = session.scalar(select(Comp).where(Comp.reader_id == reader.id))
    outcome = "updated"
    if comp is None:
        comp = Comp(reader_id=reader.id, until=until)
        session.add(comp)
        outcome = "granted"
    comp.until = until
    comp.note = note
    comp.granted_by = granted_by
    comp.granted_at = clock.now()
    session.flush()
    return comp, outcome


def revoke_comp(session: Session, external_id: str) -> str:
    """End ``external_id``'s comp now: 'revoked' or 'not_found'."""
    comp = find_comp(session, external_id)
    if comp is None:
        return "not_found"
    session.delete(comp)
    session.flush()
    return "revoked"


def comp_body(external_id: str, comp: Comp) -> dict[str, Any]:
    return {
        "reader": external_id,
        "until": isoformat(comp.until),
        "note": comp.note,
        "granted_at": isoformat(comp.granted_at),
        "granted_by": comp.granted_by,
    }


def comp_summary(session: Session, reader: Reader) -> dict[str, Any]:
    """The ``comp`` part of the reader view's supporter section (paywall.supporter asks it)."""
    comp = session.scalar(select(Comp).where(Comp.reader_id == reader.id))
    if comp is None:
        return {"comp": None}
    return {
        "comp": {"until": isoformat(comp.until), "note": comp.note, "granted_at": isoformat(comp.granted_at)}
    }


def erase_reader_access(session: Session, reader: Reader) -> None:
    """On erasure: drop the comp's free-text note (it may name the person), the reader's meter
    (what they read), their dismissal and the appeals they were asked (the ask budget's rows; the
    appeal events name a keyed hash only and go with the raw events' retention). The comp itself
    stays, like the financial records."""
    comp = session.scalar(select(Comp).where(Comp.reader_id == reader.id))
    if comp is not None:
        comp.note = None
    session.execute(delete(MeterRead).where(MeterRead.reader == reader.external_id))
    session.execute(delete(AppealDismissal).where(AppealDismissal.reader == reader.external_id))
    session.execute(delete(AppealAsk).where(AppealAsk.subject == reader.external_id))
