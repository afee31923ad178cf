"""Reader records: create or update from the site, and look up. Erasure: paywall/erasure.py."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from paywall import clock
from paywall.models import Reader


def find_reader(session: Session, external_id: str) -> Reader | None:
    return session.scalar(select(Reader).where(Reader.external_id == external_id))


def ensure_reader(session: Session, external_id: str) -> Reader:
    """The reader with this id, created (without personal data) if the site never registered it.

    Safe under concurrency: a racing insert of the same id is caught in a savepoint and re-read.
    """
    reader = find_reader(session, external_id)
    if reader is not None:
        return reader
    try:
        with session.begin_nested():
            reader = Reader(external_id=external_id)
            session.add(reader)
            session.flush()
        return reader
    except IntegrityError:
        found = find_reader(session, external_id)
        if found is None:
            raise
        return found


def upsert_reader(session: Session, external_id: str, data: dict[str, Any]) -> tuple[Reader, bool]:
    """Create or update a reader from the site's data; returns (reader, created).

    The site vouches for its readers: a reader it puts is registered (``registered_at``, kept from
    the first time), so they pass a registration wall and get the registered allowance.
    """
    reader = find_reader(session, external_id)
    created = False
    if reader is None:
        reader = ensure_reader(session, external_id)
        created = True
    for key in ("email", "name", "marketing_opt_in"):
        if key in data:
            value = data[key]
            if key == "email" and value:
                value = value.strip()
            setattr(reader, key, value)
    if data.get("marketing_opt_in"):
        # Opting in again is a fresh consent: it clears an earlier unsubscribe.
        reader.unsubscribed_at = None
    if reader.erased_at is not None and (data.get("email") or data.get("name")):
        reader.erased_at = None
    now = clock.now()
    if reader.registered_at is None:
        reader.registered_at = now
    reader.updated_at = now
    session.flush()
    return reader, created
