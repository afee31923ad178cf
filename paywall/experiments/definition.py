"""The experiments and goal line of ``[appeal]`` (config/default.toml), checked when the service starts.

```toml
[appeal.experiments.footer-copy]
holdback = 0.2                 # the share that sees no appeal at all
start = "2026-12-01"           # UTC dates, both days included
end = "2027-01-31"
channels = ["footer"]          # footer, gate, or mail campaigns by name
[appeal.experiments.footer-copy.variants.plain]
weight = 1
headline = "Help keep us open"
```

A variant's copy keys are optional: what it leaves out comes from ``[appeal]`` (footer, mail) or
``[gate]`` (gate). ``presets`` and ``default_amount`` (minor units) change /donate for readers in the
variant. Amounts belong to a currency (1000 is 10.00 EUR but 1,000 JPY), so a plain list / number
applies only in ``[donations] default_currency``; a table per currency (``presets.eur = [...]``,
``default_amount.jpy = 1500``) sets them for each currency named. Other currencies keep their own.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from paywall.config import ConfigError, build_section

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
HOLDBACK = "holdback"
# Channels other than these two name a mail campaign (config/appeals/<name>/).
PAGE_CHANNELS = ("footer", "gate")
# The copy a variant may change (and which the widget shows).
COPY_KEYS = ("headline", "text", "region_label", "subscribe_label", "donate_label")


@dataclass(frozen=True)
class VariantSettings:
    """The keys of one ``[appeal.experiments.<name>.variants.<variant>]`` table."""

    weight: float = 1.0
    headline: str = ""
    text: str = ""
    region_label: str = ""
    subscribe_label: str = ""
    donate_label: str = ""
    # presets and default_amount are read apart (``_amounts``): a list / number, or a table per currency.


# The key of amounts given without a currency: they apply in [donations] default_currency only.
DEFAULT_CURRENCY = ""
CURRENCY_RE = re.compile(r"^[a-z]{3}$")


@dataclass(frozen=True)
class Variant:
    name: str
    weight: float
    # Only the copy keys the variant sets (the rest falls back to [appeal] / [gate]).
    copy: dict[str, str]
    # Donation presets and the preselected amount on /donate, in minor units, per currency (lower
    # case, or DEFAULT_CURRENCY for [donations] default_currency); absent: the currency's own.
    presets: dict[str, tuple[int, ...]] = field(default_factory=dict)
    default_amount: dict[str, int] = field(default_factory=dict)

    def presets_in(self, currency: str, default_currency: str) -> tuple[int, ...]:
        """The variant's presets in ``currency`` (empty: the currency's own)."""
        found = self.presets.get(currency.lower())
        if found is None and currency.lower() == default_currency.lower():
            found = self.presets.get(DEFAULT_CURRENCY)
        return found or ()

    def default_in(self, currency: str, default_currency: str) -> int:
        """The variant's preselected amount in ``currency`` (0: none)."""
        found = self.default_amount.get(currency.lower())
        if found is None and currency.lower() == default_currency.lower():
            found = self.default_amount.get(DEFAULT_CURRENCY)
        return found or 0


@dataclass(frozen=True)
class ExperimentSettings:
    """The keys of one ``[appeal.experiments.<name>]`` table (``variants`` parsed apart)."""

    start: str
    end: str
    holdback: float = 0.0
    channels: list[str] = field(default_factory=lambda: ["footer"])


@dataclass(frozen=True)
class Experiment:
    name: str
    holdback: float
    # [starts, ends): UTC midnight of ``start`` to UTC midnight after ``end``.
    starts: dt.datetime
    ends: dt.datetime
    channels: tuple[str, ...]
    variants: tuple[Variant, ...]

    def running(self, now: dt.datetime) -> bool:
        return self.starts <= now < self.ends

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)

    @property
    def arms(self) -> tuple[str, ...]:
        """Every arm's name: the variants in order, then ``holdback`` when there is one."""
        names = tuple(v.name for v in self.variants)
        return (*names, HOLDBACK) if self.holdback > 0 else names


def _date(where: str, value: str) -> dt.datetime:
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{where} must be a date (YYYY-MM-DD), not {value!r}") from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _variant(where: str, name: str, table: Any) -> Variant:
    if not NAME_RE.fullmatch(name) or name == HOLDBACK:
        raise ConfigError(f"{where}: variant names are a-z, 0-9, '-', '_' and not {HOLDBACK!r}")
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    rest = dict(table)
    presets = _amounts(f"{where}.presets", rest.pop("presets", None), list)
    defaults = _amounts(f"{where}.default_amount", rest.pop("default_amount", None), int)
    conf = build_section(where, rest, VariantSettings)
    if not 0 < conf.weight <= 1000:
        raise ConfigError(f"{where}.weight must be more than 0 (and at most 1000)")
    copy = {key: getattr(conf, key) for key in COPY_KEYS if getattr(conf, key)}
    return Variant(
        name,
        conf.weight,
        copy,
        {code: tuple(amounts) for code, amounts in presets.items()},
        {code: amount for code, amount in defaults.items() if amount},
    )


def _amounts(where: str, value: Any, shape: type) -> dict[str, Any]:
    """``presets`` (``shape`` list) or ``default_amount`` (int) as {currency: value}: a bare value
    is the default currency's (DEFAULT_CURRENCY), a table names each currency."""
    if value is None:
        return {}
    per = value if isinstance(value, dict) else {DEFAULT_CURRENCY: value}
    found: dict[str, Any] = {}
    for code, item in per.items():
        here = where if code == DEFAULT_CURRENCY else f"{where}.{code}"
        if code != DEFAULT_CURRENCY and not (isinstance(code, str) and CURRENCY_RE.fullmatch(code.lower())):
            raise ConfigError(f"{here}: a currency is three letters (presets.eur = [...])")
        if shape is list:
            if (
                not isinstance(item, list)
                or not 1 <= len(item) <= 6
                or any(isinstance(a, bool) or not isinstance(a, int) or a < 1 for a in item)
            ):
                raise ConfigError(
                    f"{here} must be 1 to 6 amounts of at least 1 (minor units), or a table per currency"
                )
        elif isinstance(item, bool) or not isinstance(item, int) or item < 0:
            raise ConfigError(
                f"{here} must be 0 (the currency's own) or more (minor units), or a table per currency"
            )
        found[code.lower()] = item
    return found


def _experiment(where: str, name: str, table: Any) -> Experiment:
    if not NAME_RE.fullmatch(name):
        raise ConfigError(f"{where}: experiment names are a-z, 0-9, '-' and '_'")
    if not isinstance(table, dict):
        raise ConfigError(f"[{where}] must be a table")
    variants_table = table.get("variants", {})
    conf = build_section(where, {k: v for k, v in table.items() if k != "variants"}, ExperimentSettings)
    if not 0 <= conf.holdback < 1:
        raise ConfigError(f"{where}.holdback must be at least 0 and less than 1")
    starts, ends = _date(f"{where}.start", conf.start), _date(f"{where}.end", conf.end)
    ends += dt.timedelta(days=1)
    if ends <= starts:
        raise ConfigError(f"{where}.end must not be before {where}.start")
    if not conf.channels:
        raise ConfigError(f"{where}.channels must name at least one channel (footer, gate, or a campaign)")
    for channel in conf.channels:
        if not NAME_RE.fullmatch(channel):
            raise ConfigError(f"{where}.channels: {channel!r} is not footer, gate or a campaign name")
    if not isinstance(variants_table, dict) or not variants_table:
        raise ConfigError(f"{where}.variants must hold at least one [{where}.variants.<name>] table")
    variants = tuple(_variant(f"{where}.variants.{v}", v, t) for v, t in variants_table.items())
    return Experiment(name, conf.holdback, starts, ends, tuple(conf.channels), variants)


def parse_experiments(where: str, tables: Any) -> dict[str, Experiment]:
    """Every ``[appeal.experiments.<name>]``; two that run on one channel at the same time are an error
    (a reader would be in both, and neither result would mean anything)."""
    if not isinstance(tables, dict):
        raise ConfigError(f"[{where}] must be a table of [{where}.<name>] tables")
    found = {name: _experiment(f"{where}.{name}", name, table) for name, table in tables.items()}
    items = sorted(found.values(), key=lambda e: e.name)
    for i, a in enumerate(items):
        for b in items[i + 1 :]:
            shared = set(a.channels) & set(b.channels)
            if shared and a.starts < b.ends and b.starts < a.ends:
                raise ConfigError(
                    f"[{where}.{a.name}] and [{where}.{b.name}] both run on {', '.join(sorted(shared))} "
                    "at the same time; give them dates that do not overlap"
                )
    return found


@dataclass(frozen=True)
class GoalSettings:
    """``[appeal.goal]``: an optional line in the appeal, from a figure cached for ``refresh_seconds``.

    ``kind = "supporters"``: "{count} readers support us this month" (active subscriptions and
    recurring donations, plus readers who gave this month). ``kind = "amount"``: "{raised} of
    {target} raised" this month, in ``currency`` (minor units in ``target``).
    """

    kind: str = ""
    text: str = ""
    target: int = 0
    currency: str = ""
    refresh_seconds: int = 300

    def check(self, where: str) -> None:
        if self.kind not in ("", "supporters", "amount"):
            raise ConfigError(f"{where}.kind must be supporters or amount (or empty: no goal line)")
        if self.kind and not self.text:
            raise ConfigError(f"{where}.text is needed with a goal (e.g. '{{count}} readers support us')")
        if self.kind == "amount" and (self.target < 1 or not re.fullmatch(r"[a-z]{3}", self.currency)):
            raise ConfigError(f"{where}: an amount goal needs target (minor units) and a lower-case currency")
        if self.refresh_seconds < 1:
            raise ConfigError(f"{where}.refresh_seconds must be at least 1")


def parse_goal(where: str, table: Any) -> GoalSettings:
    goal = build_section(where, table, GoalSettings)
    goal.check(where)
    return goal
