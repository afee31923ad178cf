"""Subscription plans: the ``[plans.<name>]`` tables of the configuration."""

from __future__ import annotations

import re
from dataclasses import dataclass

from paywall import money
from paywall.config import ConfigError, Settings, build_section

# The price id the shipped example plan carries: never offered (not listed, not on /subscribe, no
# Subscribe button in the widget), and Checkout refuses it (503) until it is replaced.
PLACEHOLDER_PRICE = "price_REPLACE_ME"
PLAN_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class PlanSettings:
    price: str
    label: str
    interval: str
    amount: int
    currency: str
    description: str = ""
    enabled: bool = True


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


def load_plans(settings: Settings) -> dict[str, Plan]:
    """Every enabled plan, in configuration order; a malformed table is a ConfigError."""
    tables = settings.raw.get("plans", {})
    if not isinstance(tables, dict):
        raise ConfigError("[plans] must hold [plans.<name>] tables")
    plans: dict[str, Plan] = {}
    for name, table in tables.items():
        where = f"plans.{name}"
        if not PLAN_NAME_RE.match(name):
            raise ConfigError(f"[{where}]: a plan name is 1-64 of a-z, 0-9, '-' and '_'")
        value = build_section(where, table, PlanSettings)
        if value.interval not in ("month", "year"):
            raise ConfigError(f"{where}.interval must be month or year")
        if not value.price.startswith("price_"):
            raise ConfigError(f"{where}.price must be a Stripe price id (price_...)")
        if value.amount < 0:
            raise ConfigError(f"{where}.amount must be 0 or more (minor units)")
        if not re.fullmatch(r"[a-z]{3}", value.currency.lower()):
            raise ConfigError(f"{where}.currency must be a three-letter ISO code")
        if value.enabled:
            plans[name] = Plan(
                name=name,
                price=value.price,
                label=value.label,
                interval=value.interval,
                amount=value.amount,
                currency=value.currency.lower(),
                description=value.description,
            )
    return plans


def offered_plans(settings: Settings) -> dict[str, Plan]:
    """The plans readers can buy: enabled, and with a real price (not the shipped placeholder)."""
    return {name: plan for name, plan in load_plans(settings).items() if plan.configured}
