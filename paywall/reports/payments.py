"""The payments export: one line per payment, for reconciling with Stripe, streamed.

``refunded`` and ``disputed`` are computed from the refund and dispute records with the same
rules as the revenue report (``revenue.refund_counted``, ``revenue.dispute_lost``), so the export
and the report always add up to the same totals.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import case, func, literal, select
from sqlalchemy.orm import Session

from paywall.models import Dispute, Payment, Reader, Refund
from paywall.reports.periods import Period
from paywall.reports.revenue import dispute_lost, refund_counted
from paywall.reports.tables import BOOL, DATETIME, MONEY, TEXT, Column, Table

# Rows fetched per round trip; a server-side cursor on PostgreSQL, so memory stays flat.
YIELD_PER = 2000

COLUMNS = [
    Column("paid_at", DATETIME),
    Column("charge"),
    Column("payment_intent"),
    Column("balance_transaction"),
    Column("payout"),
    Column("invoice"),
    Column("subscription"),
    Column("customer"),
    Column("kind"),
    Column("recurring", BOOL),
    Column("plan"),
    Column("campaign"),
    Column("reader"),
    Column("email"),
    Column("name"),
    Column("currency"),
    Column("amount", MONEY),
    Column("refunded", MONEY),
    Column("disputed", MONEY),
    Column("dispute_status"),
    Column("fee_currency"),
    Column("fee", MONEY, currency="fee_currency"),
    Column("dispute_fee", MONEY, currency="fee_currency"),
    Column("net", MONEY),
    Column("livemode", BOOL),
]


def payments_query(period: Period, livemode: bool | None, kind: str | None = None) -> Any:
    """Payments paid in ``period`` with their counted refunds, lost disputes and dispute fees."""
    refunds = (
        select(Refund.stripe_charge_id.label("charge"), func.sum(Refund.amount_minor).label("amount"))
        .where(refund_counted(), Refund.stripe_charge_id.is_not(None))
        .group_by(Refund.stripe_charge_id)
        .subquery("r")
    )
    disputes = (
        select(
            Dispute.stripe_charge_id.label("charge"),
            func.sum(case((dispute_lost(), Dispute.amount_minor), else_=literal(0))).label("lost"),
            func.sum(func.coalesce(Dispute.fee_minor, 0)).label("fee"),
        )
        .where(Dispute.stripe_charge_id.is_not(None))
        .group_by(Dispute.stripe_charge_id)
        .subquery("d")
    )
    query: Any = (
        select(
            Payment.paid_at,
            Payment.stripe_charge_id,
            Payment.stripe_payment_intent_id,
            Payment.stripe_balance_transaction_id,
            Payment.stripe_payout_id,
            Payment.stripe_invoice_id,
            Payment.stripe_subscription_id,
            Payment.stripe_customer_id,
            Payment.kind,
            Payment.recurring,
            Payment.plan,
            Payment.campaign,
            Reader.external_id,
            func.coalesce(Payment.email, Reader.email),
            func.coalesce(Payment.name, Reader.name),
            Payment.currency,
            Payment.amount_minor,
            func.coalesce(refunds.c.amount, 0),
            func.coalesce(disputes.c.lost, 0),
            Payment.dispute_status,
            Payment.fee_minor,
            func.coalesce(disputes.c.fee, 0),
            Payment.balance_currency,
            Payment.livemode,
            Payment.reader_id,
        )
        .outerjoin(Reader, Reader.id == Payment.reader_id)
        .outerjoin(refunds, refunds.c.charge == Payment.stripe_charge_id)
        .outerjoin(disputes, disputes.c.charge == Payment.stripe_charge_id)
        .where(Payment.paid_at >= period.start_utc, Payment.paid_at < period.end_utc)
        .order_by(Payment.paid_at, Payment.id)
    )
    if livemode is not None:
        query = query.where(Payment.livemode.is_(livemode))
    if kind is not None:
        query = query.where(Payment.kind == kind)
    return query


def iter_payments(
    session: Session, period: Period, livemode: bool | None, kind: str | None = None
) -> Iterator[tuple[Any, ...]]:
    """Payment rows in ``COLUMNS`` order plus the reader id, fetched in batches (never all at once)."""
    # Core rows straight from the connection: no ORM result machinery per row.
    conn = session.connection().execution_options(yield_per=YIELD_PER)
    for r in conn.execute(payments_query(period, livemode, kind)):
        currency = r[15].lower()
        fee_currency = (r[22] or currency).lower()
        amount, refunded, disputed, fee, dispute_fee = r[16], int(r[17]), int(r[18]), r[20], int(r[21])
        # Net only when the fees are in the charge's currency (else they are in the balance's).
        net = amount - refunded - disputed - (fee or 0) - dispute_fee if fee_currency == currency else None
        yield (
            r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13],
            r[14], currency, amount, refunded, disputed, r[19], fee_currency, fee, dispute_fee, net,
            r[23], r[24],
        )  # fmt: skip


def payments_table(session: Session, period: Period, livemode: bool | None) -> Table:
    """The payments export as a lazy table (rows stream from the open session)."""
    rows = (row[:-1] for row in iter_payments(session, period, livemode))
    return Table(
        name="payments",
        columns=COLUMNS,
        rows=rows,
        meta={"report": "payments", "livemode": livemode},
    )


_ = TEXT
