"""``paywall comp``: give and end complimentary access from the command line."""

from __future__ import annotations

import datetime as dt

import click
from marshmallow import ValidationError

from paywall import clock
from paywall.access import comps
from paywall.cli import Context, pass_ctx
from paywall.schemas import validate_identifier


def _reader(value: str) -> str:
    try:
        validate_identifier(value)
    except ValidationError as exc:
        raise click.BadParameter(
            str(exc.messages[0]) if isinstance(exc.messages, list) else "invalid"
        ) from None
    return value


@click.group("comp")
def cli() -> None:
    """Complimentary access (comps) for readers."""


@cli.command("grant")
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
    reader = _reader(reader)
    end = comps.end_of_day(until.date())
    if end <= clock.now():
        raise click.BadParameter("must be today or later", param_hint="--until")
    with obj.db.transaction() as session:
        comp, outcome = comps.grant_comp(session, reader, until=end, note=note, granted_by="cli")
        shown = comp.until
    click.echo(f"{reader}: {outcome}, comp until {shown:%Y-%m-%d %H:%M} UTC (exclusive)")


@cli.command("revoke")
@click.argument("reader")
@pass_ctx
def revoke(obj: Context, reader: str) -> None:
    """End READER's comp now."""
    reader = _reader(reader)
    with obj.db.transaction() as session:
        outcome = comps.revoke_comp(session, reader)
    if outcome == "not_found":
        raise click.ClickException(f"no comp for reader {reader!r}")
    click.echo(f"{reader}: {outcome}")
