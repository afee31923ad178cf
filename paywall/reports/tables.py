"""A report as a table: typed columns, rows as tuples, and metadata for the JSON envelope."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# Column kinds: how exporters write a cell. RATIO is a plain number (a share, 0 to 1), never money;
# NUMBER is any other plain number (a lift of -0.2 or 1.5).
TEXT, MONEY, INT, BOOL, DATETIME, RATIO = "text", "money", "int", "bool", "datetime", "ratio"
NUMBER = "number"


@dataclass(frozen=True)
class Column:
    key: str
    kind: str = TEXT
    # For money: the column holding its currency.
    currency: str = "currency"


@dataclass
class Table:
    """``rows`` may be a lazy iterator (the payments export streams); ``totals`` follow the rows."""

    name: str
    columns: list[Column]
    rows: Iterable[tuple[Any, ...]]
    meta: dict[str, Any] = field(default_factory=dict)
    totals: list[tuple[Any, ...]] = field(default_factory=list)
    # The same rows in the database driver's form, for the CSV writer's fast path (datetimes may
    # be SQLite's naive-UTC text, booleans 0/1); ``None`` when ``rows`` serve every writer.
    csv_rows: Iterable[tuple[Any, ...]] | None = None
    # The first column's heading in CSV and XLSX when it differs from its JSON key: a grouped
    # report heads it with its grouping (``plan``, ``month``), not ``period``.
    first_heading: str | None = None

    @property
    def keys(self) -> list[str]:
        return [c.key for c in self.columns]

    @property
    def headers(self) -> list[str]:
        """The header row of CSV and XLSX: the keys, the first one renamed by ``first_heading``."""
        keys = self.keys
        if self.first_heading and keys:
            keys[0] = self.first_heading
        return keys
