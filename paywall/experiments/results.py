"""The results of the appeal experiments: per experiment, arm and currency, what was seen and raised.

One function behind the report route, the CLI and the /reports page (``experiment_results``), and
the table they export (``results_table``). Counts come from ``appeal_daily`` and readers from
``appeal_exposures``, as the last fold left them (the reports never fold: it holds the write lock;
``counted_up_to`` says when it ran); payments from ``payments`` whose ``appeal_experiment`` is the
experiment, by ``appeal_variant`` (a variant's name or ``holdback``) and currency, paid from the
experiment's start until one ask lifetime (24 hours) after its end: an ask handed out on the last
day is still honoured by Checkout the next morning. The money is what was kept: amount - refunded
- lost to disputes, in minor units, per currency (never added across currencies).

The unit is the reader (the unit of randomisation): ``readers`` per arm are the arm's rows in
``appeal_exposures`` (readers with at least one ``view``, derived by the rollup). Views are no fair
denominator between arms: a holdback reader reports a view on every page, while a variant's reader
stops being asked at the ask budget or after Close.

Per arm: readers; views, impressions (seen on screen), clicks; the click rate (clicks /
impressions, per impression as before) and the payment rate (conversions / readers) with Wilson
intervals; payments and conversions (each one-off donation, and each subscription once: its
renewals are payments, not new conversions); revenue (every payment, renewals too); revenue per
reader and per 1,000 readers, per 1,000 views and per 1,000 impressions with intervals; lift of
revenue per reader over the holdback; P(best) per reader among the variants; and whether the
result in that currency is trustworthy by ``stats.TRUST`` (interim before the experiment's end),
and why.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Float, case, cast, func, literal, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from paywall.config import Settings
from paywall.db import Database
from paywall.experiments import rollup, stats
from paywall.experiments.asks import ASK_TTL
from paywall.experiments.definition import HOLDBACK, Experiment
from paywall.models import Payment
from paywall.models.appeals import AppealDaily, AppealExposure
from paywall.reports.sums import combine, wide_sum
from paywall.reports.tables import BOOL, INT, MONEY, NUMBER, RATIO, TEXT, Column, Table
from paywall.widget.settings import appeal_settings

log = logging.getLogger(__name__)
MILLE = 1000

COLUMNS = [
    Column("experiment"),
    Column("arm"),
    Column("currency"),
    Column("state"),
    Column("days", INT),
    Column("readers", INT),
    Column("views", INT),
    Column("impressions", INT),
    Column("clicks", INT),
    Column("click_rate", RATIO),
    Column("click_rate_low", RATIO),
    Column("click_rate_high", RATIO),
    Column("payments", INT),
    Column("conversions", INT),
    Column("payment_rate", RATIO),
    Column("payment_rate_low", RATIO),
    Column("payment_rate_high", RATIO),
    Column("revenue", MONEY),
    Column("revenue_per_reader", MONEY),
    Column("revenue_per_1000_readers", MONEY),
    Column("revenue_per_1000_readers_low", MONEY),
    Column("revenue_per_1000_readers_high", MONEY),
    Column("revenue_per_1000_views", MONEY),
    Column("revenue_per_1000_views_low", MONEY),
    Column("revenue_per_1000_views_high", MONEY),
    Column("revenue_per_1000_impressions", MONEY),
    Column("revenue_per_1000_impressions_low", MONEY),
    Column("revenue_per_1000_impressions_high", MONEY),
    Column("lift", NUMBER),
    Column("lift_low", NUMBER),
    Column("lift_high", NUMBER),
    Column("p_best", RATIO),
    Column("trustworthy", BOOL),
    Column("interim", BOOL),
    Column("why", TEXT),
]


@dataclass
class Counts:
    readers: int = 0
    views: int = 0
    impressions: int = 0
    clicks: int = 0
    closes: int = 0


@dataclass(frozen=True)
class Sums:
    """One arm's payments in one currency: how many, the money kept, its sum of squares (per
    payment); and the conversions (each one-off donation; each subscription once, its renewals
    included) with the sum of squares of the money kept per conversion, which the per-reader
    statistics use."""

    payments: int = 0
    total: int = 0
    squares: float = 0.0
    conversions: int = 0
    conversion_squares: float = 0.0


@dataclass
class ArmResult:
    arm: str
    currency: str
    counts: Counts
    sums: Sums
    click_rate: stats.Estimate | None
    # Conversions / readers.
    payment_rate: stats.Estimate | None
    # Minor units of ``currency`` per reader, per 1,000 readers / views / impressions (floats;
    # rounded when written).
    per_reader: stats.Estimate | None
    per_1000_readers: stats.Estimate | None
    per_1000_views: stats.Estimate | None
    per_1000_impressions: stats.Estimate | None
    # Revenue per reader over the holdback's, minus one.
    lift: stats.Estimate | None
    # Per reader; None for the holdback (it is no variant one could choose) and when no variant
    # has a conversion in the currency.
    p_best: float | None

    @property
    def holdback(self) -> bool:
        return self.arm == HOLDBACK


@dataclass
class ExperimentResult:
    experiment: Experiment
    state: str
    days: int
    # Per currency (sorted; "" when nothing was paid): the arms in order, and the verdict.
    arms: dict[str, list[ArmResult]] = field(default_factory=dict)
    verdicts: dict[str, stats.Verdict] = field(default_factory=dict)
    # When the counts were last folded from the raw events (None: never).
    counted_up_to: dt.datetime | None = None

    @property
    def name(self) -> str:
        return self.experiment.name


def refresh_counts(db: Database, settings: Settings, now: dt.datetime) -> None:
    """Fold the raw events into the counts in a short write transaction of its own, for a caller
    that needs them up to now (tests, a script). The reports never call it: they read the counts
    as they are (the worker folds every 5 minutes) and say when they were counted. Another fold
    at the same moment (the worker) may win the race for a day's rows (a duplicate key, or a
    deadlock on PostgreSQL); its counts are as fresh, so that is logged and the counts are read
    as they are. A database that is down fails the read that follows, as any report does."""
    try:
        with db.transaction() as session:
            rollup.fold(session, settings, now)
    except DBAPIError as exc:
        log.warning("appeal counts: the fold failed (%s); reading the counts as they are", type(exc).__name__)


def _state(experiment: Experiment, now: dt.datetime) -> str:
    if experiment.running(now):
        return "running"
    return "ended" if now >= experiment.ends else "not started"


def _days(experiment: Experiment, now: dt.datetime) -> int:
    """Whole days the experiment has run by ``now``."""
    return max((min(now, experiment.ends) - experiment.starts).days, 0)


def _counts(session: Session, names: list[str]) -> dict[tuple[str, str], Counts]:
    """(experiment, arm) -> counts summed over days and channels, from ``appeal_daily``, and the
    readers exposed, from ``appeal_exposures``."""
    rows = session.execute(
        select(AppealDaily.experiment, AppealDaily.variant, AppealDaily.type, func.sum(AppealDaily.count))
        .where(AppealDaily.experiment.in_(names))
        .group_by(AppealDaily.experiment, AppealDaily.variant, AppealDaily.type)
    )
    found: dict[tuple[str, str], Counts] = {}
    attribute = {"view": "views", "impression": "impressions", "click": "clicks", "close": "closes"}
    for experiment, arm, type_, count in rows:
        if type_ in attribute:
            counts = found.setdefault((experiment, arm), Counts())
            setattr(counts, attribute[type_], getattr(counts, attribute[type_]) + int(count or 0))
    exposed = session.execute(
        select(AppealExposure.experiment, AppealExposure.variant, func.count())
        .where(AppealExposure.experiment.in_(names))
        .group_by(AppealExposure.experiment, AppealExposure.variant)
    )
    for experiment, arm, count in exposed:
        found.setdefault((experiment, arm), Counts()).readers = int(count)
    return found


def _payments(
    session: Session, experiments: list[Experiment], livemode: bool | None
) -> dict[tuple[str, str, str], Sums]:
    """(experiment, arm, currency) -> the payments credited to it in the experiment's window, with
    its conversions: the payments grouped by subscription (a one-off donation is its own group)."""
    dialect = session.get_bind().dialect.name
    kept_raw = Payment.amount_minor - Payment.refunded_minor - Payment.disputed_minor
    kept = case((kept_raw > 0, kept_raw), else_=literal(0))
    high, low = wide_sum(kept, dialect)
    # Squares as double precision: a statistic, not money, and it cannot overflow.
    squares = func.sum(cast(kept, Float) * cast(kept, Float))
    currency = func.lower(Payment.currency)
    # A conversion: a subscription (first payment and renewals together), or one one-off payment.
    unit = case(
        (Payment.stripe_subscription_id.is_not(None), Payment.stripe_subscription_id),
        else_=literal("charge:") + Payment.stripe_charge_id,
    )
    found: dict[tuple[str, str, str], Sums] = {}
    for experiment in experiments:
        window: list[Any] = [
            Payment.appeal_experiment == experiment.name,
            Payment.paid_at >= experiment.starts,
            Payment.paid_at < experiment.ends + ASK_TTL,
        ]
        if livemode is not None:
            window.append(Payment.livemode.is_(livemode))
        query: Any = (
            select(Payment.appeal_variant, currency, func.count(), high, low, squares)
            .where(*window)
            .group_by(Payment.appeal_variant, currency)
        )
        units = (
            select(
                Payment.appeal_variant.label("arm"),
                currency.label("code"),
                cast(func.sum(kept), Float).label("kept"),
            )
            .where(*window)
            .group_by(Payment.appeal_variant, currency, unit)
            .subquery()
        )
        conversions = {
            (arm or "", code): (int(count), float(sq or 0.0))
            for arm, code, count, sq in session.execute(
                select(
                    units.c.arm, units.c.code, func.count(), func.sum(units.c.kept * units.c.kept)
                ).group_by(units.c.arm, units.c.code)
            )
        }
        for arm, code, count, hi, lo, sq in session.execute(query):
            n, unit_sq = conversions.get((arm or "", code), (0, 0.0))
            found[(experiment.name, arm or "", code)] = Sums(
                int(count), combine(hi, lo), float(sq or 0.0), n, unit_sq
            )
    return found


def _arm_names(experiment: Experiment, seen: set[str]) -> list[str]:
    """The configured arms in order, then any arm the data name that the configuration no longer has."""
    arms = list(experiment.arms)
    return arms + sorted(seen - set(arms))


def _arm(
    arm: str, currency: str, counts: Counts, sums: Sums, holdback: Sums | None, hb_readers: int
) -> ArmResult:
    per_reader = stats.per_unit(sums.total, sums.conversion_squares, counts.readers)
    per_views = stats.per_unit(sums.total, sums.squares, counts.views)
    per_impressions = stats.per_unit(sums.total, sums.squares, counts.impressions)
    lift = None
    if holdback is not None and arm != HOLDBACK:
        lift = stats.lift(
            (sums.total, sums.conversion_squares, counts.readers),
            (holdback.total, holdback.conversion_squares, hb_readers),
        )
    return ArmResult(
        arm=arm,
        currency=currency,
        counts=counts,
        sums=sums,
        click_rate=stats.wilson(counts.clicks, counts.impressions),
        payment_rate=stats.wilson(sums.conversions, counts.readers),
        per_reader=per_reader,
        per_1000_readers=per_reader.scaled(MILLE) if per_reader else None,
        per_1000_views=per_views.scaled(MILLE) if per_views else None,
        per_1000_impressions=per_impressions.scaled(MILLE) if per_impressions else None,
        lift=lift,
        p_best=None,
    )


def experiment_results(
    session: Session,
    settings: Settings,
    now: dt.datetime,
    livemode: bool | None = None,
    only: str | None = None,
) -> list[ExperimentResult]:
    """Every configured experiment that has started (or ``only`` the one named), by name."""
    configured = appeal_settings(settings).experiments
    experiments = [
        e for name, e in sorted(configured.items()) if (only is None and e.starts <= now) or name == only
    ]
    if not experiments:
        return []
    counts = _counts(session, [e.name for e in experiments])
    money = _payments(session, experiments, livemode)
    counted_up_to = rollup.last_folded(session)
    results = []
    for experiment in experiments:
        name = experiment.name
        seen = {arm for (e, arm) in counts if e == name} | {arm for (e, arm, _) in money if e == name}
        arms = _arm_names(experiment, seen - {""})
        currencies = sorted({c for (e, _, c) in money if e == name}) or [""]
        result = ExperimentResult(
            experiment, _state(experiment, now), _days(experiment, now), counted_up_to=counted_up_to
        )
        for currency in currencies:
            holdback = money.get((name, HOLDBACK, currency), Sums()) if HOLDBACK in arms else None
            hb_readers = counts.get((name, HOLDBACK), Counts()).readers
            rows = [
                _arm(
                    arm,
                    currency,
                    counts.get((name, arm), Counts()),
                    money.get((name, arm, currency), Sums()),
                    holdback,
                    hb_readers,
                )
                for arm in arms
            ]
            variants = [r for r in rows if not r.holdback]
            # No variant converted in this currency (or nothing was paid): there is no best.
            best: dict[str, float] = {}
            if any(r.sums.conversions for r in variants):
                best = stats.p_best(
                    {
                        r.arm: stats.ArmMoney(
                            r.counts.readers, r.sums.conversions, r.sums.total, r.sums.conversion_squares
                        )
                        for r in variants
                    },
                    seed=stats.seed_for(name, currency),
                )
            for r in variants:
                r.p_best = best.get(r.arm)
            result.arms[currency] = rows
            result.verdicts[currency] = stats.judge(
                {r.arm: r.counts.readers for r in rows},
                {r.arm: r.sums.conversions for r in rows},
                HOLDBACK if HOLDBACK in arms else None,
                result.days,
                best,
                final=now >= experiment.ends,
            )
        results.append(result)
    return results


def _number(value: float | None, digits: int = 6) -> float | None:
    """A figure for JSON and CSV: rounded, and None where it is not finite."""
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


def _minor(value: float | None) -> int | None:
    """Minor units (per reader, per 1,000 views...) as a whole number (half to even), None where unbounded."""
    if value is None or not math.isfinite(value):
        return None
    return round(value)


def _triple(estimate: stats.Estimate | None, convert: Any) -> tuple[Any, Any, Any]:
    if estimate is None:
        return None, None, None
    return convert(estimate.value), convert(estimate.low), convert(estimate.high)


def result_rows(result: ExperimentResult) -> list[tuple[Any, ...]]:
    """The table rows of one experiment, in COLUMNS order."""
    rows = []
    for currency, arms in result.arms.items():
        verdict = result.verdicts[currency]
        for r in arms:
            paid = bool(currency)
            rows.append(
                (
                    result.name,
                    r.arm,
                    currency,
                    result.state,
                    result.days,
                    r.counts.readers,
                    r.counts.views,
                    r.counts.impressions,
                    r.counts.clicks,
                    *_triple(r.click_rate, _number),
                    r.sums.payments,
                    r.sums.conversions,
                    *_triple(r.payment_rate, _number),
                    r.sums.total if paid else None,
                    _minor(r.per_reader.value) if paid and r.per_reader else None,
                    *_triple(r.per_1000_readers if paid else None, _minor),
                    *_triple(r.per_1000_views if paid else None, _minor),
                    *_triple(r.per_1000_impressions if paid else None, _minor),
                    *_triple(r.lift, lambda v: _number(v, 4)),
                    _number(r.p_best, 4),
                    verdict.trustworthy,
                    verdict.interim,
                    verdict.why,
                )
            )
    return rows


def results_table(
    session: Session,
    settings: Settings,
    now: dt.datetime,
    livemode: bool | None = None,
    only: str | None = None,
) -> Table:
    """The experiments report: one row per experiment, arm and currency (no totals: arms are not
    added up, and currencies never are)."""
    results = experiment_results(session, settings, now, livemode, only)
    counted = rollup.last_folded(session)
    return Table(
        name="experiments",
        columns=COLUMNS,
        rows=[row for result in results for row in result_rows(result)],
        meta={
            "report": "experiments",
            "livemode": livemode,
            "trust_rule": stats.TRUST.reasons(),
            # The counts are as the last fold left them: `paywall experiments rollup` updates now.
            "counted_up_to": counted.isoformat() if counted else None,
            **({"experiment": only} if only else {}),
        },
    )
