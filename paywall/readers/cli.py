"""``paywall readers erase``: erasure from the command line (the same function as DELETE /v1/readers)."""

from __future__ import annotations

import click

from paywall.clicontext import Context, pass_ctx


@click.group("readers")
def readers() -> None:
    """The site's readers."""


@readers.command("erase")
@click.argument("reader")
@pass_ctx
def erase(obj: Context, reader: str) -> None:
    """Erase READER's personal data everywhere; payments stay, anonymised."""
    # Imported here: ``paywall --help`` loads this module and should not pay for them.
    from marshmallow import ValidationError

    from paywall import erasure
    from paywall.schemas import validate_identifier

    try:
        validate_identifier(reader)
    except ValidationError as exc:
        message = exc.messages[0] if isinstance(exc.messages, list) else "invalid"
        raise click.BadParameter(str(message), param_hint="READER") from None
    with obj.db.transaction() as session:
        outcome = erasure.erase_reader(session, reader)
    if outcome == "not_found":
        raise click.ClickException(f"no reader {reader!r}")
    click.echo(f"{reader}: {outcome}")
