"""How the commands print a tally of outcomes."""

from __future__ import annotations

from collections.abc import Mapping

import click


def echo_tally(tally: Mapping[str, int], title: str = "") -> None:
    """One ``outcome: count`` line per outcome, most common first (``nothing: 0`` when empty)."""
    if title:
        click.echo(title)
    if not tally:
        click.echo("nothing: 0")
    for word, count in sorted(tally.items(), key=lambda kv: (-kv[1], kv[0])):
        click.echo(f"{word}: {count}")
