"""Campaign results: what each campaign raised with the donations and subscriptions it started.

A start is a completed Stripe Checkout Session, dated when it completed (``completed_at``) in the
reporting period; its campaign is the session's ``metadata.campaign``, which the sync stores on
``checkout_sessions.campaign`` (and hands on to the payments and subscription it made). Per
campaign and currency: how many donations and subscriptions were started, their count and the
amount paid at checkout (``amount_total``: a trial pays 0), the average start rounded half to even
to minor units, and the recurring share (starts in subscription mode, recurring donations too,
over all starts). Sessions without a campaign read ``(none)``. Later renewals are in the revenue
report by campaign; this report answers which appeal brought people in.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from paywall.models import CheckoutSession
from paywall.reports.periods import Period
from paywall.reports.tables import INT, MONEY, RATIO, Column, Table

NO_CAMPAIGN = "(none)"
COLUMNS = [
    Column("campaign"),
    Column("currency"),
    Column("donations", INT),
    Column("subscriptions", INT),
    Column("count", INT),
    Column("recurring", INT),
    Column("recurring_share", RATIO),
    Column("total", MONEY),
    Column("average", MONEY),
]


@dataclass
class CampaignResult:
    campaign: str
    currency: str
    donations: int = 0
    subscriptions: int = 0
    recurring: int = 0
    total: int = 0

    @property
    def count(self) -> int:
        return self.donations + self.subscriptions

    def row(self) -> tuple[Any, ...]:
        count = self.count
        return (
            self.campaign,
            self.currency,
            self.donations,
            self.subscriptions,
            count,
            self.recurring,
            round(self.recurring / count, 4) if count else 0.0,
            self.total,
            round(Fraction(self.total, count)) if count else 0,
        )


def campaign_results(
    session: Session, period: Period, livemode: bool | None, kind: str | None = None
) -> list[CampaignResult]:
    """Starts per (campaign, currency) in ``period``, ordered by campaign then currency."""
    currency = func.lower(CheckoutSession.currency)
    recurring = CheckoutSession.mode == "subscription"
    query: Any = (
        select(
            CheckoutSession.campaign,
            currency,
            CheckoutSession.kind,
            recurring,
            func.count(),
            func.sum(func.coalesce(CheckoutSession.amount_total, 0)),
        )
        .where(
            CheckoutSession.status == "complete",
            CheckoutSession.completed_at >= period.start_utc,
            CheckoutSession.completed_at < period.end_utc,
        )
        .group_by(CheckoutSession.campaign, currency, CheckoutSession.kind, recurring)
    )
    if livemode is not None:
        query = query.where(CheckoutSession.livemode.is_(livemode))
    if kind is not None:
        query = query.where(CheckoutSession.kind == kind)
    results: dict[tuple[str, str], CampaignResult] = {}
    for campaign, code, row_kind, is_recurring, count, total in session.execute(query):
        label = campaign or NO_CAMPAIGN
        found = results.setdefault((label, code or ""), CampaignResult(label, code or ""))
        if row_kind == "subscription":
            found.subscriptions += int(count)
        else:
            found.donations += int(count)
        if is_recurring:
            found.recurring += int(count)
        found.total += int(total or 0)
    return [results[k] for k in sorted(results, key=lambda k: (k[0] == NO_CAMPAIGN, k[0].lower(), k[1]))]


def campaigns_table(
    session: Session, period: Period, livemode: bool | None, kind: str | None = None
) -> Table:
    """The campaign results as a table, then one ``total`` row per currency."""
    results = campaign_results(session, period, livemode, kind)
    totals: dict[str, CampaignResult] = {}
    for r in results:
        t = totals.setdefault(r.currency, CampaignResult("total", r.currency))
        t.donations += r.donations
        t.subscriptions += r.subscriptions
        t.recurring += r.recurring
        t.total += r.total
    return Table(
        name="campaigns",
        columns=COLUMNS,
        rows=[r.row() for r in results],
        totals=[totals[c].row() for c in sorted(totals)],
        meta={"report": "campaigns", "livemode": livemode},
    )
