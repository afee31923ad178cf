"""Reader tokens: proof that this device signed in as a reader (a JWT, EdDSA, ``pur`` = ``reader``).

A reader token is issued when a reader signs in (code, link, or paying through /thanks) and kept by
the site or the widget (in the site's own localStorage). Fresh access tokens are issued from it. It
carries ``sub`` (the reader id) and ``sv``, the reader's session version when it was issued: signing
out everywhere increments the version, so every older token stops working at once. A valid
signature is therefore not enough; ``reader_from_token`` also checks the version in the database.

An anonymous browser id is never a reader: only a reader token names one (paywall/access/browser.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from paywall import signing
from paywall.config import Settings
from paywall.models import Reader
from paywall.schemas import validate_identifier
from paywall.signin.settings import signin_settings

PURPOSE = "reader"


def issue_reader_token(settings: Settings, reader: Reader) -> tuple[str, dt.datetime]:
    """A reader token for ``reader`` (its current session version) and when it expires."""
    claims: dict[str, Any] = {"sub": reader.external_id, "sv": reader.session_version}
    return signing.sign(settings, claims, purpose=PURPOSE, ttl=signin_settings(settings).session_ttl)


def token_claims(settings: Settings, token: str | None) -> tuple[str, int] | None:
    """(reader id, session version) of a well-signed, unexpired reader token; None otherwise.

    Checks only the signature and shape: call ``reader_from_token`` to know the session still holds.
    """
    if not token or not isinstance(token, str):
        return None
    try:
        claims = signing.verify(settings, token, purpose=PURPOSE)
    except signing.InvalidToken:
        return None
    sub, version = claims.get("sub"), claims.get("sv")
    if not isinstance(sub, str) or not isinstance(version, int) or isinstance(version, bool):
        return None
    try:
        validate_identifier(sub)
    except ValidationError:
        return None
    return sub, version


def reader_from_token(conn: Session | Connection, settings: Settings, token: str | None) -> str | None:
    """The reader id a reader token names, if it is valid and its session was not ended; else None."""
    claims = token_claims(settings, token)
    if claims is None:
        return None
    reader, version = claims
    row = conn.execute(
        select(Reader.session_version, Reader.erased_at).where(Reader.external_id == reader)
    ).first()
    if row is None or row.erased_at is not None or row.session_version != version:
        return None
    return reader
