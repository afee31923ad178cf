"""The revenue report: gross, refunds, disputes, fees and net per period (or group) and currency.

Cash-basis rules, one place for all of them:
- a payment counts in the period it was paid (``Payment.paid_at``), with its Stripe fee;
- a refund counts in the period it was made (``Refund.stripe_created``), if it succeeded or is
  pending (a failed or canceled refund returned nothing); refunds known only from the charge
  (``charge.refunded`` without refund objects) are rows there too, dated by the charge event;
- a dispute counts in the period it opened (``Dispute.opened_at``): its amount while the money is
  lost (not when won, reinstated, or a mere inquiry), and its fee when known;
- fees are in the balance (settlement) currency and count in that currency's row;
- net = gross - refunds - disputes - fees; amounts in different currencies are never added.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, and_, case, func, literal, not_, or_, select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement, SQLColumnExpression

from paywall.models import Dispute, Payment, Refund
from paywall.models.billing import COUNTED_REFUND_STATUSES
from paywall.reports.periods import TIME_GROUPS, Period, bucket_expr, bucket_label, buckets
from paywall.reports.sums import combine, wide_sum

GROUPS = (*TIME_GROUPS, "kind", "plan", "campaign")
# The label of the group of rows with no plan or campaign (or kind): said, not left blank.
NO_GROUP = "(none)"

# Dispute statuses that take no money: won, and inquiries ("warning_*") that never withdraw funds.
UNLOST_DISPUTE_STATUSES = (
    "won",
    "warning_needs_response",
    "warning_under_review",
    "warning_closed",
    "prevented",
)


@dataclass
class RevenueRow:
    """One period (or group) in one currency; amounts in minor units."""

    period: str | None
    currency: str
    gross: int = 0
    refunds: int = 0
    disputes: int = 0
    fees: int = 0
    payments: int = 0

    @property
    def net(self) -> int:
        return self.gross - self.refunds - self.disputes - self.fees

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "currency": self.currency,
            "gross": self.gross,
            "refunds": self.refunds,
            "disputes": self.disputes,
            "fees": self.fees,
            "net": self.net,
            "payments": self.payments,
        }


@dataclass
class RevenueReport:
    period: Period
    group_by: str
    livemode: bool | None
    rows: list[RevenueRow] = field(default_factory=list)
    totals: list[RevenueRow] = field(default_factory=list)


def refund_counted() -> ColumnElement[bool]:
    """Refunds that took money: succeeded or still pending (status unknown counts too)."""
    return or_(Refund.status.is_(None), Refund.status.in_(COUNTED_REFUND_STATUSES))


def dispute_lost() -> ColumnElement[bool]:
    """Disputes whose amount is lost: funds withdrawn and not (yet) reinstated."""
    return and_(Dispute.funds_reinstated_at.is_(None), not_(Dispute.status.in_(UNLOST_DISPUTE_STATUSES)))


def _group_column(group_by: str) -> SQLColumnExpression[Any]:
    return {"kind": Payment.kind, "plan": Payment.plan, "campaign": Payment.campaign}[group_by]


def _mode(query: Select[Any], model: Any, livemode: bool | None) -> Select[Any]:
    return query if livemode is None else query.where(model.livemode.is_(livemode))


def revenue_report(
    session: Session,
    period: Period,
    group_by: str = "month",
    livemode: bool | None = None,
    kind: str | None = None,
) -> RevenueReport:
    """The revenue report for ``period``: three aggregate queries, merged per (group, currency).

    With ``kind``, only the payments of that kind and the refunds and disputes of those payments."""
    if group_by not in GROUPS:
        raise ValueError(f"group_by must be one of {', '.join(GROUPS)}")
    dialect = session.get_bind().dialect.name
    queries = _revenue_queries(period, group_by, livemode, dialect, kind)
    with _hash_aggregates(session, dialect):
        payments, refunds, disputes = (session.execute(q).all() for q in queries)
    merged = _merge(payments, refunds, disputes)
    report = RevenueReport(period=period, group_by=group_by, livemode=livemode)
    report.rows = _report_rows(merged, period, group_by)
    report.totals = currency_totals(report.rows)
    return report


def _revenue_queries(
    period: Period, group_by: str, livemode: bool | None, dialect: str, kind: str | None = None
) -> tuple[Select[Any], Select[Any], Select[Any]]:
    """The payments, refunds and disputes of ``period``, each summed per (group, currency)."""
    start, end = period.start_utc, period.end_utc
    time_grouped = group_by in TIME_GROUPS

    def key(column: SQLColumnExpression[dt.datetime]) -> Any:
        return bucket_expr(column, group_by, period, dialect) if time_grouped else _group_column(group_by)

    pay_key = key(Payment.paid_at).label("k")
    payments = _mode(
        select(
            pay_key,
            Payment.currency,
            Payment.balance_currency,
            func.count(),
            *wide_sum(Payment.amount_minor, dialect),
            *wide_sum(func.coalesce(Payment.fee_minor, 0), dialect),
        )
        .where(Payment.paid_at >= start, Payment.paid_at < end)
        .group_by(pay_key, Payment.currency, Payment.balance_currency),
        Payment,
        livemode,
    )
    ref_key = key(Refund.stripe_created).label("k")
    refunds = _mode(
        select(ref_key, Refund.currency, *wide_sum(Refund.amount_minor, dialect))
        .where(Refund.stripe_created >= start, Refund.stripe_created < end, refund_counted())
        .group_by(ref_key, Refund.currency),
        Refund,
        livemode,
    )
    dis_key = key(Dispute.opened_at).label("k")
    disputes = _mode(
        select(
            dis_key,
            Dispute.currency,
            Payment.balance_currency,
            *wide_sum(case((dispute_lost(), Dispute.amount_minor), else_=literal(0)), dialect),
            *wide_sum(func.coalesce(Dispute.fee_minor, 0), dialect),
        )
        .outerjoin(Payment, Payment.stripe_charge_id == Dispute.stripe_charge_id)
        .where(Dispute.opened_at >= start, Dispute.opened_at < end)
        .group_by(dis_key, Dispute.currency, Payment.balance_currency),
        Dispute,
        livemode,
    )
    if not time_grouped or kind is not None:
        # Refunds take the kind, plan or campaign of the payment they belong to (disputes are
        # joined to theirs above, for the currency of the dispute fee).
        refunds = refunds.outerjoin(Payment, Payment.stripe_charge_id == Refund.stripe_charge_id)
    if kind is not None:
        payments, refunds, disputes = (q.where(Payment.kind == kind) for q in (payments, refunds, disputes))
    return payments, refunds, disputes


def _merge(
    payments: Iterable[Any], refunds: Iterable[Any], disputes: Iterable[Any]
) -> dict[tuple[str | None, str], RevenueRow]:
    """The three queries' results as one row per (group, lower-case currency)."""
    merged: dict[tuple[str | None, str], RevenueRow] = {}

    def row(k: str | None, currency: str) -> RevenueRow:
        code = currency.lower()
        found = merged.get((k, code))
        if found is None:
            found = merged[(k, code)] = RevenueRow(period=k, currency=code)
        return found

    # Fees are in the balance (settlement) currency, which differs from the charge's when Stripe
    # converted it: they go to that currency's row, never subtracted from another currency.
    # Each sum comes as two columns (see sums.wide_sum), so no stored amount can overflow it.
    for k, currency, balance_currency, count, *sums in payments:
        r = row(k, currency)
        r.payments += int(count)
        r.gross += combine(*sums[:2])
        fees = combine(*sums[2:])
        if fees:
            row(k, balance_currency or currency).fees += fees
    for k, currency, *sums in refunds:
        row(k, currency).refunds += combine(*sums)
    for k, currency, balance_currency, *sums in disputes:
        row(k, currency).disputes += combine(*sums[:2])
        fees = combine(*sums[2:])
        if fees:
            row(k, balance_currency or currency).fees += fees
    return merged


def _report_rows(
    merged: dict[tuple[str | None, str], RevenueRow], period: Period, group_by: str
) -> list[RevenueRow]:
    """The report's rows in order: by time, every period for every currency (zeros included, so
    charts and sums line up); otherwise by group, then currency."""
    if group_by not in TIME_GROUPS:
        ordered = sorted(merged.values(), key=lambda r: (r.period is None, r.period or "", r.currency))
        for r in ordered:
            r.period = NO_GROUP if r.period is None else r.period
        return ordered
    currencies = sorted({c for _, c in merged})
    rows = []
    for bucket, _, _ in buckets(period, group_by):
        for currency in currencies:
            r = merged.get((bucket, currency)) or RevenueRow(period=bucket, currency=currency)
            r.period = bucket_label(bucket, group_by)
            rows.append(r)
    return rows


@contextmanager
def _hash_aggregates(session: Session, dialect: str) -> Iterator[None]:
    """On PostgreSQL, aggregate by hashing for these queries only.

    The planner cannot estimate how many distinct buckets an expression such as
    ``to_char(timezone(...), 'YYYY-MM')`` has, guesses one per row, and then sorts a million rows
    to form a few dozen groups. The hash table really holds periods x currencies entries.
    """
    if dialect != "postgresql":
        yield
        return
    previous = session.scalar(text("SELECT current_setting('enable_sort')"))
    session.execute(text("SELECT set_config('enable_sort', 'off', true)"))
    try:
        yield
    finally:
        session.execute(text("SELECT set_config('enable_sort', :v, true)"), {"v": previous})


def currency_totals(rows: Iterable[RevenueRow]) -> list[RevenueRow]:
    """One total row per currency (period ``total``)."""
    totals: dict[str, RevenueRow] = {}
    for r in rows:
        t = totals.setdefault(r.currency, RevenueRow(period="total", currency=r.currency))
        t.gross += r.gross
        t.refunds += r.refunds
        t.disputes += r.disputes
        t.fees += r.fees
        t.payments += r.payments
    return [totals[c] for c in sorted(totals)]
