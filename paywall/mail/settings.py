"""The mailer's own settings (the ``[mailer]`` table) and the check that mail is configured."""

from __future__ import annotations

import os
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass

from paywall.access.settings import access_settings
from paywall.config import ConfigError, Settings


@dataclass(frozen=True)
class MailerSettings:
    """``[mailer]``: appeals, the outbox worker and receipts (the SMTP connection is ``[mail]``)."""

    # Messages per minute for every sender (0: no limit); a campaign may set its own.
    rate_per_minute: int = 0
    # Appeal claims committed together before sending them (one durable commit per batch).
    claim_batch: int = 25
    # Attempts per message on transient SMTP errors (4xx, dropped connection), with backoff.
    max_attempts: int = 4
    # First backoff in seconds; doubled after each failed attempt.
    backoff_seconds: float = 1.0
    # Socket timeout for the SMTP connection.
    timeout_seconds: float = 30.0
    # An extra folder of campaigns (PAYWALL_APPEALS_DIR wins when set).
    appeals_dir: str = ""
    # Lifetime of the unsubscribe link in appeals (a reader may act on an old message).
    unsubscribe_ttl_days: int = 400
    # Lifetime of personal Subscribe/Donate links in mail.
    link_ttl_days: int = 30
    # Seconds the worker waits between polls of an empty outbox.
    worker_poll_seconds: float = 5.0
    # Attempts of an outbox message across drains before it is marked failed.
    outbox_max_attempts: int = 5
    # Seconds before a message the server did not take is tried again; doubled per attempt.
    outbox_retry_seconds: float = 60.0
    # Time zone of the year in `paywall receipts send --year` (e.g. "Pacific/Honolulu").
    receipts_timezone: str = "UTC"
    # The organisation's name in supporter mail and receipts.
    organisation: str = "us"

    def __post_init__(self) -> None:
        for name in (
            "claim_batch",
            "max_attempts",
            "outbox_max_attempts",
            "unsubscribe_ttl_days",
            "link_ttl_days",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"mailer.{name} must be at least 1")
        for name in ("rate_per_minute", "backoff_seconds", "outbox_retry_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"mailer.{name} must be 0 or more")
        for name in ("timeout_seconds", "worker_poll_seconds"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"mailer.{name} must be more than 0")
        try:
            zoneinfo.ZoneInfo(self.receipts_timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"mailer.receipts_timezone: unknown time zone {self.receipts_timezone!r}"
            ) from None


class MailNotConfigured(Exception):
    """Mail cannot be sent; the message names the variable to set."""


def mailer_settings(settings: Settings) -> MailerSettings:
    """The checked ``[mailer]`` table (cached on the settings)."""
    return settings.section("mailer", MailerSettings)


def appeal_pause_days(settings: Settings) -> int:
    """Days a donor is left alone after giving: the one ``[access] appeal_pause_days``, which the
    page appeal uses too, so the footer and the mail agree."""
    return access_settings(settings).appeal_pause_days


def appeals_dirs(settings: Settings, environ: Mapping[str, str] | None = None) -> list[str]:
    """Extra campaign folders: PAYWALL_APPEALS_DIR (os.pathsep-separated), else [mailer] appeals_dir."""
    env = os.environ if environ is None else environ
    value = env.get("PAYWALL_APPEALS_DIR") or mailer_settings(settings).appeals_dir
    return [p for p in value.split(os.pathsep) if p.strip()]


def require_mail(settings: Settings) -> None:
    """Raise MailNotConfigured naming the first missing variable."""
    if not settings.mail.smtp_host:
        raise MailNotConfigured("mail is not configured: set PAYWALL_SMTP_HOST (the SMTP relay)")
    if not settings.mail.mail_from:
        raise MailNotConfigured("mail is not configured: set PAYWALL_MAIL_FROM (the From address)")
    if settings.mail.smtp_username and not settings.secrets.smtp_password:
        raise MailNotConfigured(
            "mail is not configured: PAYWALL_SMTP_USERNAME is set, so set PAYWALL_SMTP_PASSWORD too"
        )
