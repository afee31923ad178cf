"""The payments export: one line per payment, for reconciling with Stripe, streamed.

``refunded`` and ``disputed`` are computed from the refund and dispute records with the same
rules as the revenue report (``revenue.refund_counted``, ``revenue.dispute_lost``), but on the
payment's line, whenever they were made: the export and the report agree over a span holding the
payments and their refunds and disputes (the report counts a refund in the month it was made).
Refunds of a charge never recorded as a payment (older than the service, say) are money out all
the same: after the payments, one line per such charge with its refunds made in the period,
``unmatched`` true, amount 0 and no date of payment
(``paywall stripe sync`` fetches the charge, and the refunds then go with its payment).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import BigInteger, String, case, cast, exists, func, literal, null, select
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql import Subquery

from paywall.models import Dispute, Payment, PayoutTransaction, Reader, Refund
from paywall.reports.periods import Period
from paywall.reports.revenue import dispute_lost, refund_counted
from paywall.reports.sums import bigint_or_null, wide_sum_expr
from paywall.reports.tables import BOOL, DATETIME, MONEY, Column, Table

# Rows fetched per round trip; a server-side cursor on PostgreSQL, so memory stays flat.
FETCH_ROWS = 5000
# Batches a PostgreSQL export fetches ahead of the writer (memory: this many times FETCH_ROWS).
PREFETCH_BATCHES = 2

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
    Column("unmatched", BOOL),
    # The appeal the Checkout was attributed to (paywall/experiments/attribution.py); last, so
    # spreadsheets built on the earlier columns keep their places.
    Column("appeal_experiment"),
    Column("appeal_variant"),
    Column("appeal_channel"),
]
_COLUMN_INDEX = {c.key: i for i, c in enumerate(COLUMNS)}
# The charge's balance transaction as a payout listed it (``paywall stripe sync``): its payout.
# A charge has one such transaction, so the join adds no line.
PaidOut = aliased(PayoutTransaction, name="paid_out")


def payments_query(
    period: Period, livemode: bool | None, kind: str | None = None, *, with_reader_id: bool = False
) -> Any:
    """Payments paid in ``period`` with their counted refunds, lost disputes and dispute fees."""
    refunds = _refunds_per_charge()
    disputes = _disputes_per_charge()
    columns = _payment_columns(refunds, disputes)
    if with_reader_id:
        columns.append(Payment.reader_id)
    query: Any = (
        select(*columns)
        .outerjoin(Reader, Reader.id == Payment.reader_id)
        .outerjoin(refunds, refunds.c.charge == Payment.stripe_charge_id)
        .outerjoin(disputes, disputes.c.charge == Payment.stripe_charge_id)
        .outerjoin(
            PaidOut, (PaidOut.stripe_source_id == Payment.stripe_charge_id) & (PaidOut.category == "charge")
        )
        .where(Payment.paid_at >= period.start_utc, Payment.paid_at < period.end_utc)
        .order_by(Payment.paid_at, Payment.id)
    )
    if livemode is not None:
        query = query.where(Payment.livemode.is_(livemode))
    if kind is not None:
        query = query.where(Payment.kind == kind)
    return query


def _refunds_per_charge() -> Subquery:
    """Counted refunds summed per charge (``charge``, ``amount``)."""
    return (
        select(Refund.stripe_charge_id.label("charge"), wide_sum_expr(Refund.amount_minor).label("amount"))
        .where(refund_counted(), Refund.stripe_charge_id.is_not(None))
        .group_by(Refund.stripe_charge_id)
        .subquery("r")
    )


def _disputes_per_charge() -> Subquery:
    """Lost dispute amounts and dispute fees summed per charge (``charge``, ``lost``, ``fee``)."""
    return (
        select(
            Dispute.stripe_charge_id.label("charge"),
            wide_sum_expr(case((dispute_lost(), Dispute.amount_minor), else_=literal(0))).label("lost"),
            wide_sum_expr(func.coalesce(Dispute.fee_minor, 0)).label("fee"),
        )
        .where(Dispute.stripe_charge_id.is_not(None))
        .group_by(Dispute.stripe_charge_id)
        .subquery("d")
    )


def _payment_columns(refunds: Subquery, disputes: Subquery) -> list[Any]:
    """The export's columns, in COLUMNS order, for a payment joined to its reader and the two sums."""
    # sum() of BIGINT is NUMERIC on PostgreSQL: cast back, so amounts stay Python ints; a value
    # that does not fit (only rows stored before the webhook readers capped amounts) is NULL.
    refunded = bigint_or_null(func.coalesce(refunds.c.amount, 0))
    disputed = bigint_or_null(func.coalesce(disputes.c.lost, 0))
    dispute_fee = bigint_or_null(func.coalesce(disputes.c.fee, 0))
    currency = func.lower(Payment.currency)
    fee_currency = func.lower(func.coalesce(Payment.balance_currency, Payment.currency))
    # Net only when the fees are in the charge's currency (else they are in the balance's).
    net = case(
        (
            fee_currency == currency,
            bigint_or_null(
                Payment.amount_minor
                - func.coalesce(refunds.c.amount, 0)
                - func.coalesce(disputes.c.lost, 0)
                - func.coalesce(Payment.fee_minor, 0)
                - func.coalesce(disputes.c.fee, 0)
            ),
        ),
        else_=null(),
    )
    # The columns in COLUMNS order, so rows go to the writers as they come (no per-row Python).
    return [
        Payment.paid_at,
        Payment.stripe_charge_id,
        Payment.stripe_payment_intent_id,
        Payment.stripe_balance_transaction_id,
        func.coalesce(PaidOut.stripe_payout_id, Payment.stripe_payout_id),
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
        literal(False),
        Payment.appeal_experiment,
        Payment.appeal_variant,
        Payment.appeal_channel,
    ]


def unmatched_refunds_query(period: Period, livemode: bool | None) -> Any:
    """Counted refunds made in ``period`` whose charge has no payment row, one line per charge."""
    refunded = bigint_or_null(wide_sum_expr(Refund.amount_minor))
    currency = func.lower(Refund.currency)
    text = cast(null(), String)
    columns: list[Any] = [
        null(),
        Refund.stripe_charge_id,
        func.max(Refund.stripe_payment_intent_id),
        *[text] * 5,  # balance transaction, payout, invoice, subscription, customer
        text,  # kind
        null(),  # recurring
        *[text] * 5,  # plan, campaign, reader, email, name
        currency,
        literal(0, BigInteger),
        refunded,
        literal(0, BigInteger),
        text,  # dispute status
        currency,
        null(),  # fee
        literal(0, BigInteger),
        -refunded,
        Refund.livemode,
        literal(True),
        *[text] * 3,  # appeal experiment, variant, channel
    ]
    query: Any = (
        select(*columns)
        .where(
            refund_counted(),
            Refund.stripe_created >= period.start_utc,
            Refund.stripe_created < period.end_utc,
            ~exists().where(Payment.stripe_charge_id == Refund.stripe_charge_id),
        )
        .group_by(Refund.stripe_charge_id, currency, Refund.livemode)
        .order_by(func.min(Refund.stripe_created), Refund.stripe_charge_id)
    )
    if livemode is not None:
        query = query.where(Refund.livemode.is_(livemode))
    return query


def _execute(session: Session, query: Any) -> tuple[list[tuple[Any, ...]], Iterator[Sequence[Any]]]:
    """The first row of ``query`` (SQLAlchemy's form), then batches of the rest as the driver gives them.

    SQLAlchemy binds the parameters and opens the cursor (a server-side one on PostgreSQL, so
    memory stays flat); the rows are then read from the driver's cursor, ``FETCH_ROWS`` per
    round trip, skipping SQLAlchemy's per-row result processing, which cost about as much as the
    rest of the export. SQLAlchemy may already buffer the first row of a server-side cursor, so
    that one is taken through SQLAlchemy.
    """
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        # A streamed export gains nothing from JIT compilation, which only delays the first row.
        conn.exec_driver_sql("SELECT set_config('jit', 'off', true)")
    result = conn.execution_options(stream_results=True, max_row_buffer=FETCH_ROWS).execute(query)
    head = [tuple(row) for row in result.fetchmany(1)]

    def batches() -> Iterator[Sequence[Any]]:
        cursor = result.cursor
        try:
            if head:
                if conn.dialect.name == "postgresql":
                    yield from _prefetched(cursor)
                else:
                    # sqlite3 runs the query inside fetchmany: nothing to overlap with.
                    while batch := cursor.fetchmany(FETCH_ROWS):
                        yield batch
        finally:
            result.close()

    return head, batches()


def _prefetched(cursor: Any) -> Iterator[Sequence[Any]]:
    """Batches from a server-side cursor, the next one fetched by a thread while this one is used.

    PostgreSQL computes a batch only when asked; fetching ahead lets the server (and the wait on
    the socket, which releases the GIL) run while the caller formats the previous batch. The
    thread alone touches the cursor until it has ended, and it always ends before this returns.
    """
    batches: queue.Queue[Any] = queue.Queue(maxsize=PREFETCH_BATCHES)
    stop = threading.Event()

    def fetch() -> None:
        try:
            while not stop.is_set():
                batch = cursor.fetchmany(FETCH_ROWS)
                batches.put(batch)
                if not batch:
                    return
        except BaseException as exc:  # handed to the caller, who raises it
            batches.put(exc)

    worker = threading.Thread(target=fetch, name="payments-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = batches.get()
            if isinstance(item, BaseException):
                raise item
            if not item:
                return
            yield item
    finally:
        stop.set()
        # Unblock a worker waiting on a full queue, then wait for it to let go of the cursor.
        while worker.is_alive():
            with contextlib.suppress(queue.Empty):
                batches.get(timeout=0.05)
        worker.join()


def _utc_from_text(value: str) -> dt.datetime:
    """SQLite's naive-UTC text for a ``UTCDateTime`` as an aware UTC datetime."""
    return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)


def iter_payments(
    session: Session,
    period: Period,
    livemode: bool | None,
    kind: str | None = None,
    *,
    with_reader_id: bool = False,
    driver_rows: bool = False,
) -> Iterator[Any]:
    """Payment rows in ``COLUMNS`` order (plus the reader id if asked), fetched in batches.

    With ``driver_rows`` the rows are as the driver gives them: on SQLite ``paid_at`` may be
    naive UTC text and booleans 0/1 (``exporters.csv_chunks`` takes both forms). Otherwise
    ``paid_at`` is an aware datetime and booleans are bools, whatever the database.
    """
    queries = [payments_query(period, livemode, kind, with_reader_id=with_reader_id)]
    if kind is None:
        unmatched = unmatched_refunds_query(period, livemode)
        if with_reader_id:
            unmatched = unmatched.add_columns(null())
        queries.append(unmatched)
    for query in queries:
        head, batches = _execute(session, query)
        yield from head
        yield from _rows(batches, driver_rows or session.get_bind().dialect.name != "sqlite")


def _rows(batches: Iterator[Sequence[Any]], as_given: bool) -> Iterator[Any]:
    if as_given:
        # psycopg already returns aware datetimes and bools.
        for batch in batches:
            yield from batch
        return
    flags = (_COLUMN_INDEX["recurring"], _COLUMN_INDEX["livemode"], _COLUMN_INDEX["unmatched"])
    for batch in batches:
        for row in batch:
            out = list(row)
            out[0] = _utc_from_text(row[0]) if row[0] is not None else None
            for i in flags:
                if out[i] is not None:
                    out[i] = bool(out[i])
            yield tuple(out)


def payments_table(session: Session, period: Period, livemode: bool | None, kind: str | None = None) -> Table:
    """The payments export as a lazy table (rows stream from the open session); with ``kind``,
    only payments of that kind (and no unmatched refunds, whose kind is unknown)."""
    return Table(
        name="payments",
        columns=COLUMNS,
        rows=iter_payments(session, period, livemode, kind),
        # Generators start on first use, so only the one the writer reads runs a query.
        csv_rows=iter_payments(session, period, livemode, kind, driver_rows=True),
        meta={"report": "payments", "livemode": livemode},
    )
