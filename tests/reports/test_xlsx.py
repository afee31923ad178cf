"""The streamed XLSX writer: what a spreadsheet reads back, and that it sends before the last row."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import load_workbook

from paywall.reports.exporters import CSV_BATCH
from paywall.reports.tables import BOOL, DATETIME, INT, MONEY, TEXT, Column, Table
from paywall.reports.xlsx import xlsx_chunks

NEW_YORK = ZoneInfo("America/New_York")
COLUMNS = [
    Column("label", TEXT),
    Column("at", DATETIME),
    Column("currency"),
    Column("amount", MONEY),
    Column("count", INT),
    Column("recurring", BOOL),
]


def _read(table: Table, tz: ZoneInfo = NEW_YORK) -> Any:
    ws = load_workbook(io.BytesIO(b"".join(xlsx_chunks(table, tz)))).active
    assert ws is not None
    return ws


def test_cells_read_back_typed_in_place_and_escaped() -> None:
    at = dt.datetime(2026, 7, 1, 16, 30, 5, tzinfo=dt.UTC)
    rows = [
        ("<b>&co</b>", at, "usd", -1250, 3, True),
        (None, None, "jpy", 500, None, False),  # empty cells leave the next ones in place
        ("bell\x07 and  spaces ", at, "kwd", 1234, 0, None),
    ]
    table = Table("revenue", COLUMNS, rows, totals=[("total", None, "usd", -1250, 3, None)])
    table.first_heading = "plan"
    ws = _read(table)
    values = list(ws.iter_rows(values_only=True))
    assert values[0] == ("plan", "at", "currency", "amount", "count", "recurring")
    assert ws["A1"].font.b and ws.freeze_panes == "A2" and ws.title == "revenue"
    assert values[1][0] == "<b>&co</b>"
    assert values[1][1] == dt.datetime(2026, 7, 1, 12, 30, 5)  # noqa: DTZ001 - New York wall time
    assert ws["B2"].number_format == "yyyy-mm-dd hh:mm:ss"
    assert Decimal(str(values[1][3])) == Decimal("-12.50") and ws["D2"].number_format == '#,##0.00 "USD"'
    assert values[1][4:] == (3, True)
    assert values[2] == (None, None, "jpy", 500, None, False) and ws["D3"].number_format == '#,##0 "JPY"'
    assert values[3][0] == "bell and  spaces "  # XML cannot hold BEL; spaces kept
    assert Decimal(str(values[3][3])) == Decimal("1.234") and ws["D4"].number_format == '#,##0.000 "KWD"'
    assert values[4][0] == "total" and ws["D5"].data_type == "n"


def test_the_first_chunk_leaves_before_the_rows_are_read() -> None:
    consumed = 0

    def rows() -> Iterator[tuple[Any, ...]]:
        nonlocal consumed
        for i in range(CSV_BATCH * 40):
            consumed += 1
            yield (f"row {i}", None, "eur", i, i, i % 2 == 0)

    chunks = xlsx_chunks(Table("payments", COLUMNS, rows()), NEW_YORK)
    first = next(chunks)
    assert first.startswith(b"PK\x03\x04") and consumed <= CSV_BATCH + 1
    rest = list(chunks)
    assert len(rest) > 1 and consumed == CSV_BATCH * 40
    ws = load_workbook(io.BytesIO(first + b"".join(rest))).active
    assert ws is not None and ws.max_row == CSV_BATCH * 40 + 1


def test_sqlite_text_times_are_read_as_utc_in_any_zone() -> None:
    """The driver's form (``csv_rows``): SQLite keeps UTCDateTime as naive UTC text."""
    columns = [Column("at", DATETIME)]
    text_rows = [("2026-07-01 16:30:05.000000",), ("2026-07-01T16:30:05+00:00",)]
    for tz, wall in ((ZoneInfo("UTC"), 16), (NEW_YORK, 12)):
        table = Table("t", columns, rows=[], csv_rows=text_rows)
        values = [r[0] for r in _read(table, tz).iter_rows(min_row=2, values_only=True)]
        assert values == [dt.datetime(2026, 7, 1, wall, 30, 5)] * 2  # noqa: DTZ001 - wall time
