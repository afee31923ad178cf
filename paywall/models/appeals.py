"""Appeal measurement: raw events, their daily counts, and the asks that spend a reader's budget.

No table here names a reader or a browser in the clear except ``appeal_asks``, which is keyed like
the meter (the site's reader id string, or " anon:" + browser id) because the access check and the
mailer read it by that key; erasing a reader deletes its asks, and the rollup deletes asks older
than ``[appeal] per_days`` (they no longer count). ``appeal_events`` stores a keyed hash of the
subject (paywall/experiments/asks.py) and is kept ``[appeal] keep_events_days``; ``appeal_daily``
holds counts only and is kept for good; ``appeal_exposures`` holds one row per reader and
experiment, keyed by the same hash (no personal data), kept for good: the readers the results
divide by; ``appeal_folds`` says when each day was last counted.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Date, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from paywall import clock
from paywall.db import Base
from paywall.models.access import ReaderKey

BIGINT = BigInteger().with_variant(Integer(), "sqlite")

# What the widget reports (``type``), and what a click was on (``action``).
EVENT_TYPES = ("view", "impression", "click", "close")
ACTIONS = ("subscribe", "donate", "signin", "register")


class AppealEvent(Base):
    """One thing the widget saw happen to an appeal or gate on one page.

    ``view``: the page was eligible for the ask (every arm, holdback too: nothing is shown to a
    holdback reader, but the view is the denominator its lift is measured against);
    ``impression``: the appeal or gate scrolled into view; ``click`` (``action``); ``close``.
    ``experiment``/``variant`` are "" when no experiment ran on the channel.
    """

    __tablename__ = "appeal_events"
    __table_args__ = (
        Index("ix_appeal_events_at", "at"),
        # One view, impression and close per ask, one click per ask and action: a beacon sent
        # twice (or replayed by a script) counts once.
        Index("ix_appeal_events_once", "ask", "type", "action", unique=True),
    )

    id: Mapped[int] = mapped_column(BIGINT, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=clock.now)
    type: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(100))
    experiment: Mapped[str] = mapped_column(String(64), default="")
    variant: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(16), default="")
    # paywall.experiments.asks.subject_hash: counts one subject's events together, names nobody.
    subject: Mapped[str] = mapped_column(String(32))
    # The ask's MAC (paywall.experiments.asks.ask_key): which page view the event belongs to.
    ask: Mapped[str] = mapped_column(String(32))


class AppealDaily(Base):
    """Counts of ``appeal_events`` per UTC day, kept after the raw events are pruned."""

    __tablename__ = "appeal_daily"

    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    experiment: Mapped[str] = mapped_column(String(64), primary_key=True)
    variant: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(100), primary_key=True)
    type: Mapped[str] = mapped_column(String(16), primary_key=True)
    action: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(BIGINT, default=0)
    # Distinct subjects that day (a day's distinct count; days are not added up into readers).
    subjects: Mapped[int] = mapped_column(BIGINT, default=0)


class AppealExposure(Base):
    """A reader (the subject hash) exposed to an experiment: the first ``view`` the rollup saw.

    The unit of randomisation is the reader, so the results divide by readers, not by views (a
    holdback reader reports a view on every page; a variant's reader stops being asked at the
    budget or after Close). Derived by ``paywall.experiments.rollup.fold`` from raw ``view``
    events; kept for good (a hash, an arm, a channel and a time: nobody is named)."""

    __tablename__ = "appeal_exposures"

    experiment: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(32), primary_key=True)
    variant: Mapped[str] = mapped_column(String(64))
    # The channel of the first view (the alphabetically first, for several on that first day).
    channel: Mapped[str] = mapped_column(String(100))
    first_at: Mapped[dt.datetime]


class AppealFold(Base):
    """When the rollup last counted a UTC day: a day with raw events newer than this is counted
    again, however old (a worker that was down for days loses nothing)."""

    __tablename__ = "appeal_folds"

    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    folded_at: Mapped[dt.datetime]


class AppealAsk(Base):
    """One ask that spends the ask budget: a footer appeal seen, or an appeal mail sent."""

    __tablename__ = "appeal_asks"
    __table_args__ = (Index("ix_appeal_asks_subject_at", "subject", "asked_at"),)

    id: Mapped[int] = mapped_column(BIGINT, primary_key=True)
    # The access subject: the site's reader id, or " anon:" + browser id (as meter_reads.reader).
    subject: Mapped[str] = mapped_column(ReaderKey)
    asked_at: Mapped[dt.datetime] = mapped_column(default=clock.now)
    # "footer", or the mail campaign's name.
    channel: Mapped[str] = mapped_column(String(100))
    # The footer ask whose impression spent it (unique: one ask, one spend); NULL for mail.
    ask: Mapped[str | None] = mapped_column(String(32), unique=True)
