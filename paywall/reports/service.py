"""One function per report behind both the HTTP routes and the CLI: validated arguments -> Table."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from paywall.config import Settings
from paywall.reports.donors import donors_table
from paywall.reports.payments import payments_table
from paywall.reports.payouts import missing, payouts_table
from paywall.reports.periods import Period, livemode_filter
from paywall.reports.revenue import revenue_report
from paywall.reports.settings import report_settings
from paywall.reports.subscriptions import subscriptions_table
from paywall.reports.tables import INT, MONEY, Column, Table

REVENUE_COLUMNS = [
    Column("period"),
    Column("currency"),
    Column("gross", MONEY),
    Column("refunds", MONEY),
    Column("disputes", MONEY),
    Column("fees", MONEY),
    Column("net", MONEY),
    Column("payments", INT),
]


def reporting_zone(settings: Settings) -> ZoneInfo:
    return ZoneInfo(report_settings(settings).timezone)


def period_of(args: dict[str, Any], tz: ZoneInfo) -> Period:
    """The period named by validated arguments: start/end dates, or a calendar year."""
    if "year" in args:
        year = int(args["year"])
        return Period(dt.date(year, 1, 1), dt.date(year + 1, 1, 1), tz)
    return Period(args["start"], args["end"], tz)


def revenue_table(session: Session, period: Period, group_by: str, livemode: bool | None) -> Table:
    """The revenue report as a table: one row per period (or group) and currency, then totals."""
    report = revenue_report(session, period, group_by, livemode)
    order = [c.key for c in REVENUE_COLUMNS]
    return Table(
        name="revenue",
        columns=REVENUE_COLUMNS,
        rows=[tuple(r.as_dict()[k] for k in order) for r in report.rows],
        totals=[tuple(r.as_dict()[k] for k in order) for r in report.totals],
        meta={"report": "revenue", "group_by": group_by, "livemode": livemode},
    )


def report_table(session: Session, name: str, args: dict[str, Any], settings: Settings) -> Table:
    """Build report ``name`` from validated ``args`` (see schemas.QUERY_SCHEMAS)."""
    tz = reporting_zone(settings)
    period = period_of(args, tz)
    livemode = livemode_filter(settings, args.get("livemode"))
    if name == "revenue":
        table = revenue_table(session, period, args.get("group_by", "month"), livemode)
    elif name == "subscriptions":
        table = subscriptions_table(session, period, args.get("group_by", "month"), livemode)
    elif name == "payments":
        table = payments_table(session, period, livemode)
    elif name == "donors":
        table = donors_table(session, period, livemode)
    elif name == "payouts":
        table = payouts_table(session, period, livemode)
    else:
        raise ValueError(f"unknown report {name!r}")
    table.meta.update(start=period.start.isoformat(), end=period.end.isoformat(), timezone=tz.key)
    # What the figures still lack (fees and payouts come only from `paywall stripe sync`).
    gaps = missing(session, period, livemode)
    table.meta["missing"] = {**gaps.as_dict(), "note": gaps.note()}
    return table


def filename(name: str, args: dict[str, Any], fmt: str) -> str:
    """A download name such as revenue_2026-01-01_2027-01-01.csv."""
    if "year" in args:
        return f"{name}_{args['year']}.{fmt}"
    return f"{name}_{args['start'].isoformat()}_{args['end'].isoformat()}.{fmt}"
