"""The donors report for tax receipts: per donor and currency, gifts in a calendar year.

A gift counts net of its refunds and of any amount lost to a dispute (money that went back is
not a gift); a gift with nothing left is not counted at all. Donors are told apart by reader,
then by email (case-insensitive), then by Stripe customer, then by the charge itself.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from paywall.reports.payments import COLUMNS as PAYMENT_COLUMNS
from paywall.reports.payments import iter_payments
from paywall.reports.periods import Period
from paywall.reports.tables import DATETIME, INT, MONEY, TEXT, Column, Table

COLUMNS = [
    Column("email"),
    Column("name"),
    Column("reader"),
    Column("currency"),
    Column("count", INT),
    Column("total", MONEY),
    Column("first", DATETIME),
    Column("last", DATETIME),
]


@dataclass
class DonorTotal:
    email: str | None
    name: str | None
    reader: str | None
    currency: str
    count: int
    total: int
    first: dt.datetime
    last: dt.datetime


def donors_table(session: Session, period: Period, livemode: bool | None, kind: str = "donation") -> Table:
    """Donors of ``period`` (a calendar year in the reporting time zone, usually), largest totals
    first; with ``kind="subscription"``, subscribers' payments the same way."""
    donors: dict[tuple[str, str], DonorTotal] = {}
    for row in iter_payments(session, period, livemode, kind=kind, with_reader_id=True):
        paid_at, charge, customer, reader, email, name, currency = (
            row[0], row[1], row[7], row[12], row[13], row[14], row[15],
        )  # fmt: skip
        # A refunded or disputed sum beyond 64 bits is NULL (see sums.bigint_or_null).
        kept = row[16] - (row[17] or 0) - (row[18] or 0)
        if kept <= 0:
            continue
        reader_id = row[len(PAYMENT_COLUMNS)]
        who = (
            f"r:{reader_id}"
            if reader_id is not None
            else f"e:{email.lower()}"
            if email
            else f"c:{customer}"
            if customer
            else f"ch:{charge}"
        )
        found = donors.get((who, currency))
        if found is None:
            donors[(who, currency)] = DonorTotal(email, name, reader, currency, 1, kept, paid_at, paid_at)
            continue
        found.count += 1
        found.total += kept
        found.last = paid_at
        # The latest gift's details win: they are the donor's current ones.
        found.email = email or found.email
        found.name = name or found.name
    ordered = sorted(donors.values(), key=lambda d: (d.currency, -d.total, (d.email or "").lower()))
    rows: list[tuple[Any, ...]] = [
        (d.email, d.name, d.reader, d.currency, d.count, d.total, d.first, d.last) for d in ordered
    ]
    totals: dict[str, list[int]] = {}
    for d in ordered:
        t = totals.setdefault(d.currency, [0, 0])
        t[0] += d.count
        t[1] += d.total
    total_rows = [("total", None, None, c, totals[c][0], totals[c][1], None, None) for c in sorted(totals)]
    return Table(
        name="donors",
        columns=COLUMNS,
        rows=rows,
        totals=total_rows,
        meta={"report": "donors", "livemode": livemode}
        | ({"year": period.start.year} if _calendar_year(period) else {}),
    )


def _calendar_year(period: Period) -> bool:
    return (period.start.month, period.start.day, period.end) == (
        1,
        1,
        period.start.replace(year=period.start.year + 1),
    )


_ = TEXT
