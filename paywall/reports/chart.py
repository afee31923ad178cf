"""A bar chart of monthly gross and net per currency, as SVG geometry for the /reports page.

Drawn on the server, so the page needs no script (the CSP allows none from elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from paywall import money
from paywall.reports.revenue import RevenueRow

WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 90, 10, 16, 36


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass
class Tick:
    y: float
    label: str


@dataclass
class Label:
    x: float
    text: str


@dataclass
class Chart:
    currency: str
    width: int = WIDTH
    height: int = HEIGHT
    zero_y: float = 0.0
    bars: list[Bar] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    gross_total: str = ""
    net_total: str = ""


def _nice_step(span: int) -> int:
    """A round tick step (1, 2 or 5 times a power of ten) giving about four ticks."""
    raw = max(span / 4, 1)
    power = 1
    while power * 10 <= raw:
        power *= 10
    for factor in (1, 2, 5, 10):
        if power * factor >= raw:
            return power * factor
    return power * 10


def revenue_charts(rows: list[RevenueRow]) -> list[Chart]:
    """One chart per currency from monthly revenue rows (in period order)."""
    charts = []
    for currency in sorted({r.currency for r in rows}):
        mine = [r for r in rows if r.currency == currency]
        chart = Chart(currency=currency.upper())
        top = max([0, *(r.gross for r in mine), *(r.net for r in mine)])
        bottom = min([0, *(r.net for r in mine)])
        step = _nice_step(top - bottom or 1)
        top = -(-top // step) * step or step
        bottom = (bottom // step) * step
        plot_h = HEIGHT - TOP - BOTTOM
        plot_w = WIDTH - LEFT - RIGHT

        def y(value: int, top: int = top, bottom: int = bottom, plot_h: int = plot_h) -> float:
            return TOP + (top - value) * plot_h / (top - bottom)

        chart.zero_y = y(0)
        value = bottom
        while value <= top:
            chart.ticks.append(Tick(y(value), money.format_major(value, currency)))
            value += step
        slot = plot_w / max(len(mine), 1)
        bar_w = slot * 0.36
        for i, r in enumerate(mine):
            x0 = LEFT + i * slot + slot * 0.12
            for j, (amount, css, what) in enumerate(((r.gross, "gross", "gross"), (r.net, "net", "net"))):
                top_y, bottom_y = sorted((y(amount), y(0)))
                chart.bars.append(
                    Bar(
                        x=round(x0 + j * bar_w, 2),
                        y=round(top_y, 2),
                        width=round(bar_w - 1, 2),
                        height=round(max(bottom_y - top_y, 0.5), 2),
                        css=css,
                        title=f"{r.period} {what}: {money.display(amount, currency)}",
                    )
                )
            chart.labels.append(Label(x=round(LEFT + i * slot + slot / 2, 2), text=str(r.period)))
        chart.gross_total = money.display(sum(r.gross for r in mine), currency)
        chart.net_total = money.display(sum(r.net for r in mine), currency)
        charts.append(chart)
    return charts


@dataclass
class Whisker:
    """A 95 % interval drawn over a bar: a vertical line with caps at ``y_low`` and ``y_high``."""

    x: float
    y_low: float
    y_high: float
    cap: float
    title: str


@dataclass
class ArmChart:
    """Revenue per 1,000 readers per arm of one experiment in one currency, with interval whiskers."""

    experiment: str
    currency: str
    width: int = WIDTH
    height: int = 220
    zero_y: float = 0.0
    bars: list[Bar] = field(default_factory=list)
    whiskers: list[Whisker] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)


def arm_chart(
    experiment: str, currency: str, arms: list[tuple[str, int | None, int | None, int | None]], best: str
) -> ArmChart:
    """Bars of (arm, revenue per 1,000 readers, low, high) in minor units; ``best`` is drawn apart, the
    holdback too. An arm without readers has no bar; an unbounded interval is drawn to the top."""
    chart = ArmChart(experiment=experiment, currency=currency.upper())
    finite = [v for _, value, low, high in arms for v in (value, low, high) if v is not None]
    top = max([0, *finite])
    step = _nice_step(top or 1)
    top = -(-top // step) * step or step
    plot_h = chart.height - TOP - BOTTOM
    plot_w = WIDTH - LEFT - RIGHT

    def y(value: int) -> float:
        return round(TOP + (top - value) * plot_h / top, 2)

    chart.zero_y = y(0)
    value = 0
    while value <= top:
        chart.ticks.append(Tick(y(value), money.format_major(value, currency)))
        value += step
    slot = plot_w / max(len(arms), 1)
    bar_w = min(slot * 0.5, 120)
    for i, (arm, per_mille, low, high) in enumerate(arms):
        centre = LEFT + i * slot + slot / 2
        chart.labels.append(Label(x=round(centre, 2), text=arm))
        if per_mille is None:
            continue
        css = "holdback" if arm == "holdback" else ("best" if arm == best else "arm")
        bar_top = y(per_mille)
        chart.bars.append(
            Bar(
                x=round(centre - bar_w / 2, 2),
                y=bar_top,
                width=round(bar_w, 2),
                height=round(max(chart.zero_y - bar_top, 0.5), 2),
                css=css,
                title=f"{arm}: {money.display(per_mille, currency)} per 1,000 readers",
            )
        )
        if low is not None:
            chart.whiskers.append(
                Whisker(
                    x=round(centre, 2),
                    y_low=y(low),
                    y_high=y(high) if high is not None else float(TOP),
                    cap=round(bar_w / 6, 2),
                    title=f"{arm}: 95 % interval {money.format_major(low, currency)} to "
                    + (money.format_major(high, currency) if high is not None else "unbounded"),
                )
            )
    return chart
