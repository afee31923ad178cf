"""Stripe subscriptions -> ``subscriptions`` (newest state wins), with the prices they show and
when the current pause began."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from paywall.models import CheckoutSession, Invoice, StripeCustomer, StripeEvent, Subscription
from paywall.webhooks.sync.derived import defer_link, kind_of, refresh_payment_failed, relink_payments
from paywall.webhooks.sync.fields import (
    APPEAL_COLUMNS,
    Obj,
    mapping,
    metadata,
    read_amount,
    read_appeal,
    read_count,
    read_currency,
    read_id,
    read_text,
    read_timestamp,
)
from paywall.webhooks.sync.ordering import Source, assign, fill, outcome_of, stamp, wins
from paywall.webhooks.sync.prices import price_name, upsert_price
from paywall.webhooks.sync.rows import find_row, reader_named, remember

SUBSCRIPTION_STATUS_RANK = {
    "incomplete": 0,
    "trialing": 1,
    "active": 2,
    "past_due": 3,
    "unpaid": 4,
    "paused": 4,
    "canceled": 5,
    "incomplete_expired": 5,
}


# Links: never cleared by a newer state that lacks them (rule 2 of ``ordering``).
SUBSCRIPTION_LINKS = (
    "stripe_customer_id",
    "reader_id",
    "campaign",
    *APPEAL_COLUMNS,
    "latest_invoice",
    "started_at",
)


def _subscription_rank(get: Callable[[str], Any]) -> tuple[Any, ...]:
    end = get("current_period_end")
    return (
        end.timestamp() if end else 0,
        SUBSCRIPTION_STATUS_RANK.get(get("status") or "", 0),
        1 if get("ended_at") else 0,
        1 if get("canceled_at") else 0,
    )


def _subscription_values(sub: Obj) -> dict[str, Any]:
    """The columns of a subscription, from either API shape (period on items since 2025-03-31),
    and under ``_kind`` and ``_reader`` the metadata the upsert resolves."""
    items = (sub.get("items") or {}).get("data") or []
    item: Obj = items[0] if items else {}
    price_raw = item.get("price")
    plan_raw = item.get("plan") or sub.get("plan")
    price: Obj = price_raw if isinstance(price_raw, Mapping) else {}
    plan: Obj = plan_raw if isinstance(plan_raw, Mapping) else {}
    recurring = mapping(price.get("recurring"))
    unit = read_amount(price, "unit_amount")
    unit = read_amount(plan, "amount") if unit is None else unit
    quantity = read_count(item, "quantity") or read_count(sub, "quantity") or 1
    meta = metadata(sub)
    kind = (
        kind_of(meta.get("kind"))
        or kind_of(metadata(price).get("kind"))
        or kind_of(metadata(plan).get("kind"))
    )
    # The customer portal's pause: collection stops, the status stays ``active`` (null when not paused).
    pause = mapping(sub.get("pause_collection"))
    return {
        "stripe_customer_id": read_id(sub.get("customer")),
        "status": read_text(sub.get("status"), 32) or "incomplete",
        "stripe_price_id": read_id(price_raw) or read_id(plan_raw),
        "stripe_product_id": read_id(price.get("product")) or read_id(plan.get("product")),
        "plan": price_name(price, plan),
        "interval": read_text(recurring.get("interval") or plan.get("interval"), 16),
        "interval_count": read_count(recurring, "interval_count") or read_count(plan, "interval_count") or 1,
        "amount_minor": int(unit) * int(quantity) if isinstance(unit, int) else None,
        "currency": read_currency(price, required=False)
        or read_currency(plan, required=False)
        or read_currency(sub, required=False),
        "quantity": int(quantity),
        "current_period_start": read_timestamp(
            item.get("current_period_start") or sub.get("current_period_start")
        ),
        "current_period_end": read_timestamp(item.get("current_period_end") or sub.get("current_period_end")),
        "cancel_at_period_end": bool(sub.get("cancel_at_period_end")),
        "cancel_at": read_timestamp(sub.get("cancel_at")),
        "canceled_at": read_timestamp(sub.get("canceled_at")),
        "ended_at": read_timestamp(sub.get("ended_at")),
        "trial_start": read_timestamp(sub.get("trial_start")),
        "trial_end": read_timestamp(sub.get("trial_end")),
        "started_at": read_timestamp(sub.get("start_date") or sub.get("created")),
        "latest_invoice": read_id(sub.get("latest_invoice")),
        "campaign": read_text(meta.get("campaign"), 100),
        **read_appeal(meta),
        "metadata_": dict(meta),
        "pause_collection_behavior": read_text(pause.get("behavior"), 32),
        "pause_collection_resumes_at": read_timestamp(pause.get("resumes_at")),
        "_kind": kind,
        "_reader": meta.get("reader"),
    }


def _pause_in(sub: Obj) -> bool:
    """Whether a Stripe subscription state is paused: status ``paused`` or collection paused."""
    return (
        sub.get("status") == "paused"
        or read_text(mapping(sub.get("pause_collection")).get("behavior")) is not None
    )


def _paused_at(session: Session, row: Subscription, sub: Obj, src: Source) -> dt.datetime | None:
    """When the row's current pause began (None when not paused): the first state of the latest
    unbroken run of paused states among the stored events about it, this state and the row's own.
    Worked out from all of them, so the same whatever order the events arrived in. The mirror has
    no status history; this is the one date the subscriptions report can count a pause from."""
    if row.status != "paused" and row.pause_collection_behavior is None:
        return None
    newest = row.synced_event_at or src.at
    points = [(newest, True), (src.at, _pause_in(sub))]
    if row.paused_at is not None:
        # The start already known (a fetch, or an event no longer stored, may be all that showed
        # it): a later fetch of the same pause must not move it forward. A state that is not
        # paused and newer than it still ends the run first.
        points.append((row.paused_at, True))
    events = session.execute(
        select(StripeEvent.created, StripeEvent.payload).where(
            StripeEvent.object_id == row.stripe_subscription_id,
            StripeEvent.type.startswith("customer.subscription."),
            # A failed or ignored event was never applied: it says nothing about the pause.
            StripeEvent.status == "processed",
        )
    )
    for created, payload in events:
        points.append((created, _pause_in(mapping(mapping(mapping(payload).get("data")).get("object")))))
    start = newest
    # Newest first; within one second a state that is not paused ends the run.
    for at, paused in sorted((p for p in points if p[0] <= newest), reverse=True):
        if not paused:
            break
        start = at
    return start


def upsert_subscription(session: Session, sub: Obj, src: Source) -> str:
    """A Stripe subscription -> ``subscriptions`` (newest state wins), then its derived facts."""
    sid = read_id(sub)
    if sid is None:
        raise ValueError("subscription without an id")
    values = _subscription_values(sub)
    explicit_kind = values.pop("_kind")
    reader_ref = values.pop("_reader")
    items = mapping(sub.get("items")).get("data") or []
    for item in items:
        if isinstance(item, Mapping):
            upsert_price(session, item.get("price"), item.get("plan"), src)
    if not items:
        upsert_price(session, sub.get("plan"), sub.get("plan"), src)
    row = find_row(session, Subscription, Subscription.stripe_subscription_id, sid)
    created = row is None
    if row is None:
        row = Subscription(stripe_subscription_id=sid, status=values["status"], kind="subscription")
        remember(session, row, sid)
    elif not wins(row, src, _subscription_rank(values.get), _subscription_rank(lambda k: getattr(row, k))):
        # An older state can still be where the current pause began.
        row.paused_at = _paused_at(session, row, sub, src)
        return "stale"
    values["reader_id"] = reader_named(session, reader_ref)
    changed = assign(row, values, links=SUBSCRIPTION_LINKS)
    if explicit_kind and row.kind != explicit_kind:
        row.kind = explicit_kind
        changed = True
    stamp(row, src)
    row.paused_at = _paused_at(session, row, sub, src)
    if created or changed:
        link_subscription(session, row)
    return outcome_of(created, changed)


def link_subscription(session: Session, sub: Subscription) -> None:
    """Fill the subscription's reader, kind, campaign and appeal from its customer and Checkout Session,
    pass its reader on to its invoices, and re-derive its grace start and payments: when the
    group settles."""
    defer_link(session, "subscription", sub.stripe_subscription_id, sub, link_subscriptions)


def link_subscriptions(session: Session, rows: dict[str, Subscription]) -> None:
    """``link_subscription`` for every marked subscription, two queries for all of them."""
    first_checkout: dict[str, CheckoutSession] = {}
    for found in session.scalars(
        select(CheckoutSession)
        .where(CheckoutSession.stripe_subscription_id.in_(sorted(rows)))
        .order_by(CheckoutSession.id)
    ):
        first_checkout.setdefault(str(found.stripe_subscription_id), found)
    for sid, sub in rows.items():
        if sub.stripe_customer_id:
            cus = find_row(session, StripeCustomer, StripeCustomer.stripe_customer_id, sub.stripe_customer_id)
            if cus is not None:
                fill(sub, "reader_id", cus.reader_id)
        cs = first_checkout.get(sid)
        if cs is not None:
            fill(sub, "reader_id", cs.reader_id)
            fill(sub, "campaign", cs.campaign)
            for column in APPEAL_COLUMNS:
                fill(sub, column, getattr(cs, column))
            if cs.kind == "donation" and not kind_of((sub.metadata_ or {}).get("kind")):
                sub.kind = "donation"
    readers = {sid: sub.reader_id for sid, sub in rows.items() if sub.reader_id is not None}
    if readers:
        for inv in session.scalars(
            select(Invoice).where(
                Invoice.stripe_subscription_id.in_(sorted(readers)), Invoice.reader_id.is_(None)
            )
        ):
            inv.reader_id = readers[str(inv.stripe_subscription_id)]
    for sid, sub in rows.items():
        refresh_payment_failed(session, sub)
        relink_payments(session, subscription_id=sid)
