"""``paywall report revenue|subscriptions|payments|donors|campaigns|payouts|experiments``: the same
reports as the HTTP routes.

The reports are imported when a command runs, not when ``paywall --help`` loads this module.
"""

from __future__ import annotations

import sys
from typing import Any, BinaryIO

import click

from paywall.clicontext import Context, pass_ctx


@click.group("report")
def cli() -> None:
    """Finance reports as CSV, JSON or XLSX (stdout unless -o FILE)."""


def _run(obj: Context, name: str, params: dict[str, Any], output: str | None) -> None:
    from marshmallow import ValidationError

    from paywall.reports.exporters import export_chunks, write_all
    from paywall.reports.schemas import QUERY_SCHEMAS
    from paywall.reports.service import report_table, reporting_zone

    raw = {k: v for k, v in params.items() if v is not None}
    try:
        args = QUERY_SCHEMAS[name]().load(raw)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        field, problems = next(iter(messages.items()))
        first = problems[0] if isinstance(problems, list) else problems
        raise click.UsageError(f"--{str(field).replace('_', '-')}: {first}") from None
    settings = obj.settings
    tz = reporting_zone(settings)
    if name == "experiments":
        from paywall.reports.service import unknown_experiment

        problem = unknown_experiment(settings, args.get("experiment"))
        if problem:
            raise click.UsageError(f"--experiment: {problem}")
        # The counts as the last fold left them, like the page and the route (the JSON envelope's
        # counted_up_to says when): `paywall experiments rollup` first to count up to now.
    with obj.db.transaction(readonly=True) as session:
        table = report_table(session, name, args, settings)
        if output and output != "-":
            with open(output, "wb") as handle:
                n = write_all(export_chunks(table, args["format"], tz), handle)
            click.echo(f"{name}: wrote {n} bytes to {output}", err=True)
        else:
            out: BinaryIO = sys.stdout.buffer
            write_all(export_chunks(table, args["format"], tz), out)
            out.flush()
    # What the figures still lack (fees, payouts), on stderr: a CSV has no place for a note.
    note = (table.meta.get("missing") or {}).get("note")
    if note:
        click.echo(note, err=True)


FORMAT = click.option(
    "--format", "fmt", type=click.Choice(["csv", "json", "xlsx"]), default="csv", show_default=True
)
OUTPUT = click.option("-o", "--output", default=None, help="File to write (default: stdout).")
LIVEMODE = click.option(
    "--livemode",
    type=click.Choice(["auto", "live", "test", "all"]),
    default=None,
    help="Stripe mode to report (default: reports.livemode, auto = the configured key's mode).",
)
CURRENCY = click.option("--currency", default=None, help="Only rows in this currency (ISO code).")
KIND = click.option(
    "--kind", type=click.Choice(["donation", "subscription"]), default=None, help="Only this kind."
)
START = click.option("--start", required=True, help="First day, YYYY-MM-DD (inclusive).")
END = click.option("--end", required=True, help="Day after the last, YYYY-MM-DD (exclusive).")


@cli.command("revenue")
@START
@END
@click.option(
    "--group-by",
    type=click.Choice(["month", "week", "day", "kind", "plan", "campaign"]),
    default="month",
    show_default=True,
)
@FORMAT
@OUTPUT
@LIVEMODE
@CURRENCY
@KIND
@pass_ctx
def revenue(
    obj: Context,
    start: str,
    end: str,
    group_by: str,
    fmt: str,
    output: str | None,
    livemode: str | None,
    currency: str | None,
    kind: str | None,
) -> None:
    """Gross, refunds, disputes, fees and net per period (or group) and currency."""
    _run(
        obj,
        "revenue",
        {
            "start": start,
            "end": end,
            "group_by": group_by,
            "format": fmt,
            "livemode": livemode,
            "currency": currency,
            "kind": kind,
        },
        output,
    )


@cli.command("subscriptions")
@START
@END
@click.option("--group-by", type=click.Choice(["month", "week", "day"]), default="month", show_default=True)
@FORMAT
@OUTPUT
@LIVEMODE
@CURRENCY
@KIND
@pass_ctx
def subscriptions(
    obj: Context,
    start: str,
    end: str,
    group_by: str,
    fmt: str,
    output: str | None,
    livemode: str | None,
    currency: str | None,
    kind: str | None,
) -> None:
    """Active, new, churned, trialing, paused and MRR per period, plan and currency."""
    _run(
        obj,
        "subscriptions",
        {
            "start": start,
            "end": end,
            "group_by": group_by,
            "format": fmt,
            "livemode": livemode,
            "currency": currency,
            "kind": kind,
        },
        output,
    )


@cli.command("payments")
@START
@END
@FORMAT
@OUTPUT
@LIVEMODE
@CURRENCY
@KIND
@pass_ctx
def payments(
    obj: Context,
    start: str,
    end: str,
    fmt: str,
    output: str | None,
    livemode: str | None,
    currency: str | None,
    kind: str | None,
) -> None:
    """One line per payment, for reconciling with Stripe (streamed)."""
    _run(
        obj,
        "payments",
        {"start": start, "end": end, "format": fmt, "livemode": livemode, "currency": currency, "kind": kind},
        output,
    )


@cli.command("campaigns")
@START
@END
@FORMAT
@OUTPUT
@LIVEMODE
@CURRENCY
@KIND
@pass_ctx
def campaigns(
    obj: Context,
    start: str,
    end: str,
    fmt: str,
    output: str | None,
    livemode: str | None,
    currency: str | None,
    kind: str | None,
) -> None:
    """Per campaign and currency: donations and subscriptions started, count, total, average, recurring share."""
    _run(
        obj,
        "campaigns",
        {"start": start, "end": end, "format": fmt, "livemode": livemode, "currency": currency, "kind": kind},
        output,
    )


@cli.command("donors")
@click.option("--year", type=int, default=None, help="Calendar year in the reporting time zone.")
@click.option("--start", default=None, help="Instead of --year: first day, YYYY-MM-DD (inclusive).")
@click.option("--end", default=None, help="Instead of --year: day after the last (exclusive).")
@FORMAT
@OUTPUT
@LIVEMODE
@CURRENCY
@KIND
@pass_ctx
def donors(
    obj: Context,
    year: int | None,
    start: str | None,
    end: str | None,
    fmt: str,
    output: str | None,
    livemode: str | None,
    currency: str | None,
    kind: str | None,
) -> None:
    """Each donor's gifts in a year (or period), net of refunds, per currency (for tax receipts)."""
    params = {
        "year": year,
        "start": start,
        "end": end,
        "format": fmt,
        "livemode": livemode,
        "currency": currency,
        "kind": kind,
    }
    _run(obj, "donors", params, output)


@cli.command("payouts")
@START
@END
@FORMAT
@OUTPUT
@LIVEMODE
@CURRENCY
@pass_ctx
def payouts(
    obj: Context,
    start: str,
    end: str,
    fmt: str,
    output: str | None,
    livemode: str | None,
    currency: str | None,
) -> None:
    """Each payout arriving in the period against its balance transactions, with the difference."""
    params = {"start": start, "end": end, "format": fmt, "livemode": livemode, "currency": currency}
    _run(obj, "payouts", params, output)


@cli.command("experiments")
@click.option("--experiment", default=None, help="Only this experiment (default: every one started).")
@FORMAT
@OUTPUT
@LIVEMODE
@CURRENCY
@pass_ctx
def experiments(
    obj: Context,
    experiment: str | None,
    fmt: str,
    output: str | None,
    livemode: str | None,
    currency: str | None,
) -> None:
    """Appeal experiments per arm and currency: views, impressions, clicks, payments, revenue per 1,000
    views and impressions with 95 % intervals, lift over holdback, P(best), and whether to trust it."""
    params = {
        "experiment": experiment,
        "format": fmt,
        "livemode": livemode,
        "currency": currency,
    }
    _run(obj, "experiments", params, output)
