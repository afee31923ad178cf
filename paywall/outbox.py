"""Queue supporter mail from inside another transaction (the webhook's), once per dedupe key."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from paywall.models.outbox import OutboxMessage

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
