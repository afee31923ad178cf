"""`paywall appeals`: list, preview, send (once per reader), and release stuck claims.

The campaign modules (and through them the models) are imported inside the commands, so
``paywall --help`` stays light.
"""

# The package is named campaigns (mail campaigns by segment), but the command stays `paywall
# appeals`, as do config/appeals/, PAYWALL_APPEALS_DIR and the /v1/appeals/ routes: operators'
# scripts and cron lines use those words, and renaming them would break them for no gain.

from __future__ import annotations

from email import message_from_bytes
from email import policy as email_policy
from typing import TYPE_CHECKING

import click

from paywall.clicontext import Context, pass_ctx
from paywall.mail.message import to_bytes
from paywall.mail.settings import MailNotConfigured, require_mail
from paywall.mail.smtp import MailConfigError, SmtpTransport
from paywall.mail.tally import echo_tally

if TYPE_CHECKING:
    from paywall.campaigns.definition import Campaign


@click.group("appeals")
def cli() -> None:
    """Appeal campaigns by mail (config/appeals/<name>/ and PAYWALL_APPEALS_DIR)."""


def _campaign(obj: Context, name: str) -> Campaign:
    from paywall.campaigns.definition import CampaignError, load_campaign

    try:
        return load_campaign(obj.settings, name)
    except CampaignError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command("list")
@pass_ctx
def list_campaigns(obj: Context) -> None:
    """Every campaign: segment, send window, rate, and its ledger so far."""
    from paywall.campaigns.definition import CampaignError, load_campaigns
    from paywall.campaigns.ledger import ledger_summary

    try:
        campaigns = load_campaigns(obj.settings)
    except CampaignError as exc:
        raise click.ClickException(str(exc)) from None
    if not campaigns:
        click.echo("no campaigns; add one under config/appeals/<name>/")
    with obj.db.transaction(readonly=True) as session:
        for name, c in sorted(campaigns.items()):
            window = c.window.describe() if c.window else "any time"
            rate = f"{c.rate_per_minute}/min" if c.rate_per_minute else "default rate"
            ledger = ledger_summary(session, name)
            done = ", ".join(f"{k} {v}" for k, v in sorted(ledger.items())) or "not sent yet"
            click.echo(f"{name}\tsegment={c.segment}\twindow={window}\t{rate}\t{done}")
            if c.description:
                click.echo(f"\t{c.description}")


@cli.command("preview")
@click.argument("name")
@click.option("--reader", "reader_id", required=True, help="The site's reader id.")
@pass_ctx
def preview(obj: Context, name: str, reader_id: str) -> None:
    """Render NAME for one reader to stdout (headers, text, HTML); sends nothing."""
    from paywall.campaigns.definition import CampaignError
    from paywall.campaigns.message import build_appeal
    from paywall.readers.service import find_reader

    campaign = _campaign(obj, name)
    with obj.db.transaction(readonly=True) as session:
        reader = find_reader(session, reader_id)
        if reader is None:
            raise click.ClickException(f"no reader {reader_id!r}")
        email, person = reader.email or "reader@example.invalid", reader.name
    if not campaign.sender_for(obj.settings):
        raise click.ClickException("no sender: set PAYWALL_MAIL_FROM or `sender` in campaign.toml")
    try:
        msg = build_appeal(obj.settings, campaign, external_id=reader_id, email=email, name=person)
    except CampaignError as exc:
        raise click.ClickException(str(exc)) from None
    # Parse what would go on the wire, so the preview shows exactly that, decoded for reading.
    parsed = message_from_bytes(to_bytes(msg), policy=email_policy.default)
    for key, value in parsed.items():
        click.echo(f"{key}: {value}")
    for part in parsed.walk():
        if part.get_content_maintype() == "text":
            click.echo(f"\n--- {part.get_content_type()} ---")
            click.echo(str(part.get_content()).rstrip("\n"))


@cli.command("send")
@click.argument("name")
@click.option("--dry-run", is_flag=True, help="Send nothing; list who would get it.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Send at most N messages.")
@click.option("--force", is_flag=True, help="Send outside the campaign's send window.")
@pass_ctx
def send(obj: Context, name: str, dry_run: bool, limit: int | None, force: bool) -> None:
    """Send NAME to its segment, once per reader, and print a tally of outcomes."""
    from paywall.campaigns.sending import OutsideWindow, send_campaign

    campaign = _campaign(obj, name)
    settings = obj.settings
    transport = None
    if not dry_run:
        obj.check_signing()  # each mail carries a signed one-click unsubscribe link
        try:
            require_mail(settings)
        except MailNotConfigured as exc:
            raise click.ClickException(str(exc)) from None
        if not settings.server.public_url.startswith("https://"):
            click.echo(
                "warning: PAYWALL_PUBLIC_URL is not https; mail providers ignore one-click unsubscribe",
                err=True,
            )
        transport = SmtpTransport.from_settings(settings, rate_per_minute=campaign.rate_per_minute)
    try:
        report = send_campaign(
            obj.db, settings, campaign, transport, limit=limit, dry_run=dry_run, force=force
        )
    except OutsideWindow as exc:
        raise click.ClickException(f"{exc}; use --force to send anyway") from None
    except MailConfigError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if transport is not None:
            transport.close()
    if dry_run:
        for cand in report.would_send:
            click.echo(f"would send to reader {cand.external_id}")
    echo_tally(report.tally, f"{campaign.name}{' (dry run)' if dry_run else ''}:")
    if report.tally.get("claimed"):
        click.echo(
            "note: 'claimed' rows were claimed by a run that did not record an outcome (still running, or it "
            "crashed); they are not resent. `paywall appeals release` frees them if you know they did not go out."
        )
    if report.stopped:
        raise click.ClickException(f"stopped early: {report.stopped}")


@cli.command("release")
@click.argument("name")
@click.option("--reader", "readers", multiple=True, help="Only this reader (repeatable); default: all.")
@click.option("--yes", is_flag=True, help="Confirm: these messages did not go out.")
@pass_ctx
def release(obj: Context, name: str, readers: tuple[str, ...], yes: bool) -> None:
    """Free claimed/unknown ledger rows of NAME so the next send mails them (may duplicate!)."""
    from paywall.campaigns.ledger import release_claims
    from paywall.readers.service import find_reader

    if not yes:
        raise click.ClickException(
            "releasing may send a reader the same appeal twice if the message did go out; add --yes to confirm"
        )
    with obj.db.transaction() as session:
        ids = None
        if readers:
            ids = []
            for ext in readers:
                reader = find_reader(session, ext)
                if reader is None:
                    raise click.ClickException(f"no reader {ext!r}")
                ids.append(reader.id)
        count = release_claims(session, name, reader_ids=ids)
    click.echo(f"released: {count}")
