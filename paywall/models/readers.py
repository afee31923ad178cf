"""Readers (the site's own ids) and the API keys that call this service."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from paywall import clock
from paywall.db import Base


class Reader(Base):
    """A reader as the site knows them. ``external_id`` is the site's opaque id (1-128 chars).

    Rows are also created on the fly when Stripe names a reader the site never registered (from
    ``client_reference_id`` or ``metadata.reader``), so payments always have someone to link to.
    Erasure blanks the personal fields and keeps the row, so financial records stay whole.
    """

    __tablename__ = "readers"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    marketing_opt_in: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set when the reader asked to stop receiving appeals (one-click unsubscribe).
    unsubscribed_at: Mapped[dt.datetime | None]
    erased_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.now)
    updated_at: Mapped[dt.datetime] = mapped_column(default=clock.now, onupdate=clock.now)
    # The trimmed, lower-cased address the reader proved they own by signing in with a code sent to
    # it (paywall/signin). Unique: one verified email names exactly one reader. ``email`` above is
    # what the site or Stripe says and is not proof of anything.
    verified_email: Mapped[str | None] = mapped_column(String(320), unique=True)
    email_verified_at: Mapped[dt.datetime | None]
    # Signed in here, or vouched for by the site (PUT /v1/readers): who passes a registration wall.
    # Anonymous browser ids never have a row, so they are never registered.
    registered_at: Mapped[dt.datetime | None]
    # Every reader token carries it (claim ``sv``); signing out everywhere increments it.
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ApiKey(Base):
    """An API key. Only the SHA-256 of its secret part is stored; the key id is its public prefix."""

    __tablename__ = "api_keys"
    __table_args__ = (
        UniqueConstraint("name"),
        CheckConstraint("role IN ('site', 'finance', 'admin')", name="role"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.now)
    revoked_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]


class ErasedIdentity(Base):
    """What recognises an erased person in Stripe data that arrives later, so it is never written back.

    ``identity``: ``customer:<Stripe customer id>`` or ``email:<SHA-256 hex of the trimmed,
    lower-cased address>`` (paywall/readers/erased.py). An unkeyed hash on purpose: it must match in
    every process that syncs (webhook, replay, reconcile, CLI) across signing-key rotations, like the
    suppression list's; it says only that someone with a guessed address asked to be erased.
    """

    __tablename__ = "erased_identities"

    id: Mapped[int] = mapped_column(primary_key=True)
    identity: Mapped[str] = mapped_column(String(100), unique=True)
    erased_at: Mapped[dt.datetime] = mapped_column(default=clock.now)


class ReportSession(Base):
    """A /reports sign-in. The cookie carries a random token; only its SHA-256 is stored here.

    Signing out deletes the row, so the session ends on the server: a copy of the cookie taken
    before is worth nothing after."""

    __tablename__ = "report_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.now)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


class SigninCode(Base):
    """One emailed sign-in: a 6-digit code and a one-time link token, both stored as SHA-256 only.

    ``email_hash`` is the SHA-256 hex of the normalised address (how rows are found); the
    newest row per address is the live one, and sending a new code ends the older ones. ``purpose``:
    ``signin``, ``delete`` (the code that confirms "Delete my account") or ``return`` (a one-time
    token for the site's [signin] return_url, no code, no mail). ``failed_attempts`` counts
    wrong codes: at the limit the address is locked until a new code is sent.
    """

    __tablename__ = "signin_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    purpose: Mapped[str] = mapped_column(String(16), default="signin", server_default="signin")
    # The address, kept only while the code is live (the exchange must know whom it proves): it is
    # blanked when the code is used and the row is purged once expired (paywall/signin/codes.py).
    email: Mapped[str | None] = mapped_column(String(320))
    # A one-time return token (purpose ``return``, from /thanks) names its reader, not an address.
    reader_id: Mapped[int | None] = mapped_column(ForeignKey("readers.id"))
    # Where the link in the mail returns the reader (already checked against the allowed origins).
    return_url: Mapped[str | None] = mapped_column(Text)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.now)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    used_at: Mapped[dt.datetime | None]
