"""The ``[appeal]`` table (config/default.toml): the footer appeal's copy, the ask budget, the
experiments and the goal line (paywall/experiments/definition.py parses the last two)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from paywall.config import ConfigError, Settings, build_section
from paywall.experiments.definition import Experiment, GoalSettings, parse_experiments, parse_goal

# Tables inside [appeal] that are not flat keys.
NESTED = ("experiments", "goal")


@dataclass(frozen=True)
class AppealKeys:
    """The flat keys of ``[appeal]``."""

    headline: str = "Help keep us open"
    text: str = (
        "Independent journalism costs money to make and nothing to read. "
        "You can support us with your donations or subscriptions."
    )
    region_label: str = "Support our journalism"
    subscribe_label: str = "Subscribe"
    donate_label: str = "Donate"
    close_label: str = "Close"
    # The ask budget: at most max_asks asks (footer appeals seen, appeal mails sent) per per_days
    # days per reader or browser; 0 = no budget. No ask before min_articles articles read this month.
    max_asks: int = 0
    per_days: int = 7
    min_articles: int = 0
    # Days raw appeal events (impressions, clicks, closes) are kept; daily counts are kept for good.
    keep_events_days: int = 30

    def __post_init__(self) -> None:
        if self.max_asks < 0:
            raise ConfigError("appeal.max_asks must be 0 (no budget) or more")
        if not 1 <= self.per_days <= 366:
            raise ConfigError("appeal.per_days must be between 1 and 366")
        if self.min_articles < 0:
            raise ConfigError("appeal.min_articles must be 0 or more")
        if not 1 <= self.keep_events_days <= 3660:
            raise ConfigError("appeal.keep_events_days must be between 1 and 3660")


@dataclass(frozen=True)
class AppealSettings(AppealKeys):
    """``[appeal]``: the widget's copy (how long Close hides it is ``[access] dismiss_days``), the ask
    budget, ``[appeal.experiments.<name>]`` and ``[appeal.goal]``."""

    experiments: dict[str, Experiment] = field(default_factory=dict)
    goal: GoalSettings = field(default_factory=GoalSettings)

    @classmethod
    def from_table(cls, where: str, table: Any) -> AppealSettings:
        if not isinstance(table, dict):
            raise ConfigError(f"[{where}] must be a table")
        keys = build_section(where, {k: v for k, v in table.items() if k not in NESTED}, AppealKeys)
        return cls(
            **vars(keys),
            experiments=parse_experiments(f"{where}.experiments", table.get("experiments", {})),
            goal=parse_goal(f"{where}.goal", table.get("goal", {})),
        )


def appeal_settings(settings: Settings) -> AppealSettings:
    """``[appeal]``: copy, budget, experiments and goal (cached on the settings)."""
    return settings.section("appeal", AppealSettings)
