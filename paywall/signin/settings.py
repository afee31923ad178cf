"""The ``[signin]`` and ``[gate]`` tables (config/default.toml), validated once at start."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from limits import parse_many

from paywall.config import ConfigError, Settings


@dataclass(frozen=True)
class SigninSettings:
    """Every key of ``[signin]``, with the same defaults as config/default.toml."""

    # Minutes an emailed code and its link stay valid.
    code_minutes: int = 15
    # Wrong codes for one address before it is locked until a new code is sent.
    max_failed_codes: int = 5
    # Days a reader token (a signed-in device) stays valid.
    session_days: int = 30
    # A site with a backend: where /thanks and the mailed link send a one-time token to exchange
    # (``?paywall_signin=TOKEN``). Empty: back to the article, signed in through the widget.
    return_url: str = ""
    # Folder the mail goes to when no SMTP server is configured (development only; refused when
    # server.public_url is https).
    mail_dir: str = "var/mail"
    # Sign-in requests per client address and per email address (counted after the key check).
    per_address: str = "10/minute;60/hour"
    per_email: str = "3/minute;10/hour"
    # Code exchanges per client address (wrong codes are also capped per address by the lockout).
    exchange_per_address: str = "20/minute;120/hour"

    def __post_init__(self) -> None:
        if not 1 <= self.code_minutes <= 24 * 60:
            raise ConfigError("signin.code_minutes must be between 1 and 1440")
        if self.max_failed_codes < 1:
            raise ConfigError("signin.max_failed_codes must be at least 1")
        if self.session_days < 1:
            raise ConfigError("signin.session_days must be at least 1")
        for name in ("per_address", "per_email", "exchange_per_address"):
            try:
                parse_many(getattr(self, name))
            except ValueError as exc:
                raise ConfigError(f"signin.{name}: {exc}") from None

    @property
    def code_ttl(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.code_minutes)

    @property
    def session_ttl(self) -> dt.timedelta:
        return dt.timedelta(days=self.session_days)


@dataclass(frozen=True)
class GateSettings:
    """``[gate]``: what a reader who may not read sees in place of the rest of the article."""

    # Paragraphs of the article body left visible above the gate (client mode).
    preview_paragraphs: int = 2
    # Headlines; {limit} is the monthly allowance, {more} the extra articles registering gives.
    metered_headline: str = "You have read your {limit} free articles this month"
    supporters_headline: str = "This article is for supporters"
    registered_headline: str = "Sign up free to read this article"
    register_headline: str = "Sign up free to read {more} more articles this month"
    text: str = "Independent journalism costs money to make. Subscribe or donate to keep reading."
    subscribe_label: str = "Subscribe"
    donate_label: str = "Donate"
    signin_label: str = "Already a supporter? Sign in"
    register_label: str = "Sign up free"
    # The footer appeal tells metered readers "2 of 3 free articles left this month".
    show_meter: bool = True
    meter_text: str = "{left} of {limit} free articles left this month"

    def __post_init__(self) -> None:
        if not 0 <= self.preview_paragraphs <= 50:
            raise ConfigError("gate.preview_paragraphs must be between 0 and 50")


def signin_settings(settings: Settings) -> SigninSettings:
    """The validated ``[signin]`` table (cached on the settings)."""
    return settings.section("signin", SigninSettings)


def gate_settings(settings: Settings) -> GateSettings:
    """The validated ``[gate]`` table (cached on the settings)."""
    return settings.section("gate", GateSettings)
