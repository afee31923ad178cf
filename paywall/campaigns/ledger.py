"""The send-once ledger (``appeal_sends``): one row per (campaign, reader), unique on the pair.

A row is ``claimed`` before its message goes to SMTP, then marked ``sent``, ``failed`` or
``unknown``; a reader in the holdback of the campaign's experiment is claimed and marked
``holdback`` in one transaction, and never mailed. These functions run inside the caller's transaction and never commit; the rule that
orders claims, sends and marks is in sending.py.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import String, Table, bindparam, delete, func, literal, select, update
from sqlalchemy.orm import Session

from paywall import clock
from paywall.campaigns.asking import ASKED_STATES, Asked, record_asked
from paywall.campaigns.selection import Candidate, exclusion
from paywall.db import UTCDateTime, dialect_insert
from paywall.mail.smtp import Delivery
from paywall.mail.suppression import suppress
from paywall.models import AppealSend, Reader

_LEDGER = cast(Table, AppealSend.__table__)
_READERS = cast(Table, Reader.__table__)

# Ledger state -> the tally word for a reader found already in the ledger.
EXISTING = {
    "sent": "already_sent",
    "claimed": "claimed",
    "unknown": "claimed",
    "failed": "already_failed",
    # In the holdback of the experiment running on the campaign: never mailed (paywall/campaigns/asking.py).
    "holdback": "holdback",
}


@dataclass
class Mark:
    """The outcome to record on a claimed row (and the address to suppress on a hard bounce)."""

    row_id: int
    state: str
    message_id: str | None = None
    error: str | None = None
    suppress_email: str | None = None
    # The ask a message that went out records (sent or unknown), with the mark, at most once.
    asked: Asked | None = None


# Both statements are built once (per dialect) and run with parameters: building them for every
# message cost more than executing them.
_MARK = (
    update(_LEDGER)
    .where(_LEDGER.c.id == bindparam("row_id"))
    .values(
        state=bindparam("state"),
        message_id=bindparam("message_id"),
        error=bindparam("error"),
        finished_at=bindparam("finished_at", type_=UTCDateTime()),
    )
)


@functools.cache
def _claim_statement(dialect: str) -> Any:
    """INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING id, for one reader still eligible."""
    eligible = select(
        bindparam("campaign", type_=String()),
        _READERS.c.id,
        literal("claimed", String()),
        bindparam("claimed_at", type_=UTCDateTime()),
    ).where(
        _READERS.c.id == bindparam("reader_id"),
        _READERS.c.email == bindparam("email"),
        _READERS.c.marketing_opt_in.is_(True),
        _READERS.c.unsubscribed_at.is_(None),
        _READERS.c.erased_at.is_(None),
    )
    return (
        dialect_insert(dialect, _LEDGER)
        .from_select(["campaign", "reader_id", "state", "claimed_at"], eligible)
        .on_conflict_do_nothing(index_elements=["campaign", "reader_id"])
        .returning(_LEDGER.c.id)
    )


def states(session: Session, campaign: str) -> dict[int, str]:
    """The ledger of ``campaign`` so far: reader id -> state."""
    rows = session.execute(
        select(AppealSend.reader_id, AppealSend.state).where(AppealSend.campaign == campaign)
    )
    return {reader_id: state for reader_id, state in rows}


def claim(session: Session, campaign: str, cand: Candidate) -> int | None:
    """Insert the ledger row if the reader is still eligible at the same address; its id, or None.

    One statement: the unique key decides between racing senders, and the reader's unsubscribe or
    erasure is re-checked at the same instant.
    """
    conn = session.connection()
    params = {
        "campaign": campaign,
        "reader_id": cand.reader_id,
        "email": cand.email,
        "claimed_at": clock.now(),
    }
    row_id: int | None = conn.execute(_claim_statement(conn.dialect.name), params).scalar()
    return row_id


def why_not(session: Session, campaign: str, reader_id: int) -> str:
    """Why a claim inserted nothing: the ledger row exists, or the reader changed since selection."""
    state = session.scalar(
        select(AppealSend.state).where(AppealSend.campaign == campaign, AppealSend.reader_id == reader_id)
    )
    if state is not None:
        return EXISTING.get(state, "claimed")
    reader = session.get(Reader, reader_id)
    if reader is None:
        return "erased"
    if not reader.marketing_opt_in:
        return "opted_out"
    return exclusion(reader.email, reader.unsubscribed_at, reader.erased_at, set()) or "address_changed"


def outcome(delivery: Delivery, row_id: int, email: str, message_id: str | None) -> tuple[str, Mark]:
    """The tally word for a delivery, and the mark that records it on the claimed row."""
    if delivery.status == "sent":
        return "sent", Mark(row_id, "sent", message_id)
    if delivery.status == "unknown":
        return "unknown", Mark(row_id, "unknown", message_id, delivery.error)
    mark = Mark(row_id, "failed", message_id, delivery.error, email if delivery.hard_bounce else None)
    return "failed", mark


def apply_marks(session: Session, marks: list[Mark], now: dt.datetime | None = None) -> None:
    """Record ``marks`` on their rows, suppress hard-bounced addresses, and empty the list.

    ``now`` (default: the clock) is the run's time: the asks the messages spend are dated by it,
    the time the run planned the ask budget with."""
    if not marks:
        return
    now = now or clock.now()
    rows = [
        {
            "row_id": m.row_id,
            "state": m.state,
            "message_id": m.message_id,
            "error": m.error,
            "finished_at": now,
        }
        for m in marks
    ]
    session.connection().execute(_MARK, rows)
    for mark in marks:
        if mark.asked is not None and mark.state in ASKED_STATES:
            record_asked(session, mark.asked, now)
        if mark.suppress_email:
            suppress(session, mark.suppress_email, reason="hard_bounce", detail=mark.error)
    marks.clear()


def hold(session: Session, row_id: int) -> None:
    """Mark a claimed row ``holdback``: the reader is in the experiment's holdback, never mailed."""
    params = {
        "row_id": row_id,
        "state": "holdback",
        "message_id": None,
        "error": None,
        "finished_at": clock.now(),
    }
    session.connection().execute(_MARK, params)


def release_unattempted(session: Session, row_ids: list[int]) -> None:
    """Delete these rows if still only ``claimed``: their messages were never handed to SMTP."""
    for row_id in row_ids:
        session.execute(delete(_LEDGER).where(_LEDGER.c.id == row_id, _LEDGER.c.state == "claimed"))


def release_claims(session: Session, campaign: str, *, reader_ids: list[int] | None = None) -> int:
    """Forget claimed/unknown rows (all of the campaign's, or these readers'): the next run sends them.

    Only for an operator who has checked that those messages did not go out.
    """
    stmt = delete(AppealSend).where(
        AppealSend.campaign == campaign, AppealSend.state.in_(("claimed", "unknown"))
    )
    if reader_ids is not None:
        stmt = stmt.where(AppealSend.reader_id.in_(reader_ids))
    return int(session.execute(stmt).rowcount)  # type: ignore[attr-defined]


def ledger_summary(session: Session, campaign: str) -> dict[str, int]:
    """How many ledger rows of ``campaign`` are in each state."""
    rows = session.execute(
        select(AppealSend.state, func.count())
        .where(AppealSend.campaign == campaign)
        .group_by(AppealSend.state)
    )
    return {state: int(count) for state, count in rows}
