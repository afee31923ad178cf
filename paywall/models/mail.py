"""The mailer's ledgers: appeal sends, yearly receipts, and the suppression list.

No table here holds an email address or a name: the ledgers key on the reader (or a hash of a guest
donor's address) and the suppression list on a SHA-256 of the normalised address, so erasing a
reader leaves nothing personal behind in mail tables.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from paywall import clock
from paywall.db import Base


class AppealSend(Base):
    """One (campaign, reader) pair, claimed before the message is handed to SMTP.

    ``state``: ``claimed`` (a sender took it; if it stays so, the outcome is unknown and it is never
    resent automatically), ``sent``, ``failed`` (permanently refused), ``unknown`` (the connection
    dropped after the message was transmitted, so the server may have accepted it).
    """

    __tablename__ = "appeal_sends"
    __table_args__ = (
        UniqueConstraint("campaign", "reader_id"),
        Index("ix_appeal_sends_campaign_state", "campaign", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign: Mapped[str] = mapped_column(String(100))
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), default="claimed")
    claimed_at: Mapped[dt.datetime] = mapped_column(default=clock.now)
    finished_at: Mapped[dt.datetime | None]
    message_id: Mapped[str | None] = mapped_column(String(255))
    # SMTP code and text of a refusal; never the address.
    error: Mapped[str | None] = mapped_column(Text)


class YearlyReceipt(Base):
    """One yearly donation summary per (donor, year), claimed before sending like an appeal.

    ``donor_key``: ``reader:<id>`` for a known reader, ``email:<sha256>`` for a guest donor.
    """

    __tablename__ = "yearly_receipts"
    __table_args__ = (UniqueConstraint("donor_key", "year"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    donor_key: Mapped[str] = mapped_column(String(100))
    year: Mapped[int]
    state: Mapped[str] = mapped_column(String(16), default="claimed")
    claimed_at: Mapped[dt.datetime] = mapped_column(default=clock.now)
    finished_at: Mapped[dt.datetime | None]
    message_id: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)


class Suppression(Base):
    """An address mail is never sent to again (hard bounce, complaint, or an operator's decision).

    ``email_hash`` is the SHA-256 hex of the trimmed, lower-cased address (see mail.suppression).
    """

    __tablename__ = "mail_suppressions"

    id: Mapped[int] = mapped_column(primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # hard_bounce, complaint, manual
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.now)
