"""The account page's words for the rows: money, dates and each subscription's state, at the edge."""

from __future__ import annotations

import datetime as dt
from typing import Any

from paywall import money

INTERVALS = {"month": "per month", "year": "per year", "week": "per week", "day": "per day"}
ENDED = ("canceled", "incomplete_expired")


def day(value: str | dt.datetime | None) -> str:
    """``5 March 2026`` (UTC) for an ISO timestamp or datetime; empty for None."""
    if value is None:
        return ""
    when = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return f"{when.astimezone(dt.UTC):%d %B %Y}".lstrip("0")


def amount(amount_minor: int | None, currency: str | None) -> str:
    if amount_minor is None or not currency:
        return ""
    return money.display(amount_minor, currency)


def _state(sub: dict[str, Any]) -> tuple[str, str | None]:
    """(what happens next, a warning or None) for one subscription summary."""
    warning = None
    if sub["payment_failed_at"]:
        warning = "Your last payment did not go through. Update your card under Manage billing."
    if sub["paused"]:
        resumes = (sub.get("pause_collection") or {}).get("resumes_at")
        return (f"Paused until {day(resumes)}." if resumes else "Paused."), warning
    if sub["cancel_at"] or sub["cancel_at_period_end"]:
        return f"Ends on {day(sub['cancel_at'] or sub['current_period_end'])}.", warning
    if sub["status"] == "trialing" and sub["trial_end"]:
        return f"Free trial; the first charge is on {day(sub['trial_end'])}.", warning
    if sub["status"] in ("incomplete", "unpaid"):
        return "Waiting for payment.", warning
    if sub["current_period_end"]:
        return f"Next charge on {day(sub['current_period_end'])}.", warning
    return "Active.", warning


def subscription_lines(supporter: dict[str, Any], labels: dict[str, str]) -> list[dict[str, Any]]:
    """The reader's current subscriptions and recurring donations, as the page lists them.

    ``labels``: plan name -> its configured label ([plans.<name>] label)."""
    lines = []
    for sub in supporter["subscriptions"]:
        if sub["status"] in ENDED:
            continue
        plan = sub["plan"] or ""
        name = (
            "Monthly donation" if sub["kind"] == "donation" else (labels.get(plan) or plan or "Subscription")
        )
        if sub["kind"] == "donation" and sub["interval"] == "year":
            name = "Yearly donation"
        price = amount(sub["amount"], sub["currency"])
        next_step, warning = _state(sub)
        lines.append(
            {
                "name": name,
                "price": f"{price} {INTERVALS.get(sub['interval'] or '', '')}".strip(),
                "next": next_step,
                "warning": warning,
                "paused": sub["paused"],
            }
        )
    return lines


def donation_lines(supporter: dict[str, Any]) -> list[dict[str, Any]]:
    """The reader's donations, newest first, each with its receipt link target (the charge id)."""
    return [
        {
            "charge": d["stripe_charge_id"],
            "amount": amount(d["amount"], d["currency"]),
            "date": day(d["paid_at"]),
            "refunded": amount(d["refunded"], d["currency"]) if d["refunded"] else "",
            "recurring": d["recurring"],
        }
        for d in supporter["donations"]
    ]
