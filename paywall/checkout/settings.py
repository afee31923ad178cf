"""The typed ``[donations]``, ``[checkout]`` and ``[ratelimit]`` tables (config/default.toml)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from limits import parse_many

from paywall.config import ConfigError, Settings

CURRENCY_RE = re.compile(r"^[a-z]{3}$")
INTERVALS = ("once", "month", "year")
SHIPPED_CURRENCIES = ("eur", "usd", "gbp")


@dataclass(frozen=True)
class CurrencyLimits:
    """``[donations.limits.<code>]``: bounds and preset amounts of one currency, in minor units."""

    min: int
    max: int
    presets: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class DonationSettings:
    """``[donations]``: every accepted currency has a limits table with sane bounds and presets."""

    currencies: list[str] = field(default_factory=lambda: list(SHIPPED_CURRENCIES))
    default_currency: str = "eur"
    default_interval: str = "once"
    product_name: str = "Donation"
    limits: dict[str, CurrencyLimits] = field(
        default_factory=lambda: {
            code: CurrencyLimits(min=200, max=100000, presets=[500, 1000, 2500, 5000])
            for code in SHIPPED_CURRENCIES
        }
    )

    def __post_init__(self) -> None:
        # Codes are compared lower-case everywhere (Stripe's form); a frozen dataclass sets its own
        # normalised fields through object.__setattr__.
        currencies = [c.lower() for c in self.currencies]
        object.__setattr__(self, "currencies", currencies)
        object.__setattr__(self, "default_currency", self.default_currency.lower())
        if not currencies:
            raise ConfigError("donations.currencies: accept at least one currency")
        for code in currencies:
            if not CURRENCY_RE.match(code):
                raise ConfigError(f"donations.currencies: {code!r} is not a three-letter ISO code")
            limits = self.limits.get(code)
            if limits is None:
                raise ConfigError(f"donations.limits.{code}: missing (min, max, presets for {code})")
            if not 0 < limits.min <= limits.max:
                raise ConfigError(f"donations.limits.{code}: need 0 < min <= max")
            if any(not limits.min <= p <= limits.max for p in limits.presets):
                raise ConfigError(f"donations.limits.{code}.presets: each must lie within min and max")
        if self.default_currency not in currencies:
            raise ConfigError("donations.default_currency must be one of donations.currencies")
        if self.default_interval not in INTERVALS:
            raise ConfigError(f"donations.default_interval must be one of {', '.join(INTERVALS)}")

    def bounds(self, currency: str) -> CurrencyLimits:
        return self.limits[currency]


@dataclass(frozen=True)
class CheckoutSettings:
    site_url: str = ""
    portal_return_url: str = ""


@dataclass(frozen=True)
class RateLimitSettings:
    """``[ratelimit]``, with each limit string parsed once so a typo fails at start."""

    enabled: bool = True
    storage_uri: str = "auto"
    checkout_per_address: str = "10/minute;40/hour"
    checkout_per_reader: str = "5/minute;20/hour"
    widget_per_address: str = "120/minute"
    events_per_address: str = "600/minute"
    auth_failures_per_address: str = "10/minute;100/hour"
    proxy_hops: int = 0

    def __post_init__(self) -> None:
        for name in (
            "checkout_per_address",
            "checkout_per_reader",
            "widget_per_address",
            "events_per_address",
            "auth_failures_per_address",
        ):
            try:
                parse_many(getattr(self, name))
            except ValueError as exc:
                raise ConfigError(f"ratelimit.{name}: {exc}") from None
        if self.proxy_hops < 0:
            raise ConfigError("ratelimit.proxy_hops must be 0 or more")


def donation_settings(settings: Settings) -> DonationSettings:
    """The checked ``[donations]`` table (cached on the settings)."""
    return settings.section("donations", DonationSettings)


def checkout_settings(settings: Settings) -> CheckoutSettings:
    """``[checkout]``: where readers go back to."""
    return settings.section("checkout", CheckoutSettings)


def ratelimit_settings(settings: Settings) -> RateLimitSettings:
    """The checked ``[ratelimit]`` table (cached on the settings)."""
    return settings.section("ratelimit", RateLimitSettings)
