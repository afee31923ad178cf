"""Stripe prices -> ``stripe_prices``, from the price objects other objects embed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from paywall.models import StripePrice
from paywall.webhooks.sync.derived import relink_payments
from paywall.webhooks.sync.fields import (
    Obj,
    mapping,
    metadata,
    read_amount,
    read_count,
    read_currency,
    read_id,
    read_text,
)
from paywall.webhooks.sync.ordering import Source, assign, stamp, wins
from paywall.webhooks.sync.rows import find_row, remember


def price_name(price: Obj, plan: Obj) -> str | None:
    """The plan's name: the price's ``metadata.plan``, lookup key or nickname, the plan's
    nickname, else the price's id."""
    return (
        read_text(metadata(price).get("plan"), 100)
        or read_text(price.get("lookup_key"), 100)
        or read_text(price.get("nickname"), 100)
        or read_text(plan.get("nickname"), 100)
        or read_text(read_id(price) or read_id(plan), 100)
    )


def upsert_price(session: Session, price_raw: Any, plan_raw: Any, src: Source) -> None:
    """A price object seen inside another object (a subscription item, or an invoice line on older
    API versions) -> ``stripe_prices``, newest state winning. Called for stale states too: a price
    is a fact about itself, and the newest-wins guard keeps the result order-free. A bare id (or
    ``{id, object}``) says nothing about the price and is skipped."""
    price: Obj = price_raw if isinstance(price_raw, Mapping) else {}
    plan: Obj = plan_raw if isinstance(plan_raw, Mapping) else {}
    pid = read_id(price_raw) or read_id(plan_raw)
    if pid is None or ("currency" not in price and "currency" not in plan):
        return
    recurring = mapping(price.get("recurring"))
    unit = read_amount(price, "unit_amount")
    values: dict[str, Any] = {
        "stripe_product_id": read_id(price.get("product")) or read_id(plan.get("product")),
        "plan": price_name(price, plan),
        "unit_amount_minor": read_amount(plan, "amount") if unit is None else unit,
        "currency": read_currency(price, required=False) or read_currency(plan, required=False),
        "interval": read_text(recurring.get("interval") or plan.get("interval"), 16),
        "interval_count": read_count(recurring, "interval_count") or read_count(plan, "interval_count") or 1,
    }
    row = find_row(session, StripePrice, StripePrice.stripe_price_id, pid)
    created = row is None
    if row is None:
        row = StripePrice(stripe_price_id=pid)
        remember(session, row, pid)
    elif not wins(row, src, (), ()):
        return
    renamed = row.plan != values["plan"]
    assign(row, values, links=("stripe_product_id",))
    stamp(row, src)
    if created or renamed:
        relink_payments(session, price_id=pid)
