"""The payments export: one line per payment, for reconciling with Stripe, streamed.

``refunded`` and ``disputed`` are computed from the refund and dispute records with the same
rules as the revenue report (``revenue.refund_counted``, ``revenue.dispute_lost``), so the export
and the report always add up to the same totals.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import BigInteger, case, cast, func, literal, null, select
from sqlalchemy.orm import Session

from paywall.models import Dispute, Payment, Reader, Refund
from paywall.reports.periods import Period
from paywall.reports.revenue import dispute_lost, refund_counted
from paywall.reports.tables import BOOL, DATETIME, MONEY, Column, Table

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


def payments_query(
    period: Period, livemode: bool | None, kind: str | None = None, *, with_reader_id: bool = False
) -> Any:
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
    # sum() of BIGINT is NUMERIC on PostgreSQL: cast back, so amounts stay Python ints.
    refunded = cast(func.coalesce(refunds.c.amount, 0), BigInteger)
    disputed = cast(func.coalesce(disputes.c.lost, 0), BigInteger)
    dispute_fee = cast(func.coalesce(disputes.c.fee, 0), BigInteger)
    currency = func.lower(Payment.currency)
    fee_currency = func.lower(func.coalesce(Payment.balance_currency, Payment.currency))
    # Net only when the fees are in the charge's currency (else they are in the balance's).
    net = case(
        (
            fee_currency == currency,
            cast(
                Payment.amount_minor
                - refunded
                - disputed
                - func.coalesce(Payment.fee_minor, 0)
                - dispute_fee,
                BigInteger,
            ),
        ),
        else_=null(),
    )
    # The columns in COLUMNS order, so rows go to the writers as they come (no per-row Python).
    columns: list[Any] = [
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
        currency,
        Payment.amount_minor,
        refunded,
        disputed,
        Payment.dispute_status,
        fee_currency,
        Payment.fee_minor,
        dispute_fee,
        net,
        Payment.livemode,
    ]
    if with_reader_id:
        columns.append(Payment.reader_id)
    query: Any = (
        select(*columns)
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
    session: Session,
    period: Period,
    livemode: bool | None,
    kind: str | None = None,
    *,
    with_reader_id: bool = False,
) -> Iterator[Any]:
    """Payment rows in ``COLUMNS`` order (plus the reader id if asked), fetched in batches."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        # A streamed export gains nothing from JIT compilation, which only delays the first row.
        conn.exec_driver_sql("SELECT set_config('jit', 'off', true)")
    # Core rows straight from the connection (no ORM machinery per row), YIELD_PER at a time.
    query = payments_query(period, livemode, kind, with_reader_id=with_reader_id)
    yield from conn.execution_options(yield_per=YIELD_PER).execute(query)


def payments_table(session: Session, period: Period, livemode: bool | None) -> Table:
    """The payments export as a lazy table (rows stream from the open session)."""
    return Table(
        name="payments",
        columns=COLUMNS,
        rows=iter_payments(session, period, livemode),
        meta={"report": "payments", "livemode": livemode},
    )
