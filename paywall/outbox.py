"""Queue supporter mail from inside another transaction (the webhook's), once per dedupe key."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from paywall.models.outbox import OutboxMessage
from paywall.readers.erased import Subject

# Kinds the sync queues; the mailer knows how to render each.
KINDS = ("donation_receipt", "payment_failed", "trial_ending")


def enqueue(
    session: Session,
    *,
    kind: str,
    dedupe_key: str,
    to_email: str | None,
    reader_id: int | None,
    data: dict[str, Any],
) -> str:
    """Queue a message unless one with ``dedupe_key`` exists: 'queued' or 'duplicate'.

    Runs in a savepoint, so a racing insert of the same key leaves the caller's transaction intact.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown outbox kind {kind!r}")
    if session.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == dedupe_key)) is not None:
        return "duplicate"
    try:
        with session.begin_nested():
            session.add(
                OutboxMessage(
                    dedupe_key=dedupe_key, kind=kind, to_email=to_email, reader_id=reader_id, data=data
                )
            )
            session.flush()
    except IntegrityError:
        return "duplicate"
    return "queued"


def erase_reader_mail(session: Session, subject: Subject) -> int:
    """Delete every outbox row for this person (by reader, or addressed to one of their addresses),
    sent or not: each holds their address and name. Returns how many went.

    A later event about the same charge queues nothing again: the sync no longer knows an address
    for an erased person (paywall.readers.erased)."""
    result = session.execute(
        delete(OutboxMessage)
        .where(
            or_(
                OutboxMessage.reader_id == subject.reader.id,
                func.lower(OutboxMessage.to_email).in_(subject.lowered_emails()),
            )
        )
        .execution_options(synchronize_session="fetch")
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
