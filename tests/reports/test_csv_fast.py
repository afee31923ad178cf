"""The payments CSV fast path: driver rows and a generated row writer, byte for byte the plain way."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import threading
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from paywall import money
from paywall.db import Database
from paywall.models import Payment
from paywall.reports import exporters, payments
from paywall.reports.exporters import csv_chunks, safe_text
from paywall.reports.payments import iter_payments, payments_table
from paywall.reports.periods import Period
from paywall.reports.tables import BOOL, DATETIME, INT, MONEY, Column, Table
from tests.support.billing_rows import dispute, payment, refund, utc

ZONES = ["UTC", "America/New_York", "Asia/Kolkata"]


def _reference_csv(table: Table, tz: ZoneInfo) -> bytes:
    """The CSV written the slow, obvious way, one cell at a time, from ``table.rows``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(table.keys)
    keys = table.keys
    for row in [*table.rows, *table.totals]:
        out: list[Any] = []
        for col, v in zip(table.columns, row, strict=True):
            if v is None:
                out.append(None)
            elif col.kind == MONEY:
                out.append(money.format_major(v, row[keys.index(col.currency)] or ""))
            elif col.kind == DATETIME:
                out.append(v.astimezone(tz).isoformat(timespec="seconds"))
            elif col.kind == BOOL:
                out.append("true" if v else "false")
            elif col.kind == INT:
                out.append(v)
            else:
                out.append(safe_text(str(v)))
        writer.writerow(out)
    return buf.getvalue().encode()


def _history(db: Database) -> None:
    with db.transaction() as s:
        for i in range(40):
            currency = ["usd", "jpy", "kwd", "eur"][i % 4]
            p = payment(
                s,
                amount_minor=1000 + 37 * i,
                currency=currency,
                fee_minor=None if i % 9 == 0 else 59 + i,
                balance_currency="usd" if i % 7 == 0 else None,
                email=["=cmd|' /C calc'!A0", "+1", None, "ana@example.org", "", "\tx"][i % 6],
                name=["-Eve", "@x", "Bob", None][i % 4],
                campaign="c" if i % 2 else None,
                appeal_experiment="footer-copy" if i % 3 else None,
                appeal_variant=["urgent", "holdback", None][i % 3],
                appeal_channel=["=footer", "direct", None][i % 3],
                recurring=bool(i % 3) if i % 5 else None,
                # Microseconds and times near midnight, so zones shift the local day.
                paid_at=utc(2026, 3, 1 + i % 20, 23 if i % 2 else 0, 59, 59) + dt.timedelta(microseconds=i),
                livemode=bool(i % 2),
            )
            if i % 3 == 0:
                refund(s, p, amount_minor=p.amount_minor // 3)
            if i % 4 == 1:
                dispute(s, p, status="lost" if i % 8 == 1 else "won")
            if i % 11 == 0:
                # Refunded beyond the fee: a negative net, which must stay a number.
                refund(s, p, amount_minor=p.amount_minor)


@pytest.mark.parametrize("zone", ZONES)
def test_fast_csv_matches_the_plain_way(db: Database, zone: str) -> None:
    _history(db)
    tz = ZoneInfo(zone)
    period = Period(dt.date(2026, 2, 1), dt.date(2026, 4, 1), tz)
    with db.transaction(readonly=True) as s:
        fast = b"".join(csv_chunks(payments_table(s, period, None), tz))
        table = payments_table(s, period, None)
        plain = b"".join(csv_chunks(dataclasses.replace(table, csv_rows=None), tz))
        reference = _reference_csv(payments_table(s, period, None), tz)
    assert fast == plain == reference
    assert fast.count(b"\r\n") == 41
    assert b"'=cmd" in fast
    assert b"'-Eve" in fast


def test_fast_csv_matches_the_plain_way_with_unmatched_refunds(db: Database) -> None:
    """Refunds of charges never recorded: lines with no date, no text and amount 0, both paths alike."""
    _history(db)
    with db.transaction() as s:
        for i, currency in enumerate(["usd", "kwd", "jpy"]):
            orphan = Payment(
                stripe_charge_id=f"ch_orphan_{i}", kind="donation", amount_minor=900, currency=currency,
                paid_at=utc(2025, 1, 1), livemode=bool(i % 2),
            )  # fmt: skip
            refund(s, orphan, amount_minor=300 + i, stripe_created=utc(2026, 3, 2 + i, 23, 30))
            refund(s, orphan, amount_minor=5, stripe_created=utc(2026, 3, 9), status="failed")
    period = Period(dt.date(2026, 2, 1), dt.date(2026, 4, 1), ZoneInfo("UTC"))
    for zone in ZONES:
        tz = ZoneInfo(zone)
        with db.transaction(readonly=True) as s:
            fast = b"".join(csv_chunks(payments_table(s, period, None), tz))
            table = payments_table(s, period, None)
            plain = b"".join(csv_chunks(dataclasses.replace(table, csv_rows=None), tz))
            reference = _reference_csv(payments_table(s, period, None), tz)
            rows = list(iter_payments(s, period, None))
        assert fast == plain == reference
    assert fast.count(b"\r\n") == 44
    tail = rows[40:]
    assert [(r[1], r[15], r[16], r[17], r[23], r[24], r[25]) for r in tail] == [
        ("ch_orphan_0", "usd", 0, 300, -300, False, True),
        ("ch_orphan_1", "kwd", 0, 301, -301, True, True),
        ("ch_orphan_2", "jpy", 0, 302, -302, False, True),
    ]
    assert all(r[25] is False for r in rows[:40])


def test_rows_in_small_batches_are_all_there(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    _history(db)
    monkeypatch.setattr(payments, "FETCH_ROWS", 3)
    period = Period(dt.date(2026, 2, 1), dt.date(2026, 4, 1), ZoneInfo("UTC"))
    with db.transaction(readonly=True) as s:
        rows = list(iter_payments(s, period, None))
        driver = list(iter_payments(s, period, None, driver_rows=True))
    assert len(rows) == len(driver) == 40
    assert all(isinstance(r[0], dt.datetime) and r[0].utcoffset() == dt.timedelta(0) for r in rows)
    assert all(isinstance(r[24], bool) for r in rows)
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert [r[1] for r in rows] == [r[1] for r in driver]


def test_an_export_closed_early_lets_go_of_the_connection(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that disconnects mid-download: the prefetching thread ends, the session goes on."""
    _history(db)
    monkeypatch.setattr(payments, "FETCH_ROWS", 2)
    period = Period(dt.date(2026, 2, 1), dt.date(2026, 4, 1), ZoneInfo("UTC"))
    with db.transaction(readonly=True) as s:
        rows = iter_payments(s, period, None, driver_rows=True)
        first = [next(rows) for _ in range(5)]
        # iter_payments is a generator typed as an Iterator, which declares no close().
        rows.close()  # type: ignore[attr-defined]
        assert len(first) == 5
        assert not [t for t in threading.enumerate() if t.name == "payments-prefetch"]
        assert s.execute(text("SELECT count(*) FROM payments")).scalar_one() == 40


@given(
    st.lists(st.integers(min_value=-(10**12), max_value=10**12), min_size=1, max_size=60),
    st.sampled_from(["usd", "jpy", "kwd", None]),
)
def test_money_cells_match_format_major_past_the_cache(amounts: list[int], currency: str | None) -> None:
    table = Table(
        "t", [Column("currency"), Column("amount", MONEY)], [(currency, a) for a in amounts + amounts]
    )
    original = exporters.MONEY_CACHE
    exporters.MONEY_CACHE = 5  # most amounts are formatted without being remembered
    try:
        text_ = b"".join(csv_chunks(table, ZoneInfo("UTC"))).decode()
    finally:
        exporters.MONEY_CACHE = original
    cells = [row[1] for row in csv.reader(io.StringIO(text_, newline=""))][1:]
    assert cells == [money.format_major(a, currency or "") for a in amounts + amounts]


def test_text_cells_of_other_types_are_written_as_safe_text() -> None:
    values: list[Any] = [None, "", 0, 7, -3, False, True, dt.date(2026, 1, 2), "=x", "-", "ok", 1.5, ["=a"]]
    cols = [Column("v"), Column("currency"), Column("amount", MONEY)]
    table = Table("t", cols, [(v, "usd", -1) for v in values])
    assert b"".join(csv_chunks(table, ZoneInfo("UTC"))) == _reference_csv(table, ZoneInfo("UTC"))
