"""The ``[access]`` settings: the paywall's rules, validated once at start."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from functools import cached_property

from paywall.config import ConfigError, Settings


@dataclass(frozen=True)
class AccessSettings:
    """Every key of ``[access]`` in config/default.toml, with the same defaults."""

    free_articles_per_month: int = 3
    grace_period_days: int = 7
    donation_access_days: int = 30
    appeal_pause_days: int = 90
    dismiss_days: int = 7
    meter_timezone: str = "UTC"
    token_ttl_seconds: int = 900
    renewal_leeway_hours: int = 24
    # Free articles a month for a registered reader (signed in, or registered by the site);
    # 0 = the same allowance as an anonymous reader.
    registered_free_articles_per_month: int = 5

    def __post_init__(self) -> None:
        for name in (
            "free_articles_per_month",
            "grace_period_days",
            "donation_access_days",
            "appeal_pause_days",
            "dismiss_days",
            "renewal_leeway_hours",
            "registered_free_articles_per_month",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"access.{name} must be 0 or more")
        if self.token_ttl_seconds < 1:
            raise ConfigError("access.token_ttl_seconds must be at least 1")
        try:
            zoneinfo.ZoneInfo(self.meter_timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"access.meter_timezone: unknown time zone {self.meter_timezone!r}") from None

    @cached_property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.meter_timezone)

    @property
    def token_ttl(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.token_ttl_seconds)


def access_settings(settings: Settings) -> AccessSettings:
    """The validated ``[access]`` table (cached on the settings)."""
    return settings.section("access", AccessSettings)
