"""The payouts report: each Stripe payout against the balance transactions it paid out.

Per payout (arriving in the period): its arrival date, status, amount and currency, and its
transactions summed by column: ``charges``, ``refunds``, ``disputes`` (disputes and their
reversals), ``fees`` (Stripe's fee on every transaction, negative, plus fee transactions) and
``other`` (anything else, such as the return of an earlier failed payout). A balance
transaction's ``net`` is its ``amount`` less its ``fee``, and an automatic payout pays out the net
of its transactions, its own transaction left out (Stripe's payout reconciliation guide), so
``difference = amount - (charges + refunds + disputes + fees + other)`` is 0 for a reconciled
payout. It is empty (unknown, not 0) until ``paywall stripe sync`` has listed the transactions,
and for manual payouts, whose transactions Stripe cannot name. Transactions in another currency
than their payout are not added to it (they would show in the difference).

After the payouts, one line per charge, refund or dispute transaction that matches no payment
(a charge never recorded, a refund or dispute of one), ``unmatched`` true; then totals per currency.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from paywall.models import Dispute, Payment, Payout, PayoutTransaction, Refund
from paywall.reports.periods import Period
from paywall.reports.sums import wide_sum_expr
from paywall.reports.tables import BOOL, DATETIME, INT, MONEY, Column, Table

COLUMNS = [
    Column("payout"),
    Column("arrival_date", DATETIME),
    Column("status"),
    Column("reconciliation"),
    Column("currency"),
    Column("amount", MONEY),
    Column("charges", MONEY),
    Column("refunds", MONEY),
    Column("disputes", MONEY),
    Column("fees", MONEY),
    Column("other", MONEY),
    Column("difference", MONEY),
    Column("transactions", INT),
    Column("transaction"),
    Column("source"),
    Column("unmatched", BOOL),
    Column("livemode", BOOL),
]
SUMS = ("charges", "refunds", "disputes", "fees", "other")
# The report column of each stored category (see sync.payouts.category_of).
COLUMN_OF = {"charge": "charges", "refund": "refunds", "dispute": "disputes", "fee": "fees"}
FILL_COMMAND = "paywall stripe sync"
L = PayoutTransaction


@dataclass
class PayoutLine:
    """One payout with its transactions summed (minor units, the payout's currency)."""

    payout: str
    arrival_date: dt.datetime
    status: str
    reconciliation: str | None
    currency: str
    amount: int
    livemode: bool
    listed: bool
    sums: dict[str, int]
    transactions: int = 0

    @property
    def difference(self) -> int | None:
        if not self.listed:
            return None
        return self.amount - sum(self.sums.values())

    def row(self) -> tuple[Any, ...]:
        return (
            self.payout,
            self.arrival_date,
            self.status,
            self.reconciliation,
            self.currency,
            self.amount,
            *(self.sums[k] for k in SUMS),
            self.difference,
            self.transactions,
            None,
            None,
            False,
            self.livemode,
        )


def _not_own() -> ColumnElement[bool]:
    """Leaves out a payout's own transaction (its source is the payout itself)."""
    return or_(L.stripe_source_id.is_(None), L.stripe_source_id != L.stripe_payout_id)


def payout_lines(session: Session, period: Period, livemode: bool | None) -> list[PayoutLine]:
    """The payouts arriving in ``period`` with their transactions summed by report column."""
    query = (
        select(Payout)
        .where(Payout.arrival_date >= period.start_utc, Payout.arrival_date < period.end_utc)
        .order_by(Payout.arrival_date, Payout.stripe_payout_id)
    )
    if livemode is not None:
        query = query.where(Payout.livemode.is_(livemode))
    payouts = {
        p.stripe_payout_id: PayoutLine(
            payout=p.stripe_payout_id,
            arrival_date=p.arrival_date,
            status=p.status,
            reconciliation=p.reconciliation_status,
            currency=p.currency,
            amount=p.amount_minor,
            livemode=p.livemode,
            listed=p.automatic and p.transactions_synced_at is not None,
            sums=dict.fromkeys(SUMS, 0),
        )
        for p in session.scalars(query)
    }
    if not payouts:
        return []
    sums = session.execute(
        select(
            L.stripe_payout_id,
            L.currency,
            L.category,
            wide_sum_expr(L.amount_minor),
            wide_sum_expr(L.fee_minor),
            func.count(),
        )
        .where(L.stripe_payout_id.in_(list(payouts)), _not_own())
        .group_by(L.stripe_payout_id, L.currency, L.category)
    )
    for payout_id, currency, category, amount, fee, count in sums:
        line = payouts[payout_id]
        if currency != line.currency:
            continue
        line.sums[COLUMN_OF.get(category, "other")] += int(amount or 0)
        line.sums["fees"] -= int(fee or 0)
        line.transactions += int(count)
    return list(payouts.values())


def _matches_a_payment() -> Any:
    """SQL: the transaction's source is a recorded payment, or a refund or dispute of one."""
    return or_(
        exists().where(Payment.stripe_charge_id == L.stripe_source_id),
        exists()
        .where(Refund.stripe_refund_id == L.stripe_source_id)
        .where(Payment.stripe_charge_id == Refund.stripe_charge_id),
        exists()
        .where(Dispute.stripe_dispute_id == L.stripe_source_id)
        .where(Payment.stripe_charge_id == Dispute.stripe_charge_id),
    )


def unmatched_rows(session: Session, lines: list[PayoutLine]) -> list[tuple[Any, ...]]:
    """Charge, refund and dispute transactions of these payouts that match no payment."""
    by_id = {line.payout: line for line in lines}
    if not by_id:
        return []
    found = session.execute(
        select(L)
        .where(
            L.stripe_payout_id.in_(list(by_id)),
            L.category.in_(("charge", "refund", "dispute")),
            _not_own(),
            ~_matches_a_payment(),
        )
        .order_by(L.stripe_payout_id, L.stripe_created, L.stripe_balance_transaction_id)
    ).scalars()
    rows = []
    for t in found:
        line = by_id[t.stripe_payout_id]
        sums: dict[str, int | None] = dict.fromkeys(SUMS, None)
        sums[COLUMN_OF[t.category]] = t.amount_minor
        sums["fees"] = -t.fee_minor
        rows.append(
            (
                t.stripe_payout_id,
                line.arrival_date,
                line.status,
                line.reconciliation,
                t.currency,
                None,
                *(sums[k] for k in SUMS),
                None,
                None,
                t.stripe_balance_transaction_id,
                t.stripe_source_id,
                True,
                t.livemode,
            )
        )
    rows.sort(key=lambda r: (r[1], r[0], r[13]))
    return rows


def totals(lines: list[PayoutLine]) -> list[tuple[Any, ...]]:
    """One line per currency: the payouts' amounts and sums added up (never across currencies)."""
    per: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    counts: dict[str, int] = defaultdict(int)
    unknown: set[str] = set()
    for line in lines:
        t = per[line.currency]
        t["amount"] += line.amount
        for k in SUMS:
            t[k] += line.sums[k]
        counts[line.currency] += line.transactions
        if line.difference is None:
            unknown.add(line.currency)
        else:
            t["difference"] += line.difference
    return [
        (
            "total",
            None,
            None,
            None,
            currency,
            t["amount"],
            *(t[k] for k in SUMS),
            None if currency in unknown else t["difference"],
            counts[currency],
            None,
            None,
            False,
            None,
        )
        for currency, t in sorted(per.items())
    ]


def payouts_table(session: Session, period: Period, livemode: bool | None) -> Table:
    """The payouts report as a table: payouts, then unmatched transactions; totals per currency."""
    lines = payout_lines(session, period, livemode)
    return Table(
        name="payouts",
        columns=COLUMNS,
        rows=[line.row() for line in lines] + unmatched_rows(session, lines),
        totals=totals(lines),
        meta={"report": "payouts", "livemode": livemode},
    )


@dataclass(frozen=True)
class Missing:
    """Payments of a period that ``paywall stripe sync`` has not completed yet."""

    payments: int
    no_fee: int
    no_payout: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "payments": self.payments,
            "without_fee": self.no_fee,
            "without_payout": self.no_payout,
            "command": FILL_COMMAND,
        }

    def note(self) -> str | None:
        """One sentence for a page or a file, or None when nothing is missing."""
        if not (self.no_fee or self.no_payout):
            return None
        return (
            f"{self.no_fee} of {self.payments} payments have no Stripe fee yet and {self.no_payout} "
            f"are in no payout yet; the command {FILL_COMMAND} fills them (a payment of the last "
            "few days may simply not be paid out yet)."
        )


def missing(
    session: Session,
    period: Period,
    livemode: bool | None,
    currency: str | None = None,
    kind: str | None = None,
) -> Missing:
    """How many payments of ``period`` (of one currency or kind, if given) have no fee, and how
    many are in no recorded payout."""
    # A join to the charges paid out, not NOT EXISTS: inside FILTER, PostgreSQL runs an EXISTS
    # once per payment (an index probe each) and, costing that high, JIT-compiles the query; for
    # 100,000 payments that took about 1 s before an export's first byte, a hash join ~0.1 s.
    # DISTINCT keeps one line per charge whatever the transactions hold.
    paid_out = select(L.stripe_source_id.label("charge")).where(L.category == "charge").distinct().subquery()
    query = (
        select(
            func.count(),
            func.count(Payment.id).filter(Payment.fee_minor.is_(None)),
            func.count(Payment.id).filter(paid_out.c.charge.is_(None)),
        )
        .select_from(Payment)
        .outerjoin(paid_out, paid_out.c.charge == Payment.stripe_charge_id)
        .where(Payment.paid_at >= period.start_utc, Payment.paid_at < period.end_utc)
    )
    if livemode is not None:
        query = query.where(Payment.livemode.is_(livemode))
    if currency:
        query = query.where(Payment.currency == currency.lower())
    if kind:
        query = query.where(Payment.kind == kind)
    total, no_fee, no_payout = session.execute(query).one()
    return Missing(int(total), int(no_fee), int(no_payout))
