"""What the access rules read and answer: the facts about a reader, the trace, the decision.

Plain frozen dataclasses and two small time helpers, shared by the rules (paywall/access/rules.py),
the levels (paywall/access/levels.py) and the state loader (paywall/access/state.py).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from paywall.access.settings import AccessSettings
from paywall.clock import isoformat

ALLOWED_REASONS = ("comp", "subscription", "trial", "grace_period", "donation", "metered", "free")
DENIED_REASONS = ("meter_exhausted", "supporters_only", "registration_required")
# The reasons that are an entitlement (a supporter's access, not the meter or a free article).
ENTITLEMENTS = ("comp", "subscription", "trial", "grace_period", "donation")
# What a site asks for an article (POST /v1/access "level"); see paywall/access/levels.py.
LEVELS = ("free", "metered", "registered", "supporters")
DEFAULT_LEVEL = "metered"
GRACE_STATUSES = ("past_due", "unpaid")
# A recurring donation in one of these states is a current donor (appeal paused).
DONOR_STATUSES = ("active", "trialing", "past_due")


@dataclass(frozen=True)
class CompFact:
    until: dt.datetime
    note: str | None = None


@dataclass(frozen=True)
class SubscriptionFact:
    stripe_subscription_id: str
    status: str
    kind: str = "subscription"
    current_period_start: dt.datetime | None = None
    current_period_end: dt.datetime | None = None
    cancel_at_period_end: bool = False
    trial_end: dt.datetime | None = None
    payment_failed_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    # Stripe's pause_collection: behavior (None: collection not paused) and resumes_at.
    pause_collection_behavior: str | None = None
    pause_collection_resumes_at: dt.datetime | None = None

    def collection_paused(self, now: dt.datetime) -> bool:
        """Whether Stripe's collection is paused at ``now`` (a pause is over at ``resumes_at``)."""
        if self.pause_collection_behavior is None:
            return False
        resumes = self.pause_collection_resumes_at
        return resumes is None or now < resumes


@dataclass(frozen=True)
class PaymentFact:
    stripe_charge_id: str
    kind: str
    amount_minor: int
    paid_at: dt.datetime
    refunded_minor: int = 0
    dispute_status: str | None = None
    disputed_minor: int = 0
    stripe_subscription_id: str | None = None

    @property
    def voided(self) -> str | None:
        """Why this payment grants nothing (refunded in full, lost dispute), or None if it stands."""
        if self.amount_minor > 0 and self.refunded_minor >= self.amount_minor:
            return "refunded"
        if self.dispute_status == "lost" or self.disputed_minor > 0:
            return "lost in a dispute"
        return None


@dataclass(frozen=True)
class ReaderState:
    """Everything the rules need about one reader id, loaded in one read (see state.py)."""

    reader: str
    article: str | None = None
    comp: CompFact | None = None
    subscriptions: tuple[SubscriptionFact, ...] = ()
    payments: tuple[PaymentFact, ...] = ()
    dismissed_at: dt.datetime | None = None
    # Articles this reader id has already used the allowance on in the current meter period.
    meter_articles: frozenset[str] = frozenset()
    # The highest meter slot taken in the period (0: none); the next free read claims this + 1.
    meter_slot: int = 0
    # Signed in here or registered by the site (readers.registered_at); never for an anonymous id.
    registered: bool = False
    # An anonymous browser (client mode): loaded with its meter and dismissal only.
    anonymous: bool = False
    # The reader row's session version (None: no such reader, or erased), read with the state so
    # POST /support/access checks a reader token's ``sv`` without a second query. Not a rule input.
    session_version: int | None = None
    # Asks (footer appeals seen, appeal mails sent) in the last ``[appeal] per_days`` days; loaded
    # only while ``[appeal] max_asks`` is set (paywall/access/asking.py).
    asks: int = 0


@dataclass(frozen=True)
class Meter:
    used: int
    limit: int
    resets_at: dt.datetime

    def as_dict(self) -> dict[str, Any]:
        return {"used": self.used, "limit": self.limit, "resets_at": isoformat(self.resets_at)}


@dataclass(frozen=True)
class Step:
    """One line of the trace: a rule, whether it applied, and why."""

    rule: str
    applies: bool
    why: str

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "applies": self.applies, "why": self.why}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    until: dt.datetime | None
    meter: Meter | None
    appeal: bool
    trace: tuple[Step, ...] = field(default=())
    # True when this answer spends the allowance on a new article (the caller records the read).
    records_read: bool = False
    # The level the site asked for, and whether signing up would give this reader more.
    level: str = DEFAULT_LEVEL
    register: bool = False
    # The footer experiment's arm for an appeal that passed the ask budget (paywall/access/asking.py):
    # a variant's name or "holdback" ("" when no experiment runs or the appeal was hidden before).
    experiment: str = ""
    variant: str = ""


def meter_period(now: dt.datetime, settings: AccessSettings) -> tuple[str, dt.datetime]:
    """The meter period of ``now`` (``YYYY-MM`` in meter_timezone) and when the next one starts (UTC)."""
    local = now.astimezone(settings.tz)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    resets = dt.datetime(year, month, 1, tzinfo=settings.tz).astimezone(dt.UTC)
    return f"{local.year:04d}-{local.month:02d}", resets


def dismissal_active(dismissed_at: dt.datetime | None, now: dt.datetime, settings: AccessSettings) -> bool:
    """Whether a dismissal made at ``dismissed_at`` still hides the appeal at ``now``."""
    if dismissed_at is None:
        return False
    return now < dismissed_at + dt.timedelta(days=settings.dismiss_days)


def at(value: dt.datetime | None) -> str:
    """A time for the trace (``never`` for None)."""
    return isoformat(value) or "never"
