"""The subscriptions report: active subscribers at each period's end, new, churned, and MRR.

Per period, kind (``subscription`` or recurring ``donation``), plan and currency. The mirror keeps
each subscription's dates, not its status history, so the rules use dates:
- a subscription pays from ``max(started_at, trial_end)``; trials are not subscribers yet;
- it stops at ``ended_at`` (or ``canceled_at`` for a canceled one without an end date); a
  cancellation at period end keeps it active until then, and ``past_due`` counts as active
  (Stripe is still retrying);
- ``incomplete`` and ``incomplete_expired`` never started;
- a paused subscription (status ``paused``, or Stripe's ``pause_collection``, which leaves the
  status ``active``) is counted in ``paused``, not ``active``, and is out of MRR, from the pause's
  start (``paused_at``, from the stored events) until ``pause_collection.resumes_at`` (a pause
  is over at resumes_at) or, with none, to the end. Once Stripe resumes it the mirror forgets the
  pause, like any other past status;
- MRR normalises each plan to a month: annual / 12, weekly * 52 / 12, daily * 365 / 12, times
  the quantity; summed exactly and rounded (half to even) to minor units once per row.
So for every row, active + paused at the end = active + paused at the start + new - churned.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from paywall.models import Subscription
from paywall.reports.periods import Period, bucket_label, buckets, local_midnight_utc
from paywall.reports.tables import INT, MONEY, TEXT, Column, Table

NEVER_STARTED = ("incomplete", "incomplete_expired")
# A row without a plan (a recurring donation of any amount) says so rather than leaving it blank.
NO_PLAN = "(none)"
MONTHS_PER_INTERVAL = {
    "month": Fraction(1),
    "year": Fraction(12),
    "week": Fraction(12, 52),
    "day": Fraction(12, 365),
}

COLUMNS = [
    Column("period"),
    Column("kind"),
    Column("plan"),
    Column("currency"),
    Column("active", INT),
    Column("new", INT),
    Column("churned", INT),
    Column("trialing", INT),
    Column("paused", INT),
    Column("mrr", MONEY),
]


@dataclass(frozen=True)
class Span:
    """When one subscription paid: ``[paying_from, ended)``."""

    kind: str
    plan: str | None
    currency: str
    started: dt.datetime
    paying_from: dt.datetime
    ended: dt.datetime | None
    monthly: Fraction
    # The current pause, ``[paused_from, paused_until)``; paused_from None: not paused.
    paused_from: dt.datetime | None = None
    paused_until: dt.datetime | None = None

    def subscribed_at(self, at: dt.datetime) -> bool:
        """Paying or paused at ``at``: ``active_at`` or ``paused_at``."""
        return self.paying_from < at and (self.ended is None or self.ended >= at)

    def paused_at(self, at: dt.datetime) -> bool:
        if self.paused_from is None or not self.subscribed_at(at) or at < self.paused_from:
            return False
        return self.paused_until is None or at < self.paused_until

    def active_at(self, at: dt.datetime) -> bool:
        return self.subscribed_at(at) and not self.paused_at(at)

    def trialing_at(self, at: dt.datetime) -> bool:
        return self.started < at <= self.paying_from and (self.ended is None or self.ended >= at)


def monthly_amount(sub: Subscription) -> Fraction:
    """The subscription's monthly value in minor units (exact)."""
    months = MONTHS_PER_INTERVAL.get(sub.interval or "month", Fraction(1)) * max(sub.interval_count, 1)
    return Fraction((sub.amount_minor or 0) * max(sub.quantity, 1)) / months


def spans(session: Session, start: dt.datetime, end: dt.datetime, livemode: bool | None) -> list[Span]:
    """Subscriptions that overlap ``[start, end)`` as spans."""
    query = select(Subscription).where(
        Subscription.status.not_in(NEVER_STARTED),
        Subscription.started_at.is_not(None),
        Subscription.started_at < end,
        or_(Subscription.ended_at.is_(None), Subscription.ended_at >= start),
    )
    if livemode is not None:
        query = query.where(Subscription.livemode.is_(livemode))
    out = []
    for sub in session.scalars(query):
        if sub.started_at is None:  # filtered above; narrows the type
            continue
        ended = sub.ended_at or (sub.canceled_at if sub.status == "canceled" else None)
        paying_from = max(sub.started_at, sub.trial_end) if sub.trial_end else sub.started_at
        paused_from = None
        if sub.status == "paused" or sub.pause_collection_behavior is not None:
            # Rows synced before migration 0007 have no paused_at until their next event.
            paused_from = sub.paused_at or sub.synced_event_at or paying_from
        out.append(
            Span(
                kind=sub.kind,
                plan=sub.plan,
                currency=(sub.currency or "").lower(),
                started=sub.started_at,
                paying_from=paying_from,
                ended=ended,
                monthly=monthly_amount(sub),
                paused_from=paused_from,
                paused_until=sub.pause_collection_resumes_at if sub.pause_collection_behavior else None,
            )
        )
    return out


def _group_row(
    label: str, group: tuple[str, str, str], members: list[Span], ps: dt.datetime, pe: dt.datetime
) -> tuple[Any, ...]:
    """One (period, kind, plan, currency) row: active at the period's end, started, ended,
    trialing and paused, and the monthly recurring revenue of the active ones."""
    kind, plan, currency = group
    active = [s for s in members if s.active_at(pe)]
    return (
        label,
        kind,
        plan or NO_PLAN,
        currency,
        len(active),
        sum(1 for s in members if ps <= s.paying_from < pe and (s.ended is None or s.ended > s.paying_from)),
        sum(1 for s in members if s.ended is not None and ps <= s.ended < pe and s.paying_from < s.ended),
        sum(1 for s in members if s.trialing_at(pe)),
        sum(1 for s in members if s.paused_at(pe)),
        round(sum((s.monthly for s in active), Fraction(0))),
    )


def _total_rows(
    rows: list[tuple[Any, ...]], all_spans: list[Span], last_end: dt.datetime
) -> list[tuple[Any, ...]]:
    """Per currency: started and ended summed over the rows; active, trialing, paused and MRR at
    the end of the last period."""
    totals: dict[str, list[int]] = {}
    for row in rows:
        t = totals.setdefault(row[3], [0, 0, 0, 0, 0, 0])
        t[1] += row[5]
        t[2] += row[6]
    for currency in totals:
        active = [s for s in all_spans if s.currency == currency and s.active_at(last_end)]
        totals[currency][0] = len(active)
        totals[currency][3] = sum(1 for s in all_spans if s.currency == currency and s.trialing_at(last_end))
        totals[currency][4] = sum(1 for s in all_spans if s.currency == currency and s.paused_at(last_end))
        totals[currency][5] = round(sum((s.monthly for s in active), Fraction(0)))
    return [("total", None, None, c, *totals[c]) for c in sorted(totals)]


def subscriptions_table(
    session: Session, period: Period, group_by: str, livemode: bool | None, kind: str | None = None
) -> Table:
    """Rows per (period, kind, plan, currency); totals per currency at the end of the last period.

    With ``kind``, only subscriptions (``subscription``) or recurring donations (``donation``)."""
    all_spans = spans(session, period.start_utc, period.end_utc, livemode)
    if kind is not None:
        all_spans = [s for s in all_spans if s.kind == kind]
    groups = sorted({(s.kind, s.plan or "", s.currency) for s in all_spans})
    members_of: dict[tuple[str, str, str], list[Span]] = {g: [] for g in groups}
    for s in all_spans:
        members_of[(s.kind, s.plan or "", s.currency)].append(s)
    rows: list[tuple[Any, ...]] = []
    last_end = period.start_utc
    for key, first, following in buckets(period, group_by):
        ps = local_midnight_utc(max(first, period.start), period.tz)
        pe = local_midnight_utc(min(following, period.end), period.tz)
        last_end = pe
        label = bucket_label(key, group_by)
        for group in groups:
            rows.append(_group_row(label, group, members_of[group], ps, pe))
    total_rows = _total_rows(rows, all_spans, last_end)
    return Table(
        name="subscriptions",
        columns=COLUMNS,
        rows=rows,
        totals=total_rows,
        meta={"report": "subscriptions", "group_by": group_by, "livemode": livemode},
    )


def active_counts(session: Session, at: dt.datetime, livemode: bool | None) -> dict[str, int]:
    """Active subscribers at ``at`` by kind (``subscription``, ``donation``)."""
    counts: dict[str, int] = {}
    for s in spans(session, at, at + dt.timedelta(seconds=1), livemode):
        if s.active_at(at):
            counts[s.kind] = counts.get(s.kind, 0) + 1
    return counts


_ = TEXT
