"""`paywall experiments`: the appeal experiments in the configuration, their arms and dates.

The experiment modules are imported inside the commands, so ``paywall --help`` stays light.
"""

from __future__ import annotations

import click

from paywall.clicontext import Context, pass_ctx


@click.group("experiments")
def cli() -> None:
    """Appeal experiments ([appeal.experiments.<name>]): list, preview, rollup."""


@cli.command("list")
@pass_ctx
def list_experiments(obj: Context) -> None:
    """Every experiment: dates, channels, holdback and variants with their weights."""
    import datetime as dt

    from paywall import clock
    from paywall.widget.settings import appeal_settings

    now = clock.now()
    experiments = appeal_settings(obj.settings).experiments
    if not experiments:
        click.echo("no experiments; add one as [appeal.experiments.<name>] (see config/default.toml)")
    for name, e in sorted(experiments.items()):
        state = "running" if e.running(now) else ("ended" if now >= e.ends else "not started")
        end = (e.ends - dt.timedelta(days=1)).date().isoformat()  # ends is exclusive
        click.echo(
            f"{name}\t{state}\t{e.starts.date().isoformat()}..{end}\tchannels={','.join(e.channels)}"
            f"\tholdback={e.holdback:g}"
        )
        total = sum(v.weight for v in e.variants)
        for v in e.variants:
            share = (1 - e.holdback) * v.weight / total
            changes = ", ".join(sorted(v.copy)) or "the default copy"
            click.echo(f"\t{v.name}\tweight={v.weight:g}\tshare={share:.0%}\t{changes}")


@cli.command("preview")
@click.argument("experiment")
@click.argument("variant")
@click.option(
    "--channel",
    type=click.Choice(["footer", "gate"]),
    default="footer",
    show_default=True,
    help="What to show.",
)
@click.option(
    "--url", "page", metavar="PAGE", help="A page with the widget (default: {public_url}/support/preview)."
)
@pass_ctx
def preview(obj: Context, experiment: str, variant: str, channel: str, page: str | None) -> None:
    """Print a staff preview link (valid 7 days) that shows VARIANT of EXPERIMENT, never counted."""
    from paywall.experiments.preview import InvalidPreview, preview_url

    try:
        click.echo(preview_url(obj.settings, experiment, variant, channel, page))
    except InvalidPreview as exc:
        raise click.UsageError(str(exc)) from None


@cli.command("rollup")
@pass_ctx
def rollup(obj: Context) -> None:
    """Count raw appeal events into daily counts and prune old raw events (paywall worker does it
    every 5 minutes)."""
    from paywall import clock
    from paywall.experiments.rollup import fold

    with obj.db.transaction() as session:
        done = fold(session, obj.settings, clock.now())
    days = ", ".join(day.isoformat() for day in done.days) or "none"
    click.echo(f"counted days: {days}; raw events pruned: {done.pruned}")


@cli.command("intake")
@click.option("--bind", default=None, help="HOST:PORT (default: [server] events_bind).")
@click.option(
    "--nice",
    type=click.IntRange(0, 19),
    default=None,
    help="Lower this process's scheduling priority by this much (default 10: the web workers first).",
)
@pass_ctx
def intake(obj: Context, bind: str | None, nice: int | None) -> None:
    """Serve POST /support/events (the widget's beacons) in a small process of its own (paywall
    serve starts it when [server] events_bind is set)."""
    from paywall.app import create_app
    from paywall.widget import intake as beacon_intake

    bind = bind or obj.settings.server.events_bind
    if not bind:
        raise click.ClickException("set [server] events_bind (PAYWALL_EVENTS_BIND) or pass --bind HOST:PORT")
    app = create_app(obj.settings, db=obj.db)
    beacon_intake.run(app, bind, beacon_intake.INTAKE_NICE if nice is None else nice)
