"""XLSX written as it streams: the sheet's rows go into a zip entry while the zip is being sent.

Why our own sheet XML: openpyxl (write-only) and XlsxWriter (constant_memory) both write the rows
to a temporary file and build the zip only when the workbook is closed, so nothing can be sent
until the last row is written; and for the payments export both are several times slower than
the CSV (bench/reports.py measures all three). Here the standard library's ``zipfile`` writes
into a non-seekable buffer (sizes go in data descriptors after each entry), which is drained
after every batch of rows, and each row's XML is built by one function generated for the table's
columns, as the CSV writer does.

The sheet uses inline strings (no shared-string table to hold back until the end) and cell
styles that are only known once the rows are written (one number format per currency met), so
``styles.xml`` and the other small parts follow the sheet in the zip: readers find entries by
name through the zip's central directory, which comes last anyway.
"""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo

from paywall.reports.exporters import (
    CHUNK_BYTES,
    CSV_BATCH,
    FORMULA_START,
    _currency_indexes,
    _MoneyFormats,
    number_format,
)
from paywall.reports.tables import BOOL, DATETIME, INT, MONEY, NUMBER, RATIO, Table

# Characters XML 1.0 cannot hold (control characters, lone surrogates, U+FFFE/U+FFFF): dropped.
ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# Text with none of these goes into the sheet as it is (ids, emails, names: nearly every cell).
NEEDS_WORK = re.compile("[&<>\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
XML_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
EXCEL_EPOCH = dt.datetime(1899, 12, 30)  # noqa: DTZ001 - Excel's serial dates have no zone
# Deflate level: 1 is several times faster than the default 6 and the file only ~25% larger.
COMPRESS_LEVEL = 1
# Style indexes fixed in styles.xml; currency formats are appended from FIRST_MONEY_STYLE on.
BOLD_STYLE, DATETIME_STYLE, FIRST_MONEY_STYLE = 1, 2, 3

_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/styles.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
    "</Types>"
)
_ROOT_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
    'Target="xl/workbook.xml"/></Relationships>'
)
_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
    'Target="worksheets/sheet1.xml"/>'
    '<Relationship Id="rId2" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" '
    'Target="styles.xml"/></Relationships>'
)
_SHEET_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    '<sheetViews><sheetView workbookViewId="0">'
    '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
    "</sheetView></sheetViews><sheetData>"
)
_SHEET_TAIL = "</sheetData></worksheet>"


def _column_letters(n: int) -> list[str]:
    """A, B, ... Z, AA, ... for ``n`` columns."""
    out = []
    for i in range(1, n + 1):
        name = ""
        while i:
            i, rest = divmod(i - 1, 26)
            name = chr(65 + rest) + name
        out.append(name)
    return out


def _xml_text(value: str) -> str:
    """Text for an inline string: formula starts neutralised, XML-illegal characters dropped, escaped."""
    if value and value[0] in FORMULA_START:
        value = "'" + value
    return ILLEGAL_XML.sub("", value).translate(XML_ESCAPES)


def _text_cell(tz: ZoneInfo) -> Callable[[Any], str]:
    """Any value as the XML text of an inline string; plain text (the common case) as it is."""
    needs_work = NEEDS_WORK.search
    start = FORMULA_START

    def text(v: Any) -> str:
        if v.__class__ is str and not needs_work(v) and (not v or v[0] not in start):
            return v
        return _xml_text(v if v.__class__ is str else str(v))

    return text


class _Styles(dict[str, int]):
    """Number format -> cell style index, numbered in the order the rows meet them."""

    def __missing__(self, fmt: str) -> int:
        index = self[fmt] = FIRST_MONEY_STYLE + len(self)
        return index


def _serial_time(tz: ZoneInfo) -> Callable[[Any], str]:
    """Aware datetimes (or SQLite's naive-UTC text) as Excel serial days of local wall time,
    to the second (as the CSV)."""
    fromisoformat = dt.datetime.fromisoformat
    utc = tz.key == "UTC"

    def serial(v: Any) -> str:
        if v.__class__ is str:
            v = fromisoformat(v)
            if v.tzinfo is None:  # SQLite's form of UTCDateTime: naive UTC
                local = v if utc else v.replace(tzinfo=dt.UTC).astimezone(tz).replace(tzinfo=None)
            else:
                local = v.astimezone(tz).replace(tzinfo=None)
        else:
            local = v.astimezone(tz).replace(tzinfo=None)
        delta = local - EXCEL_EPOCH
        return repr(delta.days + delta.seconds / 86400)

    return serial


def _row_function(table: Table, tz: ZoneInfo, styles: _Styles) -> Callable[[int, Any], str]:
    """A function turning (row number, row) into ``<row>`` XML, generated for the table's columns.

    Empty cells are left out (every cell carries its reference, so the next one stays in place).
    """
    currency_of = _currency_indexes(table)
    letters = _column_letters(len(table.columns))
    parts = []
    for i, col in enumerate(table.columns):
        v, ref = f"c{i}", f'<c r="{letters[i]}%d"'
        if col.kind == MONEY:
            cur = f"c{currency_of[i]}" if currency_of[i] is not None else "None"
            cell = f"('{ref} s=\"%d\"><v>%s</v></c>' % (n, _style[{cur}], _money[{cur}][{v}]))"
        elif col.kind == DATETIME:
            cell = f"('{ref} s=\"{DATETIME_STYLE}\"><v>%s</v></c>' % (n, _time({v})))"
        elif col.kind == BOOL:
            cell = f"('{ref} t=\"b\"><v>%d</v></c>' % (n, 1 if {v} else 0))"
        elif col.kind == INT:
            cell = f"('{ref}><v>%d</v></c>' % (n, {v}))"
        elif col.kind in (RATIO, NUMBER):
            cell = f"('{ref}><v>%r</v></c>' % (n, float({v})))"
        else:
            cell = f'(\'{ref} t="inlineStr"><is><t xml:space="preserve">%s</t></is></c>\' % (n, _text({v})))'
        parts.append(f"({cell} if {v} is not None else '')")
    unpack = ", ".join(f"c{i}" for i in range(len(table.columns))) + ("," if len(table.columns) == 1 else "")
    source = (
        f"def row(n, r):\n    {unpack} = r\n"
        f"    return ''.join(('<row r=\"%d\">' % n, {', '.join(parts)}, '</row>'))\n"
    )
    env: dict[str, Any] = {
        "_money": _MoneyFormats(),
        "_style": _CurrencyStyles(styles),
        "_time": _serial_time(tz),
        "_text": _text_cell(tz),
    }
    exec(source, env)  # noqa: S102 - source built above from column kinds only, no data
    row: Callable[[int, Any], str] = env["row"]
    return row


class _CurrencyStyles(dict[Any, int]):
    """Currency -> the style index of its number format."""

    def __init__(self, styles: _Styles) -> None:
        super().__init__()
        self.styles = styles

    def __missing__(self, currency: Any) -> int:
        index = self[currency] = self.styles[number_format(str(currency or ""))]
        return index


def _styles_xml(styles: _Styles) -> str:
    """styles.xml: the default cell, bold (header), local date-time, then one style per currency format."""
    formats = sorted(styles.items(), key=lambda item: item[1])

    def attr(text: str) -> str:
        return text.translate(XML_ESCAPES).replace('"', "&quot;")

    numfmts = [(164, "yyyy-mm-dd hh:mm:ss")] + [(165 + i, fmt) for i, (fmt, _) in enumerate(formats)]
    xfs = (
        '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
        '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>'
        + "".join(
            f'<xf numFmtId="{fid}" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
            for fid, _ in numfmts
        )
    )
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        f'<numFmts count="{len(numfmts)}">'
        + "".join(f'<numFmt numFmtId="{fid}" formatCode="{attr(code)}"/>' for fid, code in numfmts)
        + "</numFmts>"
        '<fonts count="2"><font><sz val="11"/><name val="Calibri"/></font>'
        '<font><b/><sz val="11"/><name val="Calibri"/></font></fonts>'
        '<fills count="2"><fill><patternFill patternType="none"/></fill>'
        '<fill><patternFill patternType="gray125"/></fill></fills>'
        '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
        '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
        f'<cellXfs count="{2 + len(numfmts)}">{xfs}</cellXfs>'
        '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
        "</styleSheet>"
    )


def _workbook_xml(sheet_name: str) -> str:
    # Sheet names: at most 31 characters, none of []:*?/\ (ours are report names).
    name = re.sub(r"[\[\]:*?/\\]", "_", sheet_name)[:31] or "report"
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
        f'<sheets><sheet name="{name.translate(XML_ESCAPES)}" sheetId="1" r:id="rId1"/></sheets>'
        "</workbook>"
    )


class _Pipe:
    """A write-only, non-seekable file for ``zipfile``: the bytes wait here until drained."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def drain(self) -> bytes:
        data = b"".join(self.parts)
        self.parts, self.size = [], 0
        return data


def xlsx_chunks(table: Table, tz: ZoneInfo) -> Iterator[bytes]:
    """The table as one XLSX sheet (header row frozen and bold, money numeric with its currency's
    format, local date-times), in chunks of about 64 KiB, the first as soon as the first rows are in."""
    pipe = _Pipe()
    styles = _Styles()
    row_xml = _row_function(table, tz, styles)
    headers = "".join(
        f'<c r="{letter}1" s="{BOLD_STYLE}" t="inlineStr"><is><t>{_xml_text(key)}</t></is></c>'
        for letter, key in zip(_column_letters(len(table.columns)), table.headers, strict=True)
    )
    rows = iter(table.csv_rows if table.csv_rows is not None else table.rows)
    with zipfile.ZipFile(pipe, "w", zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as zf:
        # No ZIP64: Excel refuses a streamed entry whose local header carries a ZIP64 extra field
        # (Apache POI and commons-compress found this out), and a sheet past 4 GiB of XML (about
        # seven million payments) is far beyond Excel's 1,048,576 rows anyway; zipfile would stop
        # with an error there rather than write a broken file.
        with zf.open("xl/worksheets/sheet1.xml", "w") as sheet:
            sheet.write(f'{_SHEET_HEAD}<row r="1">{headers}</row>'.encode())
            n = 1
            first = True
            while batch := list(islice(rows, CSV_BATCH)):
                xml = []
                for r in batch:
                    n += 1
                    xml.append(row_xml(n, r))
                sheet.write("".join(xml).encode())
                if first or pipe.size >= CHUNK_BYTES:
                    first = False
                    yield pipe.drain()
            totals = []
            for r in table.totals:
                n += 1
                totals.append(row_xml(n, r))
            # What the figures still lack (service.report_table), one empty row below them, for
            # whoever reads the sheet (the CSV says it in a header instead).
            note = (table.meta.get("missing") or {}).get("note")
            if note:
                n += 2
                totals.append(
                    f'<row r="{n}"><c r="A{n}" t="inlineStr"><is><t>{_xml_text(note)}</t></is></c></row>'
                )
            sheet.write(("".join(totals) + _SHEET_TAIL).encode())
        zf.writestr("xl/styles.xml", _styles_xml(styles))
        zf.writestr("xl/workbook.xml", _workbook_xml(table.name))
        zf.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        zf.writestr("_rels/.rels", _ROOT_RELS)
        zf.writestr("[Content_Types].xml", _CONTENT_TYPES)
    yield pipe.drain()
