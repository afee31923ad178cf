"""One function per report behind both the HTTP routes and the CLI: validated arguments -> Table."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from paywall import clock
from paywall.config import Settings
from paywall.experiments.results import results_table
from paywall.reports.campaigns import campaigns_table
from paywall.reports.donors import donors_table
from paywall.reports.payments import payments_table
from paywall.reports.payouts import missing, payouts_table
from paywall.reports.periods import Period, livemode_filter
from paywall.reports.revenue import revenue_report
from paywall.reports.settings import report_settings
from paywall.reports.subscriptions import subscriptions_table
from paywall.reports.tables import INT, MONEY, Column, Table
from paywall.widget.settings import appeal_settings

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
    if args.get("year") is not None:
        year = int(args["year"])
        return Period(dt.date(year, 1, 1), dt.date(year + 1, 1, 1), tz)
    return Period(args["start"], args["end"], tz)


def revenue_table(
    session: Session, period: Period, group_by: str, livemode: bool | None, kind: str | None = None
) -> Table:
    """The revenue report as a table: one row per period (or group) and currency, then totals."""
    report = revenue_report(session, period, group_by, livemode, kind)
    order = [c.key for c in REVENUE_COLUMNS]
    return Table(
        name="revenue",
        columns=REVENUE_COLUMNS,
        rows=[tuple(r.as_dict()[k] for k in order) for r in report.rows],
        totals=[tuple(r.as_dict()[k] for k in order) for r in report.totals],
        meta={"report": "revenue", "group_by": group_by, "livemode": livemode},
    )


def report_table(session: Session, name: str, args: dict[str, Any], settings: Settings) -> Table:
    """Build report ``name`` from validated ``args`` (see schemas.QUERY_SCHEMAS).

    The parts every report shares are done here, once: the currency filter, the metadata, and
    the first column's heading in CSV and XLSX (the grouping, when there is one)."""
    if name == "experiments":
        return experiments_table(session, args, settings)
    tz = reporting_zone(settings)
    period = period_of(args, tz)
    livemode = livemode_filter(settings, args.get("livemode"))
    group_by = args.get("group_by", "month")
    kind = args.get("kind")
    if name == "revenue":
        table = revenue_table(session, period, group_by, livemode, kind)
    elif name == "subscriptions":
        table = subscriptions_table(session, period, group_by, livemode, kind)
    elif name == "payments":
        table = payments_table(session, period, livemode, kind)
    elif name == "donors":
        table = donors_table(session, period, livemode, kind or "donation")
    elif name == "campaigns":
        table = campaigns_table(session, period, livemode, kind)
    elif name == "payouts":
        # A payout pays out donations and subscriptions together: no kind filter (the schema has none).
        table = payouts_table(session, period, livemode)
    else:
        raise ValueError(f"unknown report {name!r}")
    if "group_by" in args:
        table.first_heading = args["group_by"]
    if args.get("currency"):
        only_currency(table, args["currency"])
    filters = {k: str(args[k]).lower() for k in ("currency", "kind") if args.get(k)}
    table.meta.update(start=period.start.isoformat(), end=period.end.isoformat(), timezone=tz.key, **filters)
    # What the figures still lack (fees and payouts come only from `paywall stripe sync`), counted
    # over the payments the filters keep.
    gaps = missing(session, period, livemode, args.get("currency"), kind)
    table.meta["missing"] = {**gaps.as_dict(), "note": gaps.note()}
    return table


def unknown_experiment(settings: Settings, name: str | None) -> str | None:
    """Why ``name`` cannot be reported (no such experiment is configured), or None when it can."""
    configured = appeal_settings(settings).experiments
    if name is None or name in configured:
        return None
    known = ", ".join(sorted(configured)) or "none is configured"
    return f"No experiment {name!r} in [appeal.experiments] ({known})."


def experiments_table(session: Session, args: dict[str, Any], settings: Settings) -> Table:
    """The experiments' results (paywall/experiments/results.py): no period, an optional
    ``experiment`` and ``currency``. The counts are read as the last fold left them."""
    livemode = livemode_filter(settings, args.get("livemode"))
    table = results_table(session, settings, clock.now(), livemode, args.get("experiment"))
    if args.get("currency"):
        only_currency(table, args["currency"])
        table.meta["currency"] = args["currency"].lower()
    return table


def only_currency(table: Table, currency: str) -> None:
    """Keep the rows and totals of one currency (any table with a ``currency`` column); lazy rows
    stay lazy. Totals are per currency already, so the kept ones stay right."""
    if "currency" not in table.keys:
        raise ValueError(f"report {table.name!r} has no currency column")
    i, code = table.keys.index("currency"), currency.lower()

    def keep(rows: Iterable[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
        return (r for r in rows if r[i] == code)

    table.rows = keep(table.rows)
    if table.csv_rows is not None:
        table.csv_rows = keep(table.csv_rows)
    table.totals = list(keep(table.totals))


def filename(name: str, args: dict[str, Any], fmt: str) -> str:
    """A download name saying report, grouping, filters and period, for every report:
    ``revenue-by-plan-2026-01-01_2027-01-01.csv``, ``payments-eur-donation-2026-03-01_2026-04-01.xlsx``,
    ``donors-2026.csv``."""
    parts = [name]
    if name == "experiments":
        parts += [str(args[k]).lower() for k in ("experiment", "currency") if args.get(k)]
        return "-".join(parts) + f".{fmt}"
    if args.get("group_by"):
        parts.append(f"by-{args['group_by']}")
    parts += [str(args[k]).lower() for k in ("currency", "kind") if args.get(k)]
    if args.get("year") is not None:
        parts.append(str(args["year"]))
    else:
        parts.append(f"{args['start'].isoformat()}_{args['end'].isoformat()}")
    return "-".join(parts) + f".{fmt}"
