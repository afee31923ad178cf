"""The appeal experiments' section of the /reports page: each experiment's figures formatted for
reading, its chart, its verdict and its downloads (the figures themselves: experiments/results.py)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from flask import url_for

from paywall import money
from paywall.experiments.results import ArmResult, ExperimentResult
from paywall.experiments.stats import Estimate, probability_text
from paywall.reports.chart import arm_chart


def _percent(estimate: Estimate | None, digits: int = 2) -> dict[str, str]:
    if estimate is None:
        return {"value": "—", "interval": ""}
    return {
        "value": f"{estimate.value:.{digits}%}",
        "interval": f"{estimate.low:.{digits}%} to {estimate.high:.{digits}%}",
    }


def _money(value: float | None, currency: str) -> str:
    if value is None or not math.isfinite(value):
        return "unbounded"
    return money.format_major(round(value), currency)


def _per_mille(estimate: Estimate | None, currency: str) -> dict[str, str]:
    if estimate is None or not currency:
        return {"value": "—", "interval": ""}
    return {
        "value": _money(estimate.value, currency),
        "interval": f"{_money(estimate.low, currency)} to {_money(estimate.high, currency)}",
    }


def _lift(estimate: Estimate | None) -> dict[str, str]:
    if estimate is None:
        return {"value": "—", "interval": ""}
    return {"value": f"{estimate.value:+.0%}", "interval": f"{estimate.low:+.0%} to {estimate.high:+.0%}"}


def _arm_row(r: ArmResult) -> dict[str, Any]:
    currency = r.currency
    return {
        "arm": r.arm,
        "holdback": r.holdback,
        "readers": f"{r.counts.readers:,}",
        "views": f"{r.counts.views:,}",
        "impressions": f"{r.counts.impressions:,}",
        "clicks": f"{r.counts.clicks:,}",
        "click_rate": _percent(r.click_rate),
        "payments": f"{r.sums.payments:,}",
        "conversions": f"{r.sums.conversions:,}",
        "payment_rate": _percent(r.payment_rate),
        "revenue": money.format_major(r.sums.total, currency) if currency else "—",
        "per_reader": _per_mille(r.per_reader, currency),
        "per_1000_readers": _per_mille(r.per_1000_readers, currency),
        "per_1000_views": _per_mille(r.per_1000_views, currency),
        "per_1000_impressions": _per_mille(r.per_1000_impressions, currency),
        "lift": _lift(r.lift),
        "p_best": "—" if r.p_best is None else probability_text(r.p_best),
    }


def _chart_arm(r: ArmResult) -> tuple[str, int | None, int | None, int | None]:
    est = r.per_1000_readers
    if est is None:
        return r.arm, None, None, None
    return (
        r.arm,
        round(est.value),
        round(est.low),
        round(est.high) if math.isfinite(est.high) else None,
    )


def experiment_sections(results: list[ExperimentResult]) -> list[dict[str, Any]]:
    """One section per experiment: its dates and state, then per currency the chart, the rows and
    the verdict; download links for its CSV and JSON."""
    sections = []
    for result in results:
        e = result.experiment
        currencies = []
        for currency, arms in result.arms.items():
            verdict = result.verdicts[currency]
            currencies.append(
                {
                    "currency": currency.upper() or "no payments yet",
                    # The leader is drawn apart only once it is trusted (a colour is read as a verdict).
                    "chart": arm_chart(
                        e.name,
                        currency,
                        [_chart_arm(r) for r in arms],
                        verdict.best if verdict.trustworthy else "",
                    )
                    if currency
                    else None,
                    "rows": [_arm_row(r) for r in arms],
                    "trustworthy": verdict.trustworthy,
                    "interim": verdict.interim,
                    "why": verdict.why.removeprefix("interim: ").removeprefix("not yet: "),
                }
            )
        sections.append(
            {
                "name": e.name,
                "state": result.state,
                "days": result.days,
                "start": e.starts.date().isoformat(),
                "end": (e.ends - dt.timedelta(days=1)).date().isoformat(),
                "channels": ", ".join(e.channels),
                "holdback": f"{e.holdback:.0%}",
                "currencies": currencies,
                "links": [
                    (fmt, url_for("reports.experiments", format=fmt, experiment=e.name))
                    for fmt in ("csv", "json")
                ],
            }
        )
    return sections


def counted_text(results: list[ExperimentResult]) -> str | None:
    """When the counts were last folded, for the page ("2026-12-20 09:25"), or None: never."""
    counted = next((r.counted_up_to for r in results if r.counted_up_to is not None), None)
    return counted.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M") if counted else None
