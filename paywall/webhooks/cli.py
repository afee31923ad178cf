"""``paywall stripe sync`` and ``paywall events list|replay``.

stripe-python, SQLAlchemy and Flask are imported inside the commands: ``paywall --help`` loads
this module and should start in a fraction of a second (tests/test_cli_startup.py).
"""

from __future__ import annotations

import datetime as dt

import click

from paywall.clicontext import Context, pass_ctx
from paywall.clock import isoformat

DATE = click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ"])


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """Dates on the command line are UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


@click.group("stripe")
def stripe_group() -> None:
    """Stripe: apply recorded webhook events; reconcile the database with Stripe's API."""


@stripe_group.command("sync")
@click.option("--since", type=DATE, default=None, help="Only objects created on or after (UTC).")
@click.option("--page-size", type=click.IntRange(1, 100), default=100, show_default=True)
@pass_ctx
def stripe_sync(obj: Context, since: dt.datetime | None, page_size: int) -> None:
    """Page through customers, subscriptions, Checkout Sessions, invoices, charges, refunds,
    disputes, balance transactions and payouts, then fetch the charge of any refund without a
    payment and the balance transactions of each automatic payout whose state changed; upsert
    them and print every row created or changed (id and fields), per list what happened, and the
    lists that failed (then exit 1). An interrupted run resumes where it stopped."""
    from paywall.errors import ApiError
    from paywall.stripe_gateway import make_client
    from paywall.webhooks import reconcile

    try:
        client = make_client(obj.settings)
    except ApiError as exc:
        raise click.ClickException(exc.detail) from None
    tally = reconcile.run_sync(obj.db, client, since=_utc(since), page_size=page_size)
    changes = list(tally.change_lines())
    if changes:
        click.echo("created or changed (table id: changed columns):")
    for line in changes:
        click.echo(f"  {line}")
    for line in tally.lines():
        click.echo(line)
    click.echo(f"changed: {tally.changed}")
    if tally.stopped:
        raise click.ClickException(f"Stripe: {tally.stopped}; progress is saved, run again to resume")
    if tally.invalid:
        click.echo("not applied (a value no real Stripe object has; fix it in Stripe, then run again):")
        for line in tally.invalid:
            click.echo(f"  {line}")
    if tally.failed:
        raise click.ClickException(
            f"{len(tally.failed)} of {len(reconcile.LISTS)} lists failed: {', '.join(tally.failed)}; "
            "the others were synced; run again to retry them from where they stopped"
        )
    if tally.invalid:
        raise click.ClickException(f"{len(tally.invalid)} objects were not applied (listed above)")


@stripe_group.command("apply")
@click.option("--once", is_flag=True, help="Apply what is waiting, then exit (no polling).")
@click.option("--batch-size", type=click.IntRange(1, 1000), default=None, help="Events per transaction.")
@click.option(
    "--nice",
    type=click.IntRange(0, 19),
    default=0,
    show_default=True,
    help="Lower this process's CPU priority by N (paywall serve uses 10: readers' requests first).",
)
@pass_ctx
def stripe_apply(obj: Context, once: bool, batch_size: int | None, nice: int) -> None:
    """Apply the Stripe events the webhook recorded, in batches, until SIGTERM or Ctrl-C.

    `paywall serve` runs one of these itself; run more (on this machine or others) to scale out:
    they share the backlog, each event applied exactly once. On SIGTERM the current batch
    finishes (or rolls back) and the command exits."""
    import os
    import signal
    import threading
    from types import FrameType

    from paywall.webhooks import applier

    obj.check_signing()  # applying sends receipts and notices that carry signed links
    if nice:
        os.nice(nice)
    settings = obj.settings.stripe
    limit = batch_size or settings.apply_batch_size
    if once:
        tally = applier.drain(obj.db, obj.settings, limit=limit)
        parts = ", ".join(f"{n} {k}" for k, n in sorted(tally.items())) or "nothing waiting"
        click.echo(f"applied {sum(tally.values())}: {parts}")
        return
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    applier.log.info("stripe applier: started (batches of %d)", limit)
    applier.run(obj.db, obj.settings, stop, limit=limit, poll_seconds=settings.apply_poll_seconds)
    applier.log.info("stripe applier: stopped")


@click.group("events")
def events_group() -> None:
    """The Stripe event inbox."""


@events_group.command("list")
@click.option("--status", type=click.Choice(["received", "processed", "ignored", "failed"]), default=None)
@click.option("--type", "type_", default=None, help="Only this event type, e.g. invoice.paid.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@pass_ctx
def events_list(obj: Context, status: str | None, type_: str | None, limit: int) -> None:
    """List stored events, newest first: id, type, status, created, error."""
    from paywall.webhooks import inbox

    with obj.db.transaction(readonly=True) as session:
        rows = inbox.list_events(session, status=status, type_=type_, limit=limit)
        for row in rows:
            click.echo(
                "\t".join(
                    [row.stripe_event_id, row.type, row.status, isoformat(row.created) or "", row.error or ""]
                )
            )
        if not rows:
            click.echo("no events")


@events_group.command("replay")
@click.option("--failed", is_flag=True, help="Every event whose processing failed.")
@click.option("--id", "event_id", default=None, help="One event, by its Stripe id (evt_...).")
@click.option("--since", type=DATE, default=None, help="Every event created on or after (UTC).")
@pass_ctx
def events_replay(obj: Context, failed: bool, event_id: str | None, since: dt.datetime | None) -> None:
    """Re-run stored events through the applier, as new ones (safe to repeat: newest state wins)."""
    from paywall.webhooks import inbox

    if not (failed or event_id or since):
        raise click.UsageError("say which events: --failed, --id EVT or --since DATE")
    tally = inbox.replay(obj.db, obj.settings, failed=failed, event_id=event_id, since=_utc(since))
    if event_id and not tally:
        raise click.ClickException(f"no stored event {event_id!r}")
    total = sum(tally.values())
    parts = ", ".join(f"{n} {k}" for k, n in sorted(tally.items())) or "nothing to replay"
    click.echo(f"replayed {total}: {parts}")
