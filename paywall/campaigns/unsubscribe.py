"""Unsubscribing from appeals: what the one-click POST does (the page is in views.py)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from paywall import clock
from paywall.readers.service import find_reader


def unsubscribe(session: Session, reader_external_id: str) -> str:
    """Stop appeals to a reader: 'unsubscribed', 'already_unsubscribed' or 'not_found' (idempotent).

    Receipts and payment notices are not appeals and still go out.
    """
    reader = find_reader(session, reader_external_id)
    if reader is None:
        return "not_found"
    if reader.unsubscribed_at is not None:
        return "already_unsubscribed"
    reader.unsubscribed_at = clock.now()
    reader.updated_at = clock.now()
    session.flush()
    return "unsubscribed"


def mask_email(email: str | None) -> str:
    """``a…@example.org``: enough for the reader to recognise, not enough to leak it."""
    if not email or "@" not in email:
        return ""
    local, _, domain = email.partition("@")
    return f"{local[:1]}…@{domain}"
