"""Writers: CSV (RFC 4180), JSON and XLSX, all safe to open in a spreadsheet.

- Money is integer minor units in JSON; in CSV and XLSX an exact decimal in major units by the
  currency's exponent (JPY has none), written by our own code so it stays a number.
- Text cells that a spreadsheet would run as a formula (first character ``=``, ``+``, ``-``,
  ``@``, tab, carriage return, line feed or NUL) get a leading apostrophe (OWASP's advice).
  Only text is touched: a refund of -12.50 is a number and stays one.
- CSV, JSON and XLSX are produced in chunks, so a million rows never sit in memory; the XLSX
  zip is written as it is sent (``xlsx.py`` says why it writes the sheet's XML itself).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import IO, Any
from zoneinfo import ZoneInfo

from paywall import clock, money
from paywall.reports.tables import BOOL, DATETIME, INT, MONEY, NUMBER, RATIO, Table

FORMULA_START = frozenset("=+-@\t\r\n\0")
CURRENCY_CODE = re.compile(r"[A-Za-z]{3}")
CHUNK_BYTES = 64 * 1024
# Rows converted per writerows call (about 50 KB of CSV for the payments export).
CSV_BATCH = 256
# Formatted amounts remembered per currency by the CSV writer (a few MB at most).
MONEY_CACHE = 50_000
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def safe_text(value: str) -> str:
    """``value`` made inert for spreadsheets: a leading apostrophe before a formula character."""
    if value and value[0] in FORMULA_START:
        return "'" + value
    return value


def major(amount_minor: int, exponent: int) -> str:
    """Minor units as a plain decimal string (same as ``money.format_major``, faster)."""
    if exponent == 0:
        return str(amount_minor)
    sign = "-" if amount_minor < 0 else ""
    whole, frac = divmod(abs(amount_minor), 10**exponent)
    return f"{sign}{whole}.{frac:0{exponent}d}"


def _currency_indexes(table: Table) -> list[int | None]:
    """For each column, the index of the column holding its currency (money columns only)."""
    keys = table.keys
    return [keys.index(c.currency) if c.kind == MONEY and c.currency in keys else None for c in table.columns]


class _Amounts(dict[int, str]):
    """Minor units -> major-unit decimal text for one currency, remembered (integer arithmetic).

    Amounts repeat (prices, zero refunds, fees), so most cells are one dict lookup; the memory
    is bounded by ``MONEY_CACHE`` entries per currency.
    """

    def __init__(self, exponent: int) -> None:
        super().__init__()
        self.q = 10**exponent
        self.pattern = f"%d.%0{exponent}d" if exponent else ""

    def __missing__(self, v: int) -> str:
        if not self.pattern:
            text = str(v)
        elif v >= 0:
            text = self.pattern % divmod(v, self.q)
        else:
            text = "-" + self.pattern % divmod(-v, self.q)
        if len(self) < MONEY_CACHE:
            self[v] = text
        return text


class _MoneyFormats(dict[Any, _Amounts]):
    """currency -> its ``_Amounts``."""

    def __missing__(self, currency: Any) -> _Amounts:
        amounts = self[currency] = _Amounts(money.exponent(currency or ""))
        return amounts


class _Bools(dict[Any, Any]):
    """True/False (or 1/0) as "true"/"false"; any other truthy value is true."""

    def __missing__(self, v: Any) -> str:
        return "true" if v else "false"


def _csv_text(v: Any) -> Any:
    """A text cell of any type: None stays empty, anything else is written as safe text."""
    if v is None:
        return None
    return safe_text(str(v))


def _csv_time(tz: ZoneInfo) -> Callable[[Any], str]:
    """Aware datetimes, or SQLite's naive-UTC text, as local ISO 8601 to the second."""
    utc = tz.key == "UTC"
    fromisoformat = dt.datetime.fromisoformat

    def write(v: Any) -> str:
        if v.__class__ is str:
            if utc and len(v) >= 19 and v[10] in " T" and v[19:20] in ("", "."):
                # "YYYY-MM-DD HH:MM:SS[.ffffff]" is already UTC: no parsing needed.
                return v[:10] + "T" + v[11:19] + "+00:00"
            v = fromisoformat(v).replace(tzinfo=dt.UTC)
        result: str = v.astimezone(tz).isoformat(timespec="seconds")
        return result

    return write


def _csv_row_function(table: Table, tz: ZoneInfo) -> Callable[[Any], tuple[Any, ...]]:
    """A function turning one row into CSV cells, generated for this table's columns.

    The per-cell work is written out as one expression per column (no loop, no list per row):
    this is the payments export's hot path, a million rows.
    """
    currency_of = _currency_indexes(table)
    n = len(table.columns)
    fast, careful = [], []
    for i, col in enumerate(table.columns):
        v = f"c{i}"
        if col.kind == MONEY:
            cur = f"c{currency_of[i]}" if currency_of[i] is not None else "None"
            cell = f"(None if {v} is None else _money[{cur}][{v}])"
        elif col.kind == DATETIME:
            cell = f"(None if {v} is None else _time({v}))"
        elif col.kind == BOOL:
            cell = f"_bool[{v}]"
        elif col.kind in (INT, RATIO, NUMBER):
            cell = v
        else:
            # Text cells are str or None (written as an empty cell by the csv module): None and
            # "" are falsy, so one test covers both. Any other value makes this raise (an int is
            # not subscriptable, str + int fails) or pass through unchanged (a falsy 0 is written
            # as str(0) either way), and the row is redone the careful way.
            fast.append(f"(_quote + {v} if {v} and {v}[0] in _start else {v})")
            careful.append(f"_text({v})")
            continue
        fast.append(cell)
        careful.append(cell)
    unpack = ", ".join(f"c{i}" for i in range(n)) + ("," if n == 1 else "")
    source = (
        f"def row(r):\n    {unpack} = r\n"
        f"    try:\n        return ({', '.join(fast)},)\n"
        f"    except Exception:\n        return ({', '.join(careful)},)\n"
    )
    env: dict[str, Any] = {
        "_money": _MoneyFormats(),
        "_time": _csv_time(tz),
        "_bool": _Bools({True: "true", False: "false", None: None}),
        "_start": FORMULA_START,
        "_text": _csv_text,
        "_quote": "'",
    }
    exec(source, env)  # noqa: S102 - source built above from column kinds only, no data
    row: Callable[[Any], tuple[Any, ...]] = env["row"]
    return row


def csv_chunks(table: Table, tz: ZoneInfo, *, bom: bool = False) -> Iterator[bytes]:
    """The table as CSV (RFC 4180: CRLF, quotes doubled), a header row first, in ~64 KiB chunks.

    Rows come from ``table.csv_rows`` when set (the driver's form: datetimes may be SQLite's
    naive-UTC text, booleans 0/1), else from ``table.rows``.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    if bom:
        buf.write("\ufeff")
    writer.writerow(table.headers)
    convert = _csv_row_function(table, tz)
    writerows = writer.writerows
    rows = iter(table.csv_rows if table.csv_rows is not None else table.rows)
    while batch := list(islice(rows, CSV_BATCH)):
        writerows(map(convert, batch))
        if buf.tell() >= CHUNK_BYTES:
            yield buf.getvalue().encode()
            buf.seek(0)
            buf.truncate()
    writerows(map(convert, table.totals))
    yield buf.getvalue().encode()


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return clock.isoformat(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def json_chunks(table: Table) -> Iterator[bytes]:
    """``{...meta, "rows": [...], "totals": [...]}`` with amounts as integers in minor units."""
    keys = table.keys
    head = json.dumps({k: _json_value(v) for k, v in table.meta.items()})
    yield (head[:-1] + (", " if table.meta else "") + '"rows": [').encode()
    parts: list[str] = []
    size = 0
    first = True
    for row in table.rows:
        item = json.dumps({k: _json_value(v) for k, v in zip(keys, row, strict=True)})
        parts.append(item if first else "," + item)
        first = False
        size += len(item)
        if size >= CHUNK_BYTES:
            yield "".join(parts).encode()
            parts, size = [], 0
    totals = ",".join(
        json.dumps({k: _json_value(v) for k, v in zip(keys, row, strict=True)}) for row in table.totals
    )
    parts.append(f'], "totals": [{totals}]}}')
    yield "".join(parts).encode()


def number_format(currency: str) -> str:
    """An Excel number format for ``currency``: its decimals and its code, e.g. '#,##0.00 "EUR"'.

    Only a three-letter code goes into the format: it is written into the workbook's styles as
    is, where a quote or a control character from a stored value would corrupt the file."""
    exp = money.exponent(currency)
    digits = "." + "0" * exp if exp else ""
    code = f' "{currency.upper()}"' if CURRENCY_CODE.fullmatch(currency) else ""
    return f"#,##0{digits}{code}"


def write_xlsx(table: Table, target: IO[bytes], tz: ZoneInfo) -> None:
    """The table as one XLSX sheet, written to ``target`` (see ``xlsx.xlsx_chunks``)."""
    from paywall.reports.xlsx import xlsx_chunks

    write_all(xlsx_chunks(table, tz), target)


def export_chunks(table: Table, fmt: str, tz: ZoneInfo) -> Iterator[bytes]:
    """The table in ``fmt`` (csv, json, xlsx) as byte chunks."""
    if fmt == "csv":
        return csv_chunks(table, tz)
    if fmt == "json":
        return json_chunks(table)
    if fmt == "xlsx":
        from paywall.reports.xlsx import xlsx_chunks

        return xlsx_chunks(table, tz)
    raise ValueError(f"unknown format {fmt!r}")


def write_all(chunks: Iterable[bytes], out: IO[bytes]) -> int:
    """Write chunks to ``out``; returns the byte count."""
    n = 0
    for chunk in chunks:
        out.write(chunk)
        n += len(chunk)
    return n
