"""Subscription plans: the ``[plans.<name>]`` tables of the configuration."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from paywall import money
from paywall.config import ConfigError, Settings, build_section

# The price id the shipped example plan carries: never offered (not listed, not on /subscribe, no
# Subscribe button in the widget), and Checkout refuses it (503) until it is replaced.
PLACEHOLDER_PRICE = "price_REPLACE_ME"
PLAN_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class PlanSettings:
    """The keys of one ``[plans.<name>]`` table."""

    price: str
    label: str
    interval: str
    amount: int
    currency: str
    description: str = ""
    enabled: bool = True

    def check(self, where: str) -> None:
        """Raise ConfigError naming ``where.<key>`` for a value no plan may have."""
        if self.interval not in ("month", "year"):
            raise ConfigError(f"{where}.interval must be month or year")
        if not self.price.startswith("price_"):
            raise ConfigError(f"{where}.price must be a Stripe price id (price_...)")
        if self.amount < 0:
            raise ConfigError(f"{where}.amount must be 0 or more (minor units)")
        if not re.fullmatch(r"[a-z]{3}", self.currency.lower()):
            raise ConfigError(f"{where}.currency must be a three-letter ISO code")


@dataclass(frozen=True)
class Plan:
    """A plan as offered: its configured name plus the table's values."""

    name: str
    price: str
    label: str
    interval: str
    amount: int
    currency: str
    description: str

    @property
    def configured(self) -> bool:
        """False while the price is still the shipped placeholder."""
        return self.price != PLACEHOLDER_PRICE

    @property
    def display_amount(self) -> str:
        return money.display(self.amount, self.currency)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "label": self.label,
            "description": self.description,
            "price": self.price,
            "interval": self.interval,
            "amount": self.amount,
            "currency": self.currency,
        }


@dataclass(frozen=True)
class PlansSettings:
    """``[plans]``: one ``[plans.<name>]`` table per plan; ``enabled`` keeps configuration order."""

    enabled: dict[str, Plan]

    @classmethod
    def from_table(cls, where: str, tables: Any) -> PlansSettings:
        """Check each ``[plans.<name>]`` table (its keys are plan names, not fixed keys)."""
        if not isinstance(tables, dict):
            raise ConfigError(f"[{where}] must hold [{where}.<name>] tables")
        enabled: dict[str, Plan] = {}
        for name, table in tables.items():
            if not PLAN_NAME_RE.match(name):
                raise ConfigError(f"[{where}.{name}]: a plan name is 1-64 of a-z, 0-9, '-' and '_'")
            value = build_section(f"{where}.{name}", table, PlanSettings)
            value.check(f"{where}.{name}")
            if value.enabled:
                enabled[name] = Plan(
                    name=name,
                    price=value.price,
                    label=value.label,
                    interval=value.interval,
                    amount=value.amount,
                    currency=value.currency.lower(),
                    description=value.description,
                )
        return cls(enabled=enabled)


def load_plans(settings: Settings) -> dict[str, Plan]:
    """Every enabled plan, in configuration order (checked once, cached on the settings)."""
    return settings.section("plans", PlansSettings).enabled


def offered_plans(settings: Settings) -> dict[str, Plan]:
    """The plans readers can buy: enabled, and with a real price (not the shipped placeholder)."""
    return {name: plan for name, plan in load_plans(settings).items() if plan.configured}
