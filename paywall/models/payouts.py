"""Stripe payouts and the balance transactions each one paid out: what finance reconciles with the bank.

Money is integer minor units plus a lowercase ISO currency (the balance's, which is the payout's).
A balance transaction's ``amount`` is gross (positive: money in; negative: money out), ``fee`` is
Stripe's fee on it (positive when charged) and ``net = amount - fee``. An automatic payout pays out
the net of its transactions: its ``amount`` equals the sum of their ``net``, leaving out the
payout's own transaction (``amount = -payout.amount``), which is why ``source`` is kept: a row
whose source is its own payout is that transaction.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from paywall.db import Base
from paywall.models.billing import StripeId, SyncedMixin


class Payout(SyncedMixin, Base):
    """A Stripe payout (``po_…``) as the newest state seen (webhook or ``paywall stripe sync``)."""

    __tablename__ = "payouts"
    __table_args__ = (Index("ix_payouts_arrival_date", "arrival_date"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_payout_id: Mapped[str] = mapped_column(StripeId, unique=True)
    amount_minor: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    # pending, in_transit, paid, failed, canceled
    status: Mapped[str] = mapped_column(String(32))
    # in_progress, completed, not_applicable (manual payouts: Stripe cannot list their transactions)
    reconciliation_status: Mapped[str | None] = mapped_column(String(32))
    automatic: Mapped[bool] = mapped_column(Boolean, default=True)
    arrival_date: Mapped[dt.datetime]
    stripe_created: Mapped[dt.datetime | None]
    stripe_balance_transaction_id: Mapped[str | None] = mapped_column(StripeId)
    failure_code: Mapped[str | None] = mapped_column(String(64))
    # When ``paywall stripe sync`` last listed its transactions, and the payout's state then
    # (``status/reconciliation_status``): a payout whose state changed since is listed again.
    transactions_synced_at: Mapped[dt.datetime | None]
    transactions_synced_state: Mapped[str | None] = mapped_column(String(64))


class PayoutTransaction(Base):
    """One balance transaction paid out in a payout, linked by ``stripe_source_id`` to the charge
    (a payment), refund, dispute or fee it records.

    ``category`` is this service's grouping for the payout report (charge, refund, dispute, fee,
    payout, other), from Stripe's ``reporting_category`` where it has one, else from ``type``.
    """

    __tablename__ = "payout_transactions"
    __table_args__ = (Index("ix_payout_transactions_source", "stripe_source_id", "category"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_balance_transaction_id: Mapped[str] = mapped_column(StripeId, unique=True)
    stripe_payout_id: Mapped[str] = mapped_column(StripeId, index=True)
    stripe_source_id: Mapped[str | None] = mapped_column(StripeId)
    type: Mapped[str] = mapped_column(String(64))
    reporting_category: Mapped[str | None] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(16))
    amount_minor: Mapped[int]
    fee_minor: Mapped[int] = mapped_column(default=0)
    net_minor: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    stripe_created: Mapped[dt.datetime | None]
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
