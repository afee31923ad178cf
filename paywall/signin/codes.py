"""The one-time sign-in secrets: a 6-digit code and a link token per emailed sign-in.

Only SHA-256 hashes of the code and the token are stored. The newest row per (address, purpose) is
the live one: issuing a new code ends the older ones, and with them the address's lockout (wrong
codes are counted on the live row). Using a code or token is a conditional UPDATE (``... WHERE
used_at IS NULL``), so of two racing uses exactly one wins on SQLite and PostgreSQL alike.

A 6-digit code has a million values; ``max_failed_codes`` (5) wrong tries per code, a fresh code
only through the rate-limited sign-in request, and the code's 15 minutes keep guessing hopeless.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, insert, or_, select, update
from sqlalchemy.orm import Session

from paywall.config import Settings
from paywall.models import Reader, SigninCode
from paywall.signin.identity import normalise_email
from paywall.signin.settings import signin_settings

CODE_DIGITS = 6


def hash_secret(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def email_hash(email: str) -> str:
    return hash_secret(normalise_email(email))


@dataclass(frozen=True)
class Issued:
    code: str
    token: str
    expires_at: dt.datetime


class CodeRefused(Exception):
    """A code or token that does not sign anyone in. ``reason``: wrong, expired, used, locked."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Fresh:
    """A new code and link token for one address, made before any database work (see ``store``)."""

    code: str
    token: str
    email: str
    purpose: str
    return_url: str | None
    created_at: dt.datetime
    expires_at: dt.datetime


def fresh(
    settings: Settings,
    email: str,
    *,
    now: dt.datetime,
    purpose: str = "signin",
    return_url: str | None = None,
) -> Fresh:
    """Draw a code and a token for ``email``; nothing is stored yet."""
    if purpose not in ("signin", "delete"):
        raise ValueError(f"codes are issued for signin or delete, not {purpose!r}")
    return Fresh(
        code=f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}",
        token=secrets.token_urlsafe(32),
        email=normalise_email(email),
        purpose=purpose,
        return_url=return_url,
        created_at=now,
        expires_at=now + signin_settings(settings).code_ttl,
    )


# Built once: on the Table, not the mapped class, so executing them skips the ORM's bulk-update
# and cache-key work per call (a sign-in is otherwise mostly SQLAlchemy's own CPU).
_CODES = SigninCode.metadata.tables["signin_codes"]
_END_OLDER = (
    update(_CODES)
    .where(
        _CODES.c.email_hash == bindparam("hashed"),
        _CODES.c.purpose == bindparam("for_purpose"),
        _CODES.c.used_at.is_(None),
    )
    .values(used_at=bindparam("ended_at"), email=None)
)
_INSERT = insert(_CODES)


def store(session: Session, new: Fresh) -> Issued:
    """Store ``new`` as the live code of its address; every older live one for that purpose ends.

    Two statements: on SQLite they run under the database's one write lock, which the access
    check's meter writes wait for, so a sign-in holds it as briefly as it can."""
    hashed = hash_secret(new.email)
    session.execute(_END_OLDER, {"hashed": hashed, "for_purpose": new.purpose, "ended_at": new.created_at})
    session.execute(
        _INSERT,
        {
            "email_hash": hashed,
            "code_hash": hash_secret(new.code),
            "token_hash": hash_secret(new.token),
            "purpose": new.purpose,
            "email": new.email,
            "return_url": new.return_url,
            "failed_attempts": 0,
            "created_at": new.created_at,
            "expires_at": new.expires_at,
        },
    )
    return Issued(code=new.code, token=new.token, expires_at=new.expires_at)


def issue(
    session: Session,
    settings: Settings,
    email: str,
    *,
    now: dt.datetime,
    purpose: str = "signin",
    return_url: str | None = None,
) -> Issued:
    """A new code and link token for ``email``; every older live one for it and ``purpose`` ends."""
    return store(session, fresh(settings, email, now=now, purpose=purpose, return_url=return_url))


def issue_return_token(session: Session, settings: Settings, reader: Reader, *, now: dt.datetime) -> str:
    """A one-time token that signs ``reader`` in once through POST /v1/signin/exchange ``{"token"}``.

    For a site with its own backend: /thanks sends the payer to ``[signin] return_url`` with it."""
    token = secrets.token_urlsafe(32)
    session.add(
        SigninCode(
            email_hash=hash_secret(f"reader:{reader.id}"),
            code_hash="",
            token_hash=hash_secret(token),
            purpose="return",
            reader_id=reader.id,
            created_at=now,
            expires_at=now + signin_settings(settings).code_ttl,
        )
    )
    session.flush()
    return token


def _use(session: Session, row: SigninCode, now: dt.datetime) -> None:
    """Mark ``row`` used, or raise ``used`` when another request used it first."""
    result = session.execute(
        update(SigninCode)
        .where(SigninCode.id == row.id, SigninCode.used_at.is_(None))
        .values(used_at=now, email=None)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        raise CodeRefused("used", "This code was already used. Ask for a new one.")


def check_code(
    session: Session, settings: Settings, email: str, code: str, *, now: dt.datetime, purpose: str = "signin"
) -> SigninCode:
    """The live row ``code`` proves for ``email``, now used; raises CodeRefused otherwise.

    A wrong code counts against the address (committed by the caller's transaction even though
    the answer is an error: the caller must commit before answering)."""
    limit = signin_settings(settings).max_failed_codes
    # FOR UPDATE: concurrent tries of one address queue here, so each sees the count the previous
    # one left and the lockout holds at exactly ``limit`` guesses (on SQLite writers queue anyway).
    row = session.scalar(
        select(SigninCode)
        .where(SigninCode.email_hash == email_hash(email), SigninCode.purpose == purpose)
        .order_by(SigninCode.created_at.desc(), SigninCode.id.desc())
        .limit(1)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if row is None or row.used_at is not None:
        raise CodeRefused("used", "This code is not valid any more. Ask for a new one.")
    if row.failed_attempts >= limit:
        raise CodeRefused("locked", "Too many wrong codes. Ask for a new code.")
    if now >= row.expires_at:
        raise CodeRefused("expired", "This code has expired. Ask for a new one.")
    if not hmac.compare_digest(row.code_hash, hash_secret(code.strip())):
        session.execute(
            update(SigninCode)
            .where(SigninCode.id == row.id)
            .values(failed_attempts=SigninCode.failed_attempts + 1)
            .execution_options(synchronize_session=False)
        )
        raise CodeRefused("wrong", "This code is not right. Check the mail and try again.")
    _use(session, row, now)
    return row


def check_token(session: Session, token: str, *, now: dt.datetime, purposes: tuple[str, ...]) -> SigninCode:
    """The row a link or return token belongs to, now used; raises CodeRefused otherwise."""
    row = session.scalar(
        select(SigninCode).where(
            SigninCode.token_hash == hash_secret(token), SigninCode.purpose.in_(purposes)
        )
    )
    if row is None or row.used_at is not None:
        raise CodeRefused("used", "This link is not valid any more. Ask for a new one.")
    if now >= row.expires_at:
        raise CodeRefused("expired", "This link has expired. Ask for a new one.")
    email = row.email
    _use(session, row, now)
    row.email = email  # the caller still needs whom the link proves; the stored copy is blanked
    return row


def purge_expired(session: Session, now: dt.datetime) -> int:
    """Delete rows expired a day ago or more (kept a day so a late use says "expired", not "wrong")."""
    result = session.execute(delete(SigninCode).where(SigninCode.expires_at < now - dt.timedelta(days=1)))
    return int(getattr(result, "rowcount", 0) or 0)


def erase_reader_codes(session: Session, reader: Reader, emails: Iterable[str]) -> int:
    """On erasure: delete the reader's codes and return tokens, and every code sent to one of their
    addresses (live or not: each row says an address asked to sign in). Returns how many went."""
    hashes = {email_hash(e) for e in emails if e and e.strip()} | {hash_secret(f"reader:{reader.id}")}
    result = session.execute(
        delete(SigninCode)
        .where(or_(SigninCode.reader_id == reader.id, SigninCode.email_hash.in_(sorted(hashes))))
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
