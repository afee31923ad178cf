"""The ``[appeal]`` table (config/default.toml): the footer appeal's copy and labels."""

from __future__ import annotations

from dataclasses import dataclass

from paywall.config import Settings


@dataclass(frozen=True)
class AppealSettings:
    """``[appeal]``: the widget's copy (how long Close hides it is ``[access] dismiss_days``)."""

    headline: str = "Help keep us open"
    text: str = (
        "Independent journalism costs money to make and nothing to read. "
        "You can support us with your donations or subscriptions."
    )
    region_label: str = "Support our journalism"
    subscribe_label: str = "Subscribe"
    donate_label: str = "Donate"
    close_label: str = "Close"


def appeal_settings(settings: Settings) -> AppealSettings:
    """``[appeal]``: the widget's copy and labels (cached on the settings)."""
    return settings.section("appeal", AppealSettings)
