"""The statistics of an appeal experiment: pure functions, standard library only.

numpy/scipy are not dependencies of paywall, and nothing here needs them: a Wilson interval and a
normal approximation are a few lines of arithmetic, and 10,000 Monte Carlo draws for three or four
arms take some tens of milliseconds with ``random.Random`` (measured in tests/experiments/test_stats.py).

Figures (all money in minor units of one currency; never added across currencies):

- ``wilson``: a rate (clicks / impressions, payments / views) with its 95 % Wilson score interval,
  which stays inside [0, 1] and keeps close to 95 % coverage for the small rates appeals have,
  where the textbook ``p ± 1.96·se`` interval collapses to zero width at 0 successes.
- ``per_unit``: revenue per unit (a reader; or a view, an impression) with a 95 % interval. Each
  unit is a value: 0 for units without a payment, the money kept for the units that paid. Its mean is ``sum / n``;
  its variance follows from the sum and the sum of squares of the amounts, which SQL computes in
  the same query on both databases, so no payment row has to leave the database. A bootstrap would
  need every payment in memory and a seed to be stable; the normal approximation needs three
  numbers and is good once an arm has a few dozen payments, which the trust rule demands (below
  it, the interval is shown but the result is not trusted).
- ``lift``: revenue per unit (the results pass readers) of a variant over the holdback's, as a ratio minus one, with an
  interval from the delta method on the log of the ratio (none when the holdback has no revenue).
- ``p_best``: for each variant, the probability that its revenue per unit (the results pass
  readers and conversions) is the highest (ties split evenly), by Monte
  Carlo from posteriors: Beta(1 + payments, 1 + views - payments) for the payment rate and a normal
  posterior for the mean gift (its mean and standard error); 10,000 draws with a fixed seed per
  experiment and currency, so the page shows the same figure on every load.
- ``TRUST``: when a result is trustworthy, stated once, as data; ``judge`` applies it.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass

# The 97.5th percentile of the standard normal: two-sided 95 %.
Z95 = 1.959963984540054
DRAWS = 10_000
# Shapes above this draw a Gamma variate by the Wilson-Hilferty cube of a normal one (relative
# error well under 0.1 % there): three times faster than random.gammavariate's rejection sampler.
WILSON_HILFERTY_FROM = 5.0


@dataclass(frozen=True)
class Estimate:
    """A figure and its 95 % interval [low, high]."""

    value: float
    low: float
    high: float

    def scaled(self, factor: float) -> Estimate:
        return Estimate(self.value * factor, self.low * factor, self.high * factor)


def wilson(successes: int, trials: int, z: float = Z95) -> Estimate | None:
    """``successes / trials`` with its Wilson score interval; None without trials (or more
    successes than trials: then it is no rate)."""
    if trials <= 0 or not 0 <= successes <= trials:
        return None
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    # At 0 or n successes the bound is exactly 0 or 1; rounding must not push it past.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return Estimate(p, low, high)


def _mean_and_se(total: float, squares: float, units: int) -> tuple[float, float]:
    """Mean and standard error of ``units`` values whose sum and sum of squares are given."""
    mean = total / units
    if units < 2:
        return mean, math.inf
    variance = max(squares - total * total / units, 0.0) / (units - 1)
    return mean, math.sqrt(variance / units)


def per_unit(total: int, squares: float, units: int, z: float = Z95) -> Estimate | None:
    """Revenue per unit (reader, view or impression) from the payments' sum and sum of squares
    over ``units`` units, with its normal-approximation interval (the low end never under 0: no
    arm loses money by being shown). None without units."""
    if units <= 0:
        return None
    mean, se = _mean_and_se(total, squares, units)
    if math.isinf(se):
        return Estimate(mean, 0.0, math.inf)
    return Estimate(mean, max(0.0, mean - z * se), mean + z * se)


def lift(arm: tuple[int, float, int], holdback: tuple[int, float, int], z: float = Z95) -> Estimate | None:
    """Revenue per unit (reader) of ``arm`` over ``holdback``'s, minus one (0.25 = a quarter
    more), each given as (sum, sum of squares, units). The interval is the delta method on log(ratio): the two arms
    are independent samples, so var(log ratio) = (se_a/mean_a)² + (se_h/mean_h)². None when either
    arm has no units or no revenue (a ratio to or of nothing says nothing)."""
    (a_sum, a_sq, a_n), (h_sum, h_sq, h_n) = arm, holdback
    if a_n < 2 or h_n < 2 or a_sum <= 0 or h_sum <= 0:
        return None
    a_mean, a_se = _mean_and_se(a_sum, a_sq, a_n)
    h_mean, h_se = _mean_and_se(h_sum, h_sq, h_n)
    ratio = a_mean / h_mean
    spread = z * math.sqrt((a_se / a_mean) ** 2 + (h_se / h_mean) ** 2)
    return Estimate(ratio - 1, ratio * math.exp(-spread) - 1, ratio * math.exp(spread) - 1)


@dataclass(frozen=True)
class ArmMoney:
    """One arm's units and the payments it was credited with, in one currency. The results pass
    readers as ``views`` and conversions as ``payments`` (with the sum of squares per conversion):
    P(best) is per reader."""

    views: int
    payments: int
    total: int
    squares: float


def _gamma_sampler(rng: random.Random, shape: float) -> tuple[float, float, float]:
    """(shape, 1 - c, sqrt c) of the Wilson-Hilferty cube for ``shape`` (c = 1 / 9·shape);
    sqrt c = 0 marks a shape drawn by ``random.gammavariate`` instead."""
    if shape < WILSON_HILFERTY_FROM:
        return shape, 0.0, 0.0
    c = 1.0 / (9.0 * shape)
    return shape, 1.0 - c, math.sqrt(c)


def seed_for(*names: str) -> int:
    """A seed from names (an experiment and a currency): stable across runs and processes."""
    return int.from_bytes(hashlib.sha256("\x00".join(names).encode()).digest()[:8], "big")


def p_best(arms: Mapping[str, ArmMoney], draws: int = DRAWS, seed: int = 0) -> dict[str, float]:
    """For each arm, the share of ``draws`` in which its revenue per unit is the highest (see
    ``_p_best``). Remembered per input: an ended experiment's figures never change, so the /reports
    page pays for its draws once per process, not on every load."""
    return dict(_p_best(tuple(arms.items()), draws, seed))


@functools.lru_cache(maxsize=256)
def _p_best(items: tuple[tuple[str, ArmMoney], ...], draws: int, seed: int) -> tuple[tuple[str, float], ...]:
    """For each arm, the share of ``draws`` in which its revenue per unit is the highest (a tie
    splits that draw's win evenly among the tied arms).

    Per draw and arm: a payment rate from Beta(1 + payments, 1 + views - payments) (the uniform
    prior) times a mean gift from Normal(mean, se) (its sampling distribution; with fewer than two
    payments the arms' pooled spread stands in, with none the pooled mean). Arms without views
    never win. Not for security: the generator is seeded on purpose, so the page is stable."""
    arms = dict(items)
    names = [n for n, a in arms.items() if a.views > 0]
    if not names:
        return tuple((name, 0.0) for name in arms)
    paid = [a for a in arms.values() if a.payments > 0]
    pooled_n = sum(a.payments for a in paid)
    pooled_mean = sum(a.total for a in paid) / pooled_n if pooled_n else 0.0
    pooled_var = max(sum(a.squares for a in paid) / pooled_n - pooled_mean**2, 0.0) if pooled_n else 0.0
    params = []
    for name in names:
        arm = arms[name]
        k = min(arm.payments, arm.views)
        if arm.payments >= 2:
            mean = arm.total / arm.payments
            var = max(arm.squares / arm.payments - mean * mean, 0.0) * arm.payments / (arm.payments - 1)
        else:
            mean = arm.total / arm.payments if arm.payments else pooled_mean
            var = pooled_var
        params.append((1.0 + k, 1.0 + arm.views - k, mean, math.sqrt(var / max(arm.payments, 1))))
    rng = random.Random(seed)  # noqa: S311 - statistics, not secrets: a fixed seed keeps the page stable
    gauss, gammavariate = rng.gauss, rng.gammavariate
    # Per arm: both Gamma samplers of its Beta, and its mean gift and standard error.
    plans = [
        (_gamma_sampler(rng, alpha), _gamma_sampler(rng, beta), mean, se) for alpha, beta, mean, se in params
    ]
    wins = [0.0] * len(names)
    for _ in range(draws):
        leaders: list[int] = []
        best_value = -1.0
        for i, ((a, a1, ac), (b, b1, bc), mean, se) in enumerate(plans):
            # Beta(a, b) = X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b); the cube inlined (hot loop).
            if ac:
                t = a1 + ac * gauss(0.0, 1.0)
                x = a * t * t * t if t > 0 else 0.0
            else:
                x = gammavariate(a, 1.0)
            if bc:
                t = b1 + bc * gauss(0.0, 1.0)
                y = b * t * t * t if t > 0 else 0.0
            else:
                y = gammavariate(b, 1.0)
            gift = mean + se * gauss(0.0, 1.0) if se else mean
            value = x / (x + y) * gift if gift > 0 and x > 0 else 0.0
            if value > best_value:
                leaders, best_value = [i], value
            elif value == best_value:
                leaders.append(i)
        # A tie (arms that drew nothing, most often) splits the win: no arm wins by its position.
        share = 1.0 / len(leaders)
        for i in leaders:
            wins[i] += share
    found = {name: wins[i] / draws for i, name in enumerate(names)}
    return tuple((name, found.get(name, 0.0)) for name in arms)


def probability_text(p: float) -> str:
    """A P(best) for reading: two decimals, but never a certainty 10,000 draws cannot show."""
    if p >= 0.995:
        return "> 0.99"
    if p <= 0.005:
        return "< 0.01"
    return f"{p:.2f}"


@dataclass(frozen=True)
class TrustRule:
    """When an experiment's result (in one currency) is trustworthy; each number with its reason,
    which the /reports page and docs/experiments.md print as they stand here.

    Counted per reader (the unit the arms are drawn by) and per conversion (renewals are not new
    decisions). Before the experiment's end every verdict is an interim look, and one looks again
    and again: an interim verdict demands ``interim_p_best`` instead of ``min_p_best``."""

    min_readers: int = 1000
    min_conversions: int = 30
    min_days: int = 7
    min_p_best: float = 0.95
    interim_p_best: float = 0.99

    def reasons(self) -> list[str]:
        return [
            f"Every arm, the holdback too, has at least {self.min_readers:,} readers: fewer, and the "
            "payment rate's intervals are wider than the differences appeals make.",
            f"Every variant has at least {self.min_conversions} conversions in the currency (one-off "
            "donations and new subscriptions; renewals are revenue, not new conversions): the interval "
            "of revenue per reader is a normal approximation, which skewed gift sizes need a few dozen "
            "conversions to justify.",
            f"The experiment has run at least {self.min_days} days: reading and giving differ by "
            "weekday, so a shorter run measures the days it happened to cover.",
            f"At or after the experiment's end, one variant's probability of being best (per reader) "
            f"is at least {self.min_p_best:.0%}: the same odds as the 95 % intervals, a one-in-twenty "
            "chance of picking a worse variant.",
            f"Before the end a verdict is an interim look, and looking every day and stopping at the "
            f"first good one picks a worse variant more often than one in twenty: an interim verdict "
            f"needs P(best) of at least {self.interim_p_best:.0%}.",
        ]

    def p_best_needed(self, final: bool) -> float:
        """The P(best) a verdict needs: ``min_p_best`` at or after the end, more before it."""
        return self.min_p_best if final else self.interim_p_best


TRUST = TrustRule()


@dataclass(frozen=True)
class Verdict:
    trustworthy: bool
    # The best variant (highest P(best)), or "" when there is none.
    best: str
    # Why it is or is not trustworthy, in words.
    why: str
    # Judged before the experiment's end: an interim look (the stricter P(best) applies).
    interim: bool = False


def judge(
    readers: Mapping[str, int],
    conversions: Mapping[str, int],
    holdback: str | None,
    days_run: int,
    best: Mapping[str, float],
    rule: TrustRule = TRUST,
    final: bool = True,
) -> Verdict:
    """Apply ``rule`` to one experiment in one currency: readers per arm (``holdback`` names the
    holdback arm, whose conversions are not counted against the rule), conversions per arm, whole
    days run and P(best) per variant (empty: no variant converted, there is no best). ``final``:
    judged at or after the experiment's end; before it, the verdict is interim."""
    leader = max(best, key=lambda n: (best[n], n)) if best else ""
    needed = rule.p_best_needed(final)
    interim = "interim: " if not final else ""
    missing: list[str] = []
    few_readers = [n for n in readers if readers[n] < rule.min_readers]
    if few_readers:
        missing.append(
            ", ".join(f"{n} has {readers[n]:,} of {rule.min_readers:,} readers" for n in few_readers)
        )
    few = [n for n in conversions if n != holdback and conversions[n] < rule.min_conversions]
    if few:
        missing.append(
            ", ".join(f"{n} has {conversions[n]} of {rule.min_conversions} conversions" for n in few)
        )
    if days_run < rule.min_days:
        missing.append(f"ran {days_run} of {rule.min_days} days")
    if not best:
        missing.append("no variant has a conversion: nothing to compare")
    elif len(best) < 2:
        missing.append("one variant: nothing to compare")
    elif best[leader] < needed:
        missing.append(f"P(best) of {leader} is {probability_text(best[leader])}, under {needed:.2f}")
    if missing:
        return Verdict(False, leader, interim + "not yet: " + "; ".join(missing), interim=not final)
    return Verdict(
        True,
        leader,
        interim + f"{leader} is best with P(best) {probability_text(best[leader])}",
        interim=not final,
    )
