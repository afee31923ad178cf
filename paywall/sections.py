"""Every settings section, built and checked at start: the one list of ``[section]`` -> its dataclass.

Each section is a dataclass beside its code (the core ones in paywall/config.py): its fields are the
keys, types and defaults, and its ``__post_init__`` checks the values (``[plans]``, whose keys are
plan names, checks each table in ``PlansSettings.from_table``). ``create_app`` and the
``paywall`` command call ``check_settings`` before anything runs, so a misspelt key, a wrong type, a
bad value or an unknown section stops start-up with the key named, instead of a 500 at the first
request that reads it. The built values are cached on the settings, so features read the same objects.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from paywall.access.settings import AccessSettings
from paywall.checkout.plans import PLACEHOLDER_PRICE, PlansSettings, load_plans
from paywall.checkout.settings import CheckoutSettings, DonationSettings, RateLimitSettings
from paywall.config import CORE_SECTIONS, ConfigError, Settings
from paywall.mail.settings import MailerSettings
from paywall.reports.settings import ReportSettings
from paywall.signin.settings import GateSettings, SigninSettings
from paywall.widget.settings import AppealSettings

# Every table of the configuration and the class that builds and checks it.
SECTIONS: dict[str, type[Any]] = {
    **CORE_SECTIONS,
    "access": AccessSettings,
    "reports": ReportSettings,
    "plans": PlansSettings,
    "donations": DonationSettings,
    "checkout": CheckoutSettings,
    "appeal": AppealSettings,
    "ratelimit": RateLimitSettings,
    "mailer": MailerSettings,
    "signin": SigninSettings,
    "gate": GateSettings,
}

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
SIGNING_KEY_COMMAND = "paywall keys signing-key"


def check_settings(settings: Settings) -> None:
    """Build and check every section; raise ConfigError naming the first key at fault."""
    unknown = sorted(set(settings.raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(
            f"unknown section(s) {', '.join(f'[{name}]' for name in unknown)} (known: {', '.join(SECTIONS)})"
        )
    for name, cls in SECTIONS.items():
        settings.section(name, cls)


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
