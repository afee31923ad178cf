"""The typed ``[donations]``, ``[checkout]`` and ``[ratelimit]`` tables (config/default.toml)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from limits import parse_many

from paywall.config import ConfigError, Settings, build_section

CURRENCY_RE = re.compile(r"^[a-z]{3}$")
INTERVALS = ("once", "month", "year")


@dataclass(frozen=True)
class CurrencyLimits:
    """Bounds and preset amounts of one donation currency, all in minor units."""

    min: int
    max: int
    presets: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class DonationSettings:
    currencies: list[str] = field(default_factory=lambda: ["eur"])
    default_currency: str = "eur"
    default_interval: str = "once"
    product_name: str = "Donation"
    limits: dict[str, Any] = field(default_factory=dict)
    # Parsed from ``limits`` by donation_settings(); not a TOML key.
    _bounds: dict[str, CurrencyLimits] = field(default_factory=dict, repr=False, compare=False)

    def bounds(self, currency: str) -> CurrencyLimits:
        return self._bounds[currency]


@dataclass(frozen=True)
class CheckoutSettings:
    site_url: str = ""
    portal_return_url: str = ""


@dataclass(frozen=True)
class RateLimitSettings:
    enabled: bool = True
    storage_uri: str = "auto"
    checkout_per_address: str = "10/minute;40/hour"
    checkout_per_reader: str = "5/minute;20/hour"
    widget_per_address: str = "120/minute"
    auth_failures_per_address: str = "10/minute;100/hour"
    proxy_hops: int = 0


def donation_settings(settings: Settings) -> DonationSettings:
    """``[donations]``, validated: every accepted currency has sane bounds and presets."""
    cached = settings._sections.get("donations")
    if isinstance(cached, DonationSettings) and cached._bounds:
        return cached
    raw = build_section("donations", settings.raw.get("donations", {}), DonationSettings)
    currencies = [c.lower() for c in raw.currencies]
    if not currencies:
        raise ConfigError("donations.currencies: accept at least one currency")
    bounds: dict[str, CurrencyLimits] = {}
    for code in currencies:
        if not CURRENCY_RE.match(code):
            raise ConfigError(f"donations.currencies: {code!r} is not a three-letter ISO code")
        table = raw.limits.get(code)
        if table is None:
            raise ConfigError(f"donations.limits.{code}: missing (min, max, presets for {code})")
        limits = build_section(f"donations.limits.{code}", table, CurrencyLimits)
        if not 0 < limits.min <= limits.max:
            raise ConfigError(f"donations.limits.{code}: need 0 < min <= max")
        if any(not limits.min <= p <= limits.max for p in limits.presets):
            raise ConfigError(f"donations.limits.{code}.presets: each must lie within min and max")
        bounds[code] = limits
    default = raw.default_currency.lower()
    if default not in bounds:
        raise ConfigError("donations.default_currency must be one of donations.currencies")
    if raw.default_interval not in INTERVALS:
        raise ConfigError(f"donations.default_interval must be one of {', '.join(INTERVALS)}")
    value = DonationSettings(
        currencies=currencies,
        default_currency=default,
        default_interval=raw.default_interval,
        product_name=raw.product_name,
        limits=raw.limits,
        _bounds=bounds,
    )
    settings._sections["donations"] = value
    return value


def checkout_settings(settings: Settings) -> CheckoutSettings:
    """``[checkout]``: where readers go back to."""
    return settings.section("checkout", CheckoutSettings)


def ratelimit_settings(settings: Settings) -> RateLimitSettings:
    """``[ratelimit]``, with each limit string parsed once so a typo fails at start."""
    value = settings.section("ratelimit", RateLimitSettings)
    for name in (
        "checkout_per_address",
        "checkout_per_reader",
        "widget_per_address",
        "auth_failures_per_address",
    ):
        try:
            parse_many(getattr(value, name))
        except ValueError as exc:
            raise ConfigError(f"ratelimit.{name}: {exc}") from None
    if value.proxy_hops < 0:
        raise ConfigError("ratelimit.proxy_hops must be 0 or more")
    return value
