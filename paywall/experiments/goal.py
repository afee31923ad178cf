"""The goal line under the appeal (``[appeal.goal]``): "312 readers support us this month", or
"4210.00 EUR of 6000.00 EUR raised this month", from a figure each process caches.

The figure is computed at most once per ``refresh_seconds`` per process (never per page view), by
one thread while the others keep answering the last figure. A failure to compute it is logged and
keeps the last figure (none yet: no goal line) until the next refresh is due.

- ``supporters`` (``{count}``): subscriptions and recurring donations that are active, trialing or
  past due, plus the distinct readers or guests (reader, else Stripe customer, else address) who
  gave a one-off donation this UTC month and did not get it all back. A subscriber who also gave
  once this month counts twice: the line is encouragement, not accounting.
- ``amount`` (``{raised}``, ``{target}``): this UTC month's payments (subscriptions and donations)
  in the goal's currency, net of refunds and of amounts lost to disputes (each payment's kept
  amount never below 0, as the results count it); other currencies are never added in. Both
  formatted with paywall/money.py (``4210.00 EUR``).

Both count only the Stripe mode the reports count (``[reports] livemode``; ``auto``: the mode of the
configured key), so test payments made while trying the site out never reach a live goal line.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from time import monotonic
from typing import Any

from sqlalchemy import case, func, literal, select
from sqlalchemy.orm import Session

from paywall import clock, money
from paywall.config import Settings
from paywall.db import Database
from paywall.experiments.definition import GoalSettings
from paywall.models import Payment, Subscription
from paywall.reports.periods import livemode_filter
from paywall.widget.settings import appeal_settings

log = logging.getLogger(__name__)

CURRENT_STATUSES = ("active", "trialing", "past_due")


def month_start(now: dt.datetime) -> dt.datetime:
    """Midnight UTC on the first of ``now``'s UTC month."""
    now = now.astimezone(dt.UTC)
    return dt.datetime(now.year, now.month, 1, tzinfo=dt.UTC)


def supporters(session: Session, now: dt.datetime, livemode: bool | None = None) -> int:
    """Active subscriptions and recurring donations, plus this month's distinct one-off donors (in
    ``livemode``'s Stripe mode; None: both)."""
    current_query = (
        select(func.count()).select_from(Subscription).where(Subscription.status.in_(CURRENT_STATUSES))
    )
    query = select(
        Payment.reader_id, Payment.stripe_customer_id, Payment.email, Payment.stripe_charge_id
    ).where(
        Payment.kind == "donation",
        Payment.stripe_subscription_id.is_(None),
        Payment.paid_at >= month_start(now),
        Payment.paid_at <= now,
        Payment.refunded_minor < Payment.amount_minor,
    )
    if livemode is not None:
        current_query = current_query.where(Subscription.livemode.is_(livemode))
        query = query.where(Payment.livemode.is_(livemode))
    current = session.scalar(current_query)
    rows = session.execute(query)
    donors = {
        ("reader", reader_id)
        if reader_id is not None
        else ("customer", customer)
        if customer
        else ("email", email.strip().lower())
        if email
        else ("charge", charge)
        for reader_id, customer, email, charge in rows
    }
    return int(current or 0) + len(donors)


def raised(session: Session, now: dt.datetime, currency: str, livemode: bool | None = None) -> int:
    """This month's payments in ``currency`` (in ``livemode``'s mode; None: both), in minor units,
    net of refunds and lost disputes; a payment that lost more than it brought counts 0, not less."""
    kept_raw = Payment.amount_minor - Payment.refunded_minor - Payment.disputed_minor
    kept = case((kept_raw > 0, kept_raw), else_=literal(0))
    query = select(func.sum(kept)).where(
        Payment.currency == currency,
        Payment.paid_at >= month_start(now),
        Payment.paid_at <= now,
    )
    if livemode is not None:
        query = query.where(Payment.livemode.is_(livemode))
    return max(int(session.scalar(query) or 0), 0)


def goal_figure(session: Session, goal: GoalSettings, now: dt.datetime, livemode: bool | None = None) -> int:
    """The figure the goal line shows: supporters, or minor units raised in the goal's currency."""
    if goal.kind == "supporters":
        return supporters(session, now, livemode)
    return raised(session, now, goal.currency, livemode)


def render(goal: GoalSettings, figure: int) -> str:
    """The goal's text with ``{count}``, ``{raised}`` and ``{target}`` filled (plain replacement:
    a stray brace in the copy must not become a 500)."""
    values = {"count": str(figure)}
    if goal.kind == "amount":
        values = {
            "raised": money.display(figure, goal.currency),
            "target": money.display(goal.target, goal.currency),
        }
    text = goal.text
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


class GoalCache:
    """One process's last goal figure and when it was computed (kept on the Settings object)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.figure: int | None = None
        # monotonic() of the last attempt (None: never tried).
        self.tried: float | None = None

    @classmethod
    def from_table(cls, where: str, table: Any) -> GoalCache:
        """A fresh cache (Settings.section builds it once per settings object)."""
        return cls()

    def due(self, refresh_seconds: int) -> bool:
        return self.tried is None or monotonic() - self.tried >= refresh_seconds

    def get(
        self, db: Database, goal: GoalSettings, now: dt.datetime, livemode: bool | None = None
    ) -> int | None:
        """The figure, computed again when due by whichever thread gets the lock first."""
        if self.figure is not None and not self.due(goal.refresh_seconds):
            return self.figure
        # The first computation is waited for; later ones are not (the last figure is answered).
        if not self.lock.acquire(blocking=self.figure is None):
            return self.figure
        try:
            if self.due(goal.refresh_seconds):
                self.tried = monotonic()
                try:
                    with db.transaction(readonly=True) as session:
                        self.figure = goal_figure(session, goal, now, livemode)
                except Exception:
                    log.exception(
                        "appeal goal: could not compute the %s figure; keeping the last one", goal.kind
                    )
            return self.figure
        finally:
            self.lock.release()


def goal_cache(settings: Settings) -> GoalCache:
    """This settings object's goal cache (one per process and configuration)."""
    return settings.section("appeal-goal-cache", GoalCache)


def goal_text(settings: Settings, db: Database, now: dt.datetime | None = None) -> str | None:
    """The goal line for the appeal now, or None (no ``[appeal.goal]``, or no figure yet)."""
    goal = appeal_settings(settings).goal
    if not goal.kind:
        return None
    figure = goal_cache(settings).get(db, goal, now or clock.now(), livemode_filter(settings))
    return None if figure is None else render(goal, figure)
