"""The outbox: mail the sync decides to send, written in the webhook's own transaction."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from paywall import clock
from paywall.db import Base


class OutboxMessage(Base):
    """One message to send, once. ``dedupe_key`` is unique (e.g. ``receipt:ch_…``), so a
    duplicate or replayed event cannot queue the same mail twice.

    ``status``: ``pending``, ``sending`` (claimed by a worker), ``sent``, ``failed`` (permanent),
    ``skipped`` (nothing to send to, e.g. no address or unsubscribed).
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_due", "status", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    reader_id: Mapped[int | None] = mapped_column(ForeignKey("readers.id"), index=True)
    to_email: Mapped[str | None] = mapped_column(String(320))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    due_at: Mapped[dt.datetime] = mapped_column(default=clock.now)
    created_at: Mapped[dt.datetime] = mapped_column(default=clock.now)
    claimed_at: Mapped[dt.datetime | None]
    sent_at: Mapped[dt.datetime | None]
    message_id: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
