"""The ``[reports]`` table (config/default.toml), checked once at start."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from paywall.config import ConfigError, Settings

LIVEMODES = ("auto", "live", "test", "all")


@dataclass(frozen=True)
class ReportSettings:
    """The ``[reports]`` table of the configuration."""

    timezone: str = "UTC"
    # Which Stripe mode's money to report: "auto" (the configured key's mode; everything when no
    # key is set), "live", "test" or "all".
    livemode: str = "auto"
    # Hours a /reports sign-in lasts.
    session_hours: int = 8

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"reports.timezone: unknown time zone {self.timezone!r}") from None
        if self.livemode not in LIVEMODES:
            raise ConfigError("reports.livemode must be auto, live, test or all")
        if self.session_hours < 1:
            raise ConfigError("reports.session_hours must be at least 1")


def report_settings(settings: Settings) -> ReportSettings:
    """The checked ``[reports]`` table (cached on the settings)."""
    return settings.section("reports", ReportSettings)
