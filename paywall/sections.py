"""Every settings section, built and checked at start: the one list of ``[section]`` -> its builder.

``load_settings`` builds the core sections (server, database, stripe, mail, logging). Each feature
keeps its own typed dataclass beside its code; this module names them all, so ``create_app`` and the
``paywall`` command build every one before anything runs: a misspelt key, a wrong type, a bad value
or an unknown section stops start-up with the key named, instead of a 500 at the first request
that reads it. The built values are cached on the settings, so features read the same objects.
"""

from __future__ import annotations

import logging
import zoneinfo
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from paywall.access.settings import access_settings
from paywall.checkout.plans import PLACEHOLDER_PRICE, load_plans
from paywall.checkout.settings import checkout_settings, donation_settings, ratelimit_settings
from paywall.config import ConfigError, Settings
from paywall.mail.settings import mailer_settings
from paywall.reports.periods import report_settings
from paywall.signin.settings import gate_settings, signin_settings
from paywall.widget.settings import appeal_settings

# The sections load_settings() builds itself (paywall/config.py).
CORE_SECTIONS = ("server", "database", "stripe", "mail", "logging")

# Feature sections: the table name and the function that builds and checks it.
FEATURE_SECTIONS: dict[str, Callable[[Settings], Any]] = {
    "access": access_settings,
    "reports": report_settings,
    "plans": load_plans,
    "donations": donation_settings,
    "checkout": checkout_settings,
    "appeal": appeal_settings,
    "ratelimit": ratelimit_settings,
    "mailer": mailer_settings,
    "signin": signin_settings,
    "gate": gate_settings,
}

LOG_LEVELS = ("DEBUG", "INFO", "WARN", "WARNING", "ERROR", "CRITICAL")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
SIGNING_KEY_COMMAND = "paywall keys signing-key"


def _check_url(where: str, value: str, *, origin_only: bool = False) -> None:
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise ConfigError(f"{where}: {value!r} has a bad port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: {value!r} is not an http(s) URL")
    if origin_only and (parts.path not in ("", "/") or parts.query or parts.fragment):
        raise ConfigError(f"{where}: {value!r} is not an origin (scheme://host[:port], no path)")


def _check_core(settings: Settings) -> None:
    server = settings.server
    host, sep, port = server.bind.rpartition(":")
    if not server.bind.startswith("unix:") and not (sep and host and port.isdigit()):
        raise ConfigError(f"server.bind: {server.bind!r} is not HOST:PORT (or unix:PATH)")
    _check_url("server.public_url", server.public_url)
    for origin in server.allowed_origins:
        _check_url("server.allowed_origins", origin, origin_only=True)
    if server.max_body_bytes < 1:
        raise ConfigError("server.max_body_bytes must be at least 1")
    if settings.database.pool_size < 1:
        raise ConfigError("database.pool_size must be at least 1")
    if settings.database.lock_timeout_seconds < 0:
        raise ConfigError("database.lock_timeout_seconds must be 0 or more")
    if settings.stripe.webhook_tolerance_seconds < 1:
        raise ConfigError("stripe.webhook_tolerance_seconds must be at least 1")
    if not 0 < settings.mail.smtp_port < 65536:
        raise ConfigError("mail.smtp_port must be between 1 and 65535")
    if settings.logging.level.upper() not in LOG_LEVELS:
        raise ConfigError(f"logging.level must be one of {', '.join(LOG_LEVELS)}")
    if settings.logging.format not in ("json", "text"):
        raise ConfigError("logging.format must be json or text")


def _check_mailer(settings: Settings) -> None:
    mailer = mailer_settings(settings)
    for name in (
        "claim_batch",
        "max_attempts",
        "outbox_max_attempts",
        "unsubscribe_ttl_days",
        "link_ttl_days",
    ):
        if getattr(mailer, name) < 1:
            raise ConfigError(f"mailer.{name} must be at least 1")
    for name in ("rate_per_minute", "backoff_seconds", "outbox_retry_seconds"):
        if getattr(mailer, name) < 0:
            raise ConfigError(f"mailer.{name} must be 0 or more")
    for name in ("timeout_seconds", "worker_poll_seconds"):
        if getattr(mailer, name) <= 0:
            raise ConfigError(f"mailer.{name} must be more than 0")
    try:
        zoneinfo.ZoneInfo(mailer.receipts_timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"mailer.receipts_timezone: unknown time zone {mailer.receipts_timezone!r}"
        ) from None


def check_settings(settings: Settings) -> None:
    """Build and check every section; raise ConfigError naming the first key at fault."""
    known = (*CORE_SECTIONS, *FEATURE_SECTIONS)
    unknown = sorted(set(settings.raw) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown section(s) {', '.join(f'[{name}]' for name in unknown)} (known: {', '.join(known)})"
        )
    _check_core(settings)
    for build in FEATURE_SECTIONS.values():
        build(settings)
    _check_mailer(settings)


def check_serving(settings: Settings) -> None:
    """What stops the server from starting beyond bad settings: a public https service must sign
    tokens and unsubscribe links with a key from the environment, not one generated on this disk."""
    if urlsplit(settings.server.public_url).scheme == "https" and not settings.secrets.signing_key:
        raise ConfigError(
            f"PAYWALL_SIGNING_KEY is not set while server.public_url is {settings.server.public_url}: "
            "a key generated on this disk breaks every token and unsubscribe link on another host or "
            f"after a redeploy; print a new one with `{SIGNING_KEY_COMMAND}`"
        )


def startup_warnings(settings: Settings) -> list[str]:
    """What will not work as configured, said once at start (the server still runs)."""
    out = []
    public = urlsplit(settings.server.public_url)
    host, _, port = settings.server.bind.rpartition(":")
    public_port = public.port or (443 if public.scheme == "https" else 80)
    if public.hostname in LOOPBACK_HOSTS and (host not in LOOPBACK_HOSTS or port != str(public_port)):
        out.append(
            f"server.public_url (PAYWALL_PUBLIC_URL) is {settings.server.public_url} while the server "
            f"listens on {settings.server.bind}: every link (Checkout return, unsubscribe, widget) "
            "points there; set PAYWALL_PUBLIC_URL to this service's public address"
        )
    if not settings.server.allowed_origins:
        out.append(
            "server.allowed_origins (PAYWALL_ALLOWED_ORIGINS) is empty: the appeal widget shows "
            "nothing on any site; set it to your site's origin, e.g. https://news.example.org"
        )
    if not settings.secrets.signing_key:
        out.append(
            "PAYWALL_SIGNING_KEY is not set: tokens and unsubscribe links are signed with a key "
            "generated on this disk (var/signing-key.pem); a second host or a redeploy breaks every one "
            f"of them; print a key with `{SIGNING_KEY_COMMAND}` and set it in the environment"
        )
    for plan in load_plans(settings).values():
        if plan.price == PLACEHOLDER_PRICE:
            out.append(
                f"plans.{plan.name}.price is the example placeholder {PLACEHOLDER_PRICE}: the plan is "
                "not offered (GET /v1/plans, /subscribe, the widget) until you set a real Stripe price id"
            )
    return out


def log_startup_warnings(settings: Settings, log: logging.Logger) -> None:
    """Log each start-up warning once."""
    for item in startup_warnings(settings):
        log.warning("will not work: %s", item)
