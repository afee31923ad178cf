"""`paywall mail` (outbox and suppression list), `paywall receipts`, and `paywall worker` (which also
folds appeal events into daily counts every ROLLUP_EVERY_SECONDS).

What needs the database is imported inside the commands, so ``paywall --help`` stays light.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING

import click

from paywall.clicontext import Context, pass_ctx
from paywall.config import ConfigError
from paywall.mail.settings import MailNotConfigured, mailer_settings, require_mail
from paywall.mail.smtp import MailConfigError, SmtpTransport
from paywall.mail.tally import echo_tally

if TYPE_CHECKING:
    from paywall.mail.delivery import Transport

log = logging.getLogger("paywall.worker")

# Seconds between the worker's cheap checks for due sign-in mail while it is idle: a reader waits
# for the code, so it goes out within about a second, not at the next full poll.
URGENT_POLL_SECONDS = 1.0
# Seconds between the worker's purges of expired sign-in codes (they are useless a day after expiry).
PURGE_EVERY_SECONDS = 3600.0
# Seconds between the worker's folds of raw appeal events into daily counts (and their pruning).
ROLLUP_EVERY_SECONDS = 300.0


def _transport(obj: Context) -> SmtpTransport:
    try:
        require_mail(obj.settings)
    except MailNotConfigured as exc:
        raise click.ClickException(str(exc)) from None
    return SmtpTransport.from_settings(obj.settings)


def _outbox_transport(obj: Context) -> Transport:
    """SMTP when configured; else, on a laptop (http), .eml files under [signin] mail_dir, said once.

    An https service without SMTP is refused: its mail must really go out."""
    from paywall.mail.files import file_transport, mail_dir

    try:
        require_mail(obj.settings)
    except MailNotConfigured as exc:
        if obj.settings.mail.smtp_host:
            raise click.ClickException(str(exc)) from None  # SMTP meant, but incomplete
        try:
            transport = file_transport(obj.settings)
        except ConfigError as refused:
            raise click.ClickException(f"{exc}; {refused}") from None
        log.warning("%s: writing outgoing mail as .eml files under %s instead", exc, mail_dir(obj.settings))
        return transport
    return SmtpTransport.from_settings(obj.settings)


@click.group("mail")
def mail() -> None:
    """Supporter mail queued by the Stripe sync, and the suppression list."""


@mail.command("drain")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Handle at most N messages.")
@pass_ctx
def drain(obj: Context, limit: int | None) -> None:
    """Send every due message in the outbox once, then exit; prints a tally."""
    from paywall.mail import delivery

    transport = _outbox_transport(obj)
    try:
        tally = delivery.drain(obj.db, obj.settings, transport, limit=limit)
    except MailConfigError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        transport.close()
    echo_tally(tally, "outbox:")
    if tally.get("deferred"):
        raise click.ClickException("the SMTP server did not take a message; it stays queued, try again later")


@mail.command("status")
@pass_ctx
def status(obj: Context) -> None:
    """Outbox messages per status."""
    from paywall.mail import delivery

    with obj.db.transaction(readonly=True) as session:
        echo_tally(delivery.status_counts(session), "outbox:")


@mail.command("retry")
@click.argument("message_id", type=int)
@pass_ctx
def retry(obj: Context, message_id: int) -> None:
    """Queue a failed or stuck ('sending') outbox message again (it may then arrive twice)."""
    from paywall.mail import delivery

    with obj.db.transaction() as session:
        click.echo(f"{message_id}: {delivery.retry(session, message_id)}")


@mail.command("suppress")
@click.argument("address")
@pass_ctx
def suppress_cmd(obj: Context, address: str) -> None:
    """Never mail ADDRESS again (only a hash of it is stored)."""
    from paywall.mail.suppression import suppress

    with obj.db.transaction() as session:
        click.echo(suppress(session, address, reason="manual"))


@mail.command("unsuppress")
@click.argument("address")
@pass_ctx
def unsuppress_cmd(obj: Context, address: str) -> None:
    """Take ADDRESS off the suppression list (e.g. the reader fixed their mailbox)."""
    from paywall.mail.suppression import unsuppress

    with obj.db.transaction() as session:
        click.echo(unsuppress(session, address))


@click.group("receipts")
def receipts_group() -> None:
    """Yearly donation summaries."""


@receipts_group.command("send")
@click.option("--year", type=click.IntRange(2000, 2100), required=True)
@click.option("--dry-run", is_flag=True, help="Send nothing; count who would get one.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Send at most N summaries.")
@pass_ctx
def receipts_send(obj: Context, year: int, dry_run: bool, limit: int | None) -> None:
    """Mail each donor of YEAR one summary (a total per currency, net of refunds), once per (donor, year)."""
    from paywall.mail import receipts

    transport = None if dry_run else _transport(obj)
    try:
        tally = receipts.send_yearly_receipts(
            obj.db, obj.settings, transport, year, dry_run=dry_run, limit=limit
        )
    except MailConfigError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if transport is not None:
            transport.close()
    echo_tally(tally, f"receipts {year}{' (dry run)' if dry_run else ''}:")
    if tally.get("deferred"):
        raise click.ClickException("the SMTP server did not take a message; run again later to send the rest")


def _idle(obj: Context, stop: threading.Event, poll_seconds: float) -> None:
    """Wait ``poll_seconds``, or less when sign-in mail arrives (checked every URGENT_POLL_SECONDS)."""
    from paywall import clock
    from paywall.mail import delivery

    waited = 0.0
    while waited < poll_seconds and not stop.is_set():
        step = min(URGENT_POLL_SECONDS, poll_seconds - waited)
        if stop.wait(step):
            return
        waited += step
        try:
            with obj.db.transaction(readonly=True) as session:
                if delivery.urgent_pending(session, clock.now()):
                    return
        except Exception:  # the database is away: the full poll will say so
            log.debug("mail worker: urgent check failed", exc_info=True)


def _purge_codes(obj: Context) -> None:
    """Delete sign-in codes that expired a day ago or more (paywall/signin/codes.py)."""
    from paywall import clock
    from paywall.db import is_transient
    from paywall.signin import codes

    try:
        with obj.db.transaction() as session:
            purged = codes.purge_expired(session, clock.now())
    except Exception as exc:
        if not is_transient(exc):
            raise
        return  # the database is away: the drain below says so, and the next purge catches up
    if purged:
        log.info("mail worker: purged %d expired sign-in codes", purged)


def _rollup_appeals(obj: Context) -> None:
    """Fold appeal events into daily counts (paywall/experiments/rollup.py). A failure is logged and
    the worker goes on: the next fold catches up, as it recounts the recent days anyway."""
    from paywall import clock
    from paywall.experiments.rollup import fold

    try:
        with obj.db.transaction() as session:
            done = fold(session, obj.settings, clock.now())
    except Exception as exc:
        log.warning("worker: appeal rollup failed (%s); the next one catches up", type(exc).__name__)
        log.debug("worker: appeal rollup failed", exc_info=True)
        return
    if done.pruned:
        log.info("worker: appeal rollup pruned %d raw events", done.pruned)


def run_worker(
    obj: Context, stop: threading.Event, poll_seconds: float, transport: Transport | None = None
) -> None:
    """Drain the outbox until ``stop`` is set; between drains, wait ``poll_seconds`` (sign-in mail
    cuts the wait short)."""
    from paywall.db import is_transient
    from paywall.mail import delivery

    transport = transport or SmtpTransport.from_settings(obj.settings)
    next_purge = next_rollup = 0.0
    try:
        while not stop.is_set():
            # The worker is the one process that always runs beside the server: expired sign-in
            # codes are purged here, hourly, rather than on a request a reader is waiting for.
            if time.monotonic() >= next_purge:
                _purge_codes(obj)
                next_purge = time.monotonic() + PURGE_EVERY_SECONDS
            # Likewise the appeal events' daily counts, every few minutes.
            if time.monotonic() >= next_rollup:
                _rollup_appeals(obj)
                next_rollup = time.monotonic() + ROLLUP_EVERY_SECONDS
            try:
                tally = delivery.drain(obj.db, obj.settings, transport, should_stop=stop.is_set)
            except MailConfigError as exc:
                log.error("mail worker: %s", exc)
                stop.wait(max(poll_seconds, 60))
                continue
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("mail worker: database unavailable (%s); retrying", type(exc).__name__)
                stop.wait(poll_seconds)
                continue
            if tally:
                log.info("mail worker: %s", ", ".join(f"{k} {v}" for k, v in sorted(tally.items())))
            if tally.get("deferred"):
                transport.close()  # the server is unwell: do not hold a connection open
                stop.wait(poll_seconds)
            elif not tally:
                transport.close()  # idle: do not hold a connection open
                _idle(obj, stop, poll_seconds)
    finally:
        transport.close()


@click.command("worker")
@click.option(
    "--poll", type=float, default=None, help="Seconds between polls (default [mailer] worker_poll_seconds)."
)
@pass_ctx
def worker(obj: Context, poll: float | None) -> None:
    """Keep draining the outbox; on SIGTERM or Ctrl-C, finish the current message and exit."""
    obj.check_signing()  # donation receipts carry a signed personal donate link
    transport = _outbox_transport(obj)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("mail worker: %s received, stopping after the current message", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    poll_seconds = mailer_settings(obj.settings).worker_poll_seconds if poll is None else poll
    log.info("mail worker: started")
    run_worker(obj, stop, poll_seconds, transport)
    log.info("mail worker: stopped")
