"""SQL sums and differences of stored amounts that no stored value can break.

Amounts are BIGINT minor units. The webhook readers cap new ones at 10**12, but a row stored by
an older version may hold anything a BIGINT can, and two such values overflow a 64-bit SUM
(SQLite raises "integer overflow", which reached the API as a lasting 503) or a BIGINT
difference (PostgreSQL raises "bigint out of range").
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, case, cast, func, literal, null
from sqlalchemy.sql.elements import ColumnElement

HALF = 2**32
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def wide_sum(expr: Any, dialect: str) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """SUM(expr) as two columns ``(high, low)`` that cannot overflow; ``combine`` makes one int.

    PostgreSQL sums BIGINT into NUMERIC, which is exact: ``(0, SUM(expr))``. SQLite sums the
    halves apart: x = (x / 2**32) * 2**32 + x % 2**32 (both truncate), each half under 2**32, so
    only more than four billion rows could overflow either sum."""
    if dialect != "sqlite":
        return literal(0, BigInteger), func.sum(expr)
    return func.sum(expr.op("/")(HALF)), func.sum(expr.op("%")(HALF))


def combine(high: Any, low: Any) -> int:
    """The exact Python int of a ``wide_sum`` (0 for no rows)."""
    return int(high or 0) * HALF + int(low or 0)


def bigint_or_null(expr: Any) -> ColumnElement[Any]:
    """``expr`` as BIGINT, or NULL where it does not fit (instead of an error mid-export).

    Compute ``expr`` where it cannot overflow first: PostgreSQL's SUM is NUMERIC, and SQLite
    turns an overflowing integer sum or difference into a REAL, which the range test catches."""
    return case((expr.between(INT64_MIN, INT64_MAX), cast(expr, BigInteger)), else_=null())


def wide_sum_expr(expr: Any) -> ColumnElement[Any]:
    """SUM(expr) as one SQL expression that never raises: the halves of ``wide_sum`` put back
    together in SQL, exact on PostgreSQL (NUMERIC), and on SQLite exact while it fits in 64 bits
    (SQLite's integer multiplication and addition turn to REAL on overflow; only SUM raises)."""
    return func.sum(expr.op("/")(HALF)) * HALF + func.sum(expr.op("%")(HALF))
