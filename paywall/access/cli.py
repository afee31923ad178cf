"""``paywall comp`` (complimentary access) and ``paywall meter purge`` from the command line.

Features are imported inside the commands: ``paywall --help`` loads this module and should not pay
for SQLAlchemy and marshmallow (tests/test_cli_startup.py).
"""

from __future__ import annotations

import datetime as dt

import click

from paywall import clock
from paywall.clicontext import Context, pass_ctx


def _reader(value: str) -> str:
    from marshmallow import ValidationError

    from paywall.schemas import validate_identifier

    try:
        validate_identifier(value)
    except ValidationError as exc:
        raise click.BadParameter(
            str(exc.messages[0]) if isinstance(exc.messages, list) else "invalid"
        ) from None
    return value


@click.group("comp")
def comp_cli() -> None:
    """Complimentary access (comps) for readers."""


@comp_cli.command("grant")
@click.argument("reader")
@click.option(
    "--until",
    "until",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Last day of access, YYYY-MM-DD (inclusive, UTC).",
)
@click.option("--note", default=None, help="Why (kept with the comp; shown to staff only).")
@pass_ctx
def grant(obj: Context, reader: str, until: dt.datetime, note: str | None) -> None:
    """Give READER access through the day --until."""
    from paywall.access import comps

    reader = _reader(reader)
    try:
        end = comps.end_of_day(until.date())
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--until") from None
    if end <= clock.now():
        raise click.BadParameter("must be today or later", param_hint="--until")
    with obj.db.transaction() as session:
        comp, outcome = comps.grant_comp(session, reader, until=end, note=note, granted_by="cli")
        shown = comp.until
    click.echo(f"{reader}: {outcome}, comp until {shown:%Y-%m-%d %H:%M} UTC (exclusive)")


@comp_cli.command("revoke")
@click.argument("reader")
@pass_ctx
def revoke(obj: Context, reader: str) -> None:
    """End READER's comp now."""
    from paywall.access import comps

    reader = _reader(reader)
    with obj.db.transaction() as session:
        outcome = comps.revoke_comp(session, reader)
    if outcome == "not_found":
        raise click.ClickException(f"no comp for reader {reader!r}")
    click.echo(f"{reader}: {outcome}")


@click.group("meter")
def meter_cli() -> None:
    """The free-article meter."""


@meter_cli.command("purge")
@click.option(
    "--keep-months",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Periods to keep, counting the current one (the current month always decides access).",
)
@pass_ctx
def purge(obj: Context, keep_months: int) -> None:
    """Delete meter rows of older months (run monthly, e.g. from cron)."""
    from paywall.access import meter
    from paywall.access.rules import meter_period
    from paywall.access.settings import access_settings

    cfg = access_settings(obj.settings)
    period, _ = meter_period(clock.now(), cfg)
    year, month = (int(part) for part in period.split("-"))
    index = year * 12 + (month - 1) - (keep_months - 1)
    oldest = f"{index // 12:04d}-{index % 12 + 1:02d}"
    with obj.db.transaction() as session:
        deleted = meter.purge_before(session, oldest)
    click.echo(f"meter: deleted {deleted} rows of periods before {oldest} (kept {oldest} to {period})")
