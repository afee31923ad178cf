"""The suppression list: addresses that hard-bounced (or an operator blocked) get no more mail."""

from __future__ import annotations

import hashlib

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from paywall import clock
from paywall.db import insert_ignore
from paywall.models.mail import Suppression


def email_hash(email: str) -> str:
    """SHA-256 hex of the trimmed, lower-cased address: the list never stores the address itself."""
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()


def is_suppressed(session: Session, email: str) -> bool:
    """Whether the address is on the list."""
    return (
        session.scalar(select(Suppression.id).where(Suppression.email_hash == email_hash(email))) is not None
    )


def suppressed_hashes(session: Session) -> set[str]:
    """Every suppressed hash (for filtering a whole segment at once)."""
    return set(session.scalars(select(Suppression.email_hash)))


def suppress(session: Session, email: str, *, reason: str, detail: str | None = None) -> str:
    """Add an address: 'suppressed' or 'already_suppressed'."""
    added = insert_ignore(
        session,
        Suppression,
        {"email_hash": email_hash(email), "reason": reason, "detail": detail, "created_at": clock.now()},
        ["email_hash"],
    )
    return "suppressed" if added else "already_suppressed"


def unsuppress(session: Session, email: str) -> str:
    """Remove an address (the reader fixed it, or asked): 'removed' or 'not_found'."""
    result = session.execute(delete(Suppression).where(Suppression.email_hash == email_hash(email)))
    return "removed" if result.rowcount else "not_found"  # type: ignore[attr-defined]
