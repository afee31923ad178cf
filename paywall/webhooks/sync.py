"""Stripe objects -> rows: one upsert per object type, guarded so the newest state wins.

Every function here takes a Session and a ``Source`` and never commits. The webhook handlers, the
replay command and ``paywall stripe sync`` all call these same functions.

The ordering rule (stated once, tested by replaying every scenario shuffled with duplicates):

1. Each mirrored row remembers the source of the state it holds (``synced_event_at``,
   ``synced_event_id``). An incoming state replaces it when its key is not smaller, comparing
   ``(second, fetched, progress, event id)`` in that order:
   - ``second``: the event's ``created`` (whole seconds). A fetched object (``paywall stripe sync``)
     uses the time it was fetched.
   - ``fetched``: within one second, a fetched object beats any event (it is the current state).
   - ``progress``: within one second, the state that is further along wins. Subscriptions compare
     (period end, status: incomplete < trialing < active < past_due < unpaid/paused < canceled,
     ended, canceled); invoices (status: draft < open < uncollectible < paid/void, attempt_count,
     amount_paid); charges (amount_refunded); refunds (pending < succeeded/failed/canceled);
     disputes (open < under review < closed, reinstated, number of balance transactions);
     Checkout Sessions (open < complete/expired, unpaid < paid); customers (deleted last).
   - ``event id``: a last, arbitrary but fixed tie-break, so the final row never depends on the
     delivery order. Re-applying the same event is a no-op.
2. Links are facts, not state: a Stripe id, reader, campaign or donor detail, once known, is never
   cleared by a later state that lacks it (a newer state may replace it with another value).
3. Derived facts are recomputed from the stored rows after every change, so they do not depend on
   the order the inputs arrived in: a payment's kind, links and reader; its refunded amount (the
   sum of its counted refunds, at most its amount); the charge-only part of its refunds (what the
   charge's ``amount_refunded`` says beyond its refund objects, dated by the charge state that first
   showed it: see ``refresh_charge_refunds``); its dispute state (lost amount: the dispute amount when lost or while funds are withdrawn, 0 when
   won or reinstated); a subscription's ``payment_failed_at`` (the earliest first failure among its
   invoices that are still unpaid); a payment's price and plan (the price of its invoice's service
   line, which wins over the subscription's current price, else the subscription's; the plan is
   that price's name in ``stripe_prices``, kept newest-wins from every state that shows the price,
   stale ones too), so a payment keeps the plan it paid for after an upgrade.
4. Times Stripe does not state are the earliest event that shows them, stale or not, so the
   first-processed event does not decide them: a dispute's ``closed_at`` and funds movements, a
   Checkout Session's ``completed_at``, a customer's ``deleted_at``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from paywall import clock
from paywall.mail import queue
from paywall.models import (
    CheckoutSession,
    Dispute,
    Invoice,
    OutboxMessage,
    Payment,
    Reader,
    Refund,
    StripeCustomer,
    StripeEvent,
    StripePrice,
    Subscription,
)
from paywall.models.billing import COUNTED_REFUND_STATUSES
from paywall.readers.erased import mentions_erased
from paywall.readers.service import ensure_reader
from paywall.webhooks.fields import (
    read_amount,
    read_count,
    read_currency,
    read_id,
    read_text,
    read_timestamp,
)

FETCH_PREFIX = "fetch:"
KINDS = ("subscription", "donation")

T = TypeVar("T")
Obj = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a state comes from: an event (its id and ``created``) or a fetch (now)."""

    at: dt.datetime
    event_id: str
    livemode: bool = False
    event_type: str = ""

    @property
    def fetched(self) -> bool:
        return self.event_id.startswith(FETCH_PREFIX)

    @classmethod
    def fetch(cls, livemode: bool = False, at: dt.datetime | None = None) -> Source:
        """A source for objects read from Stripe's API just now: fresher than any event."""
        when = at or clock.now()
        return cls(at=when, event_id=FETCH_PREFIX + when.isoformat(), livemode=livemode)


# --- small helpers ---------------------------------------------------------------------------


def obj_id(value: Any) -> str | None:
    """The id of a field that may be an id string or an expanded object (InvalidField if absurd)."""
    return read_id(value)


def ts(value: Any) -> dt.datetime | None:
    """A Stripe unix timestamp as aware UTC (InvalidField if not whole seconds in a sane range)."""
    return read_timestamp(value)


def _meta(obj: Obj) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: Any, limit: int = 255) -> str | None:
    """A stripped string; InvalidField if not a string, over ``limit`` or with control characters."""
    return read_text(value, limit)


def _kind(value: Any) -> str | None:
    return value if value in KINDS else None


def _second(value: dt.datetime) -> dt.datetime:
    return value.replace(microsecond=0)


def _wins(row: Any, src: Source, new_rank: tuple[Any, ...], old_rank: tuple[Any, ...]) -> bool:
    """Whether ``src``'s state replaces the row's (see the module docstring)."""
    if row.synced_event_at is None:
        return True
    stored_id = row.synced_event_id or ""
    new_key = (_second(src.at), src.fetched, new_rank, src.event_id)
    old_key = (_second(row.synced_event_at), stored_id.startswith(FETCH_PREFIX), old_rank, stored_id)
    return new_key >= old_key


def _set(row: Any, values: Mapping[str, Any], links: Iterable[str] = ()) -> bool:
    """Assign changed values; ``links`` are never cleared by None. Returns whether anything changed.

    An upsert that changed nothing skips its linking: every related row's own upsert already
    passed its facts on when it changed (links are symmetric), so there is nothing new to derive."""
    keep = set(links)
    changed = False
    for key, value in values.items():
        if value is None and key in keep:
            continue
        if getattr(row, key) != value:
            setattr(row, key, value)
            changed = True
    return changed


def _fill(row: Any, key: str, value: Any) -> bool:
    """Set ``key`` only when it is still empty."""
    if value is None or getattr(row, key) is not None:
        return False
    setattr(row, key, value)
    return True


def _earliest(row: Any, key: str, value: dt.datetime | None) -> bool:
    """Keep the earliest time seen for ``key``: the minimum over events, whatever their order."""
    current = getattr(row, key)
    if value is None or (current is not None and current <= value):
        return False
    setattr(row, key, value)
    return True


ROW_CACHE = "paywall.webhooks.rows"


def _get(session: Session, model: type[T], column: Any, key: str) -> T | None:
    """The row with this Stripe id, remembered for the rest of the transaction (the locks held
    make it current), so the many lookups of one event's related rows cost one query each."""
    cache = session.info.setdefault(ROW_CACHE, {})
    found = cache.get((model, key))
    if found is None:
        found = session.scalar(select(model).where(column == key))
        if found is not None:
            cache[(model, key)] = found
    return cast("T | None", found)


def _remember(session: Session, row: Any, key: str) -> None:
    session.add(row)
    session.info.setdefault(ROW_CACHE, {})[(type(row), key)] = row


def forget(session: Session) -> None:
    """Drop the transaction's remembered rows and pending work (after a savepoint rollback)."""
    session.info.pop(ROW_CACHE, None)
    session.info.pop(PENDING_RELINK, None)


def _stamp(row: Any, src: Source) -> None:
    row.synced_event_at = src.at
    row.synced_event_id = src.event_id
    row.livemode = src.livemode


def _reader_id(session: Session, external_id: Any) -> int | None:
    """The reader named by a Stripe field (created bare if the site never registered them)."""
    name = _str(external_id, 128)
    if name is None or any(ord(ch) < 32 for ch in name):
        return None
    return ensure_reader(session, name).id


PERSONAL_FIELDS = ("email", "name")


def _unless_erased(session: Session, obj: Obj, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the personal fields blanked when ``obj`` names an erased person's customer
    or address (paywall.erasure): a later event must not write back what an erasure removed."""
    if any(values.get(key) for key in PERSONAL_FIELDS) and mentions_erased(session, obj):
        values.update({key: None for key in PERSONAL_FIELDS if key in values})
    return values


def _outcome(created: bool, changed: bool) -> str:
    if created:
        return "created"
    return "updated" if changed else "unchanged"


# --- customers -------------------------------------------------------------------------------


def _customer_rank(deleted: bool) -> tuple[int]:
    return (1 if deleted else 0,)


def upsert_customer(session: Session, cus: Obj, src: Source, *, deleted: bool = False) -> str:
    """A Stripe customer -> ``stripe_customers``; its reader (``metadata.reader``) reaches its rows."""
    cid = obj_id(cus)
    if cid is None:
        raise ValueError("customer without an id")
    deleted = deleted or bool(cus.get("deleted"))
    row = _get(session, StripeCustomer, StripeCustomer.stripe_customer_id, cid)
    created = row is None
    if row is None:
        row = StripeCustomer(stripe_customer_id=cid)
        _remember(session, row, cid)
    was_deleted = row.deleted_at is not None
    # Deleted as of the earliest deletion seen, whichever event came first.
    changed = deleted and _earliest(row, "deleted_at", src.at)
    if not created and not _wins(row, src, _customer_rank(deleted), _customer_rank(was_deleted)):
        return "updated" if changed else "stale"
    values: dict[str, Any] = {
        "reader_id": _reader_id(session, _meta(cus).get("reader")),
        "stripe_created": ts(cus.get("created")),
        "email": _str(cus.get("email"), 320),
        "name": _str(cus.get("name"), 200),
        "metadata_": dict(_meta(cus)),
    }
    _unless_erased(session, cus, values)
    links = ["reader_id", "stripe_created"]
    if deleted:
        # customer.deleted carries the customer as it was, so it is the newest profile: stored
        # even when it is the first event processed. A bare deleted object ({id, deleted}, as a
        # fetch returns) says nothing about the profile, so it clears nothing.
        links += ["email", "name"]
        if "metadata" not in cus:
            del values["metadata_"]
    changed = _set(row, values, links=links) or changed
    _stamp(row, src)
    session.flush()
    if created or changed:
        link_customer(session, row)
    return _outcome(created, changed)


def _customer_stub(session: Session, cid: str) -> StripeCustomer:
    row = _get(session, StripeCustomer, StripeCustomer.stripe_customer_id, cid)
    if row is None:
        row = StripeCustomer(stripe_customer_id=cid)
        _remember(session, row, cid)
        session.flush()
    return row


def link_customer(session: Session, cus: StripeCustomer) -> None:
    """Give the customer's reader to its subscriptions, invoices and payments that have none."""
    cid = cus.stripe_customer_id
    if cus.reader_id is not None:
        for sub in session.scalars(
            select(Subscription).where(
                Subscription.stripe_customer_id == cid, Subscription.reader_id.is_(None)
            )
        ):
            sub.reader_id = cus.reader_id
        for inv in session.scalars(
            select(Invoice).where(Invoice.stripe_customer_id == cid, Invoice.reader_id.is_(None))
        ):
            inv.reader_id = cus.reader_id
    relink_payments(session, customer_id=cid)


# --- subscriptions ---------------------------------------------------------------------------

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


def _subscription_rank(get: Callable[[str], Any]) -> tuple[Any, ...]:
    end = get("current_period_end")
    return (
        end.timestamp() if end else 0,
        SUBSCRIPTION_STATUS_RANK.get(get("status") or "", 0),
        1 if get("ended_at") else 0,
        1 if get("canceled_at") else 0,
    )


def _price_name(price: Obj, plan: Obj) -> str | None:
    return (
        _str(_meta(price).get("plan"), 100)
        or _str(price.get("lookup_key"), 100)
        or _str(price.get("nickname"), 100)
        or _str(plan.get("nickname"), 100)
        or _str(obj_id(price) or obj_id(plan), 100)
    )


def subscription_values(sub: Obj) -> dict[str, Any]:
    """The columns of a subscription, from either API shape (period on items since 2025-03-31)."""
    items = (sub.get("items") or {}).get("data") or []
    item: Obj = items[0] if items else {}
    price_raw = item.get("price")
    plan_raw = item.get("plan") or sub.get("plan")
    price: Obj = price_raw if isinstance(price_raw, Mapping) else {}
    plan: Obj = plan_raw if isinstance(plan_raw, Mapping) else {}
    recurring = _map(price.get("recurring"))
    unit = read_amount(price, "unit_amount")
    unit = read_amount(plan, "amount") if unit is None else unit
    quantity = read_count(item, "quantity") or read_count(sub, "quantity") or 1
    meta = _meta(sub)
    kind = _kind(meta.get("kind")) or _kind(_meta(price).get("kind")) or _kind(_meta(plan).get("kind"))
    # The customer portal's pause: collection stops, the status stays ``active`` (null when not paused).
    pause = _map(sub.get("pause_collection"))
    return {
        "stripe_customer_id": obj_id(sub.get("customer")),
        "status": _str(sub.get("status"), 32) or "incomplete",
        "stripe_price_id": obj_id(price_raw) or obj_id(plan_raw),
        "stripe_product_id": obj_id(price.get("product")) or obj_id(plan.get("product")),
        "plan": _price_name(price, plan),
        "interval": _str(recurring.get("interval") or plan.get("interval"), 16),
        "interval_count": read_count(recurring, "interval_count") or read_count(plan, "interval_count") or 1,
        "amount_minor": int(unit) * int(quantity) if isinstance(unit, int) else None,
        "currency": read_currency(price, required=False)
        or read_currency(plan, required=False)
        or read_currency(sub, required=False),
        "quantity": int(quantity),
        "current_period_start": ts(item.get("current_period_start") or sub.get("current_period_start")),
        "current_period_end": ts(item.get("current_period_end") or sub.get("current_period_end")),
        "cancel_at_period_end": bool(sub.get("cancel_at_period_end")),
        "cancel_at": ts(sub.get("cancel_at")),
        "canceled_at": ts(sub.get("canceled_at")),
        "ended_at": ts(sub.get("ended_at")),
        "trial_start": ts(sub.get("trial_start")),
        "trial_end": ts(sub.get("trial_end")),
        "started_at": ts(sub.get("start_date") or sub.get("created")),
        "latest_invoice": obj_id(sub.get("latest_invoice")),
        "campaign": _str(meta.get("campaign"), 100),
        "metadata_": dict(meta),
        "pause_collection_behavior": _str(pause.get("behavior"), 32),
        "pause_collection_resumes_at": ts(pause.get("resumes_at")),
        "_kind": kind,
        "_reader": meta.get("reader"),
    }


def upsert_price(session: Session, price_raw: Any, plan_raw: Any, src: Source) -> None:
    """A price object seen inside another object (a subscription item, or an invoice line on older
    API versions) -> ``stripe_prices``, newest state winning. Called for stale states too: a price
    is a fact about itself, and the newest-wins guard keeps the result order-free. A bare id (or
    ``{id, object}``) says nothing about the price and is skipped."""
    price: Obj = price_raw if isinstance(price_raw, Mapping) else {}
    plan: Obj = plan_raw if isinstance(plan_raw, Mapping) else {}
    pid = obj_id(price_raw) or obj_id(plan_raw)
    if pid is None or ("currency" not in price and "currency" not in plan):
        return
    recurring = _map(price.get("recurring"))
    unit = read_amount(price, "unit_amount")
    values: dict[str, Any] = {
        "stripe_product_id": obj_id(price.get("product")) or obj_id(plan.get("product")),
        "plan": _price_name(price, plan),
        "unit_amount_minor": read_amount(plan, "amount") if unit is None else unit,
        "currency": read_currency(price, required=False) or read_currency(plan, required=False),
        "interval": _str(recurring.get("interval") or plan.get("interval"), 16),
        "interval_count": read_count(recurring, "interval_count") or read_count(plan, "interval_count") or 1,
    }
    row = _get(session, StripePrice, StripePrice.stripe_price_id, pid)
    created = row is None
    if row is None:
        row = StripePrice(stripe_price_id=pid)
        _remember(session, row, pid)
    elif not _wins(row, src, (), ()):
        return
    renamed = row.plan != values["plan"]
    _set(row, values, links=("stripe_product_id",))
    _stamp(row, src)
    session.flush()
    if created or renamed:
        relink_payments(session, price_id=pid)


def _pause_in(sub: Obj) -> bool:
    """Whether a Stripe subscription state is paused: status ``paused`` or collection paused."""
    return (
        sub.get("status") == "paused" or _str(_map(sub.get("pause_collection")).get("behavior")) is not None
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
        points.append((created, _pause_in(_map(_map(_map(payload).get("data")).get("object")))))
    start = newest
    # Newest first; within one second a state that is not paused ends the run.
    for at, paused in sorted((p for p in points if p[0] <= newest), reverse=True):
        if not paused:
            break
        start = at
    return start


def upsert_subscription(session: Session, sub: Obj, src: Source) -> str:
    """A Stripe subscription -> ``subscriptions`` (newest state wins), then its derived facts."""
    sid = obj_id(sub)
    if sid is None:
        raise ValueError("subscription without an id")
    values = subscription_values(sub)
    explicit_kind = values.pop("_kind")
    reader_ref = values.pop("_reader")
    items = _map(sub.get("items")).get("data") or []
    for item in items:
        if isinstance(item, Mapping):
            upsert_price(session, item.get("price"), item.get("plan"), src)
    if not items:
        upsert_price(session, sub.get("plan"), sub.get("plan"), src)
    row = _get(session, Subscription, Subscription.stripe_subscription_id, sid)
    created = row is None
    if row is None:
        row = Subscription(stripe_subscription_id=sid, status=values["status"], kind="subscription")
        _remember(session, row, sid)
    elif not _wins(row, src, _subscription_rank(values.get), _subscription_rank(lambda k: getattr(row, k))):
        # An older state can still be where the current pause began.
        row.paused_at = _paused_at(session, row, sub, src)
        return "stale"
    values["reader_id"] = _reader_id(session, reader_ref)
    changed = _set(
        row, values, links=("stripe_customer_id", "reader_id", "campaign", "latest_invoice", "started_at")
    )
    if explicit_kind and row.kind != explicit_kind:
        row.kind = explicit_kind
        changed = True
    _stamp(row, src)
    row.paused_at = _paused_at(session, row, sub, src)
    session.flush()
    if created or changed:
        link_subscription(session, row)
    return _outcome(created, changed)


def link_subscription(session: Session, sub: Subscription) -> None:
    """Fill the subscription's reader, kind and campaign from its customer and Checkout Session,
    pass its reader on to its invoices, and re-derive its grace start and payments."""
    if sub.stripe_customer_id:
        cus = _get(session, StripeCustomer, StripeCustomer.stripe_customer_id, sub.stripe_customer_id)
        if cus is not None:
            _fill(sub, "reader_id", cus.reader_id)
    cs = session.scalar(
        select(CheckoutSession)
        .where(CheckoutSession.stripe_subscription_id == sub.stripe_subscription_id)
        .order_by(CheckoutSession.id)
    )
    if cs is not None:
        _fill(sub, "reader_id", cs.reader_id)
        _fill(sub, "campaign", cs.campaign)
        if cs.kind == "donation" and not _kind((sub.metadata_ or {}).get("kind")):
            sub.kind = "donation"
    if sub.reader_id is not None:
        for inv in session.scalars(
            select(Invoice).where(
                Invoice.stripe_subscription_id == sub.stripe_subscription_id, Invoice.reader_id.is_(None)
            )
        ):
            inv.reader_id = sub.reader_id
    refresh_payment_failed(session, sub)
    relink_payments(session, subscription_id=sub.stripe_subscription_id)


UNPAID_INVOICE = ("open", "uncollectible")


def refresh_payment_failed(session: Session, sub: Subscription) -> None:
    """``payment_failed_at``: the earliest first failure among the subscription's unpaid invoices."""
    first = session.scalars(
        select(Invoice.payment_failed_at)
        .where(
            Invoice.stripe_subscription_id == sub.stripe_subscription_id,
            Invoice.status.in_(UNPAID_INVOICE),
            Invoice.payment_failed_at.is_not(None),
        )
        .order_by(Invoice.payment_failed_at)
        .limit(1)
    ).first()
    if sub.payment_failed_at != first:
        sub.payment_failed_at = first


# --- invoices --------------------------------------------------------------------------------

INVOICE_STATUS_RANK = {"draft": 0, "open": 1, "uncollectible": 2, "paid": 3, "void": 3}


def _invoice_rank(get: Callable[[str], Any]) -> tuple[int, ...]:
    return (
        INVOICE_STATUS_RANK.get(get("status") or "", 0),
        int(get("attempt_count") or 0),
        int(get("amount_paid") or 0),
    )


def invoice_subscription_id(inv: Obj) -> str | None:
    """The invoice's subscription: ``parent.subscription_details`` (2025-03-31+) or top level (older)."""
    parent = inv.get("parent")
    if isinstance(parent, Mapping):
        details = parent.get("subscription_details")
        if isinstance(details, Mapping) and obj_id(details.get("subscription")):
            return obj_id(details.get("subscription"))
    found = obj_id(inv.get("subscription"))
    if found:
        return found
    for line in (inv.get("lines") or {}).get("data") or []:
        found = obj_id(line.get("subscription"))
        if found:
            return found
    return None


def _line_price(line: Obj) -> str | None:
    pricing = line.get("pricing")
    if isinstance(pricing, Mapping):
        details = pricing.get("price_details")
        if isinstance(details, Mapping) and obj_id(details.get("price")):
            return obj_id(details.get("price"))
    return obj_id(line.get("price")) or obj_id(line.get("plan"))


def _service_line(inv: Obj) -> Obj | None:
    """The line billing the service period: a non-proration subscription line, else the last line."""
    lines = (inv.get("lines") or {}).get("data") or []
    best = None
    for line in lines:
        parent = _map(line.get("parent"))
        details = parent.get("subscription_item_details") if isinstance(parent, Mapping) else None
        proration = details.get("proration") if isinstance(details, Mapping) else line.get("proration", False)
        if not proration and (read_amount(line, "amount", signed=True) or 0) >= 0:
            best = line
    return best or (lines[-1] if lines else None)


def invoice_payment_intents(inv: Obj) -> list[str]:
    """Payment intents the invoice names: ``payment_intent`` (older shape) or expanded ``payments``."""
    found = []
    if obj_id(inv.get("payment_intent")):
        found.append(obj_id(inv.get("payment_intent")))
    payments = inv.get("payments")
    if isinstance(payments, Mapping):
        for ip in payments.get("data") or []:
            payment = ip.get("payment") if isinstance(ip, Mapping) else None
            if isinstance(payment, Mapping) and ip.get("status") == "paid":
                found.append(obj_id(payment.get("payment_intent")))
    return [pi for pi in found if pi]


def upsert_invoice(session: Session, inv: Obj, src: Source, *, failed: bool = False) -> str:
    """A Stripe invoice -> ``invoices``; ``failed`` records a failed payment attempt (grace start)."""
    iid = obj_id(inv)
    if iid is None:
        raise ValueError("invoice without an id")
    for any_line in (inv.get("lines") or {}).get("data") or []:
        if isinstance(any_line, Mapping):
            upsert_price(session, any_line.get("price"), any_line.get("plan"), src)
    line = _service_line(inv)
    period = _map(line.get("period")) if line else {}
    transitions = _map(inv.get("status_transitions"))
    pis = invoice_payment_intents(inv)
    values: dict[str, Any] = {
        "stripe_customer_id": obj_id(inv.get("customer")),
        "stripe_subscription_id": invoice_subscription_id(inv),
        "stripe_payment_intent_id": pis[-1] if pis else None,
        "stripe_charge_id": obj_id(inv.get("charge")),
        "status": _str(inv.get("status"), 32),
        "billing_reason": _str(inv.get("billing_reason"), 64),
        "currency": read_currency(inv),
        "amount_due": read_amount(inv, "amount_due") or 0,
        "amount_paid": read_amount(inv, "amount_paid") or 0,
        "attempt_count": read_count(inv, "attempt_count") or 0,
        "next_payment_attempt": ts(inv.get("next_payment_attempt")),
        "period_start": ts(period.get("start")) or ts(inv.get("period_start")),
        "period_end": ts(period.get("end")) or ts(inv.get("period_end")),
        "stripe_price_id": _line_price(line) if line else None,
        "hosted_invoice_url": _str(inv.get("hosted_invoice_url"), 2000),
        "paid_at": ts(transitions.get("paid_at")),
        "stripe_created": ts(inv.get("created")),
    }
    row = _get(session, Invoice, Invoice.stripe_invoice_id, iid)
    created = row is None
    changed = False
    if row is None:
        row = Invoice(stripe_invoice_id=iid, currency=values["currency"])
        _remember(session, row, iid)
    if created or _wins(row, src, _invoice_rank(values.get), _invoice_rank(lambda k: getattr(row, k))):
        changed = _set(
            row,
            values,
            links=(
                "stripe_customer_id",
                "stripe_subscription_id",
                "stripe_payment_intent_id",
                "stripe_charge_id",
                "hosted_invoice_url",
                "paid_at",
                "stripe_created",
            ),
        )
        _stamp(row, src)
        outcome = _outcome(created, changed)
    else:
        outcome = "stale"
    if failed and (row.payment_failed_at is None or src.at < row.payment_failed_at):
        row.payment_failed_at = src.at
        changed = True
    if (
        row.payment_failed_at is None
        and src.fetched
        and row.status in UNPAID_INVOICE
        and row.attempt_count > 0
        and row.amount_paid < row.amount_due
    ):
        # A fetched invoice that Stripe already tried and failed to collect: the failure happened
        # at finalization at the latest (the webhook that would have said when was missed).
        row.payment_failed_at = ts(transitions.get("finalized_at")) or row.stripe_created or src.at
        changed = True
    session.flush()
    if created or changed:
        link_invoice(session, row)
    if outcome == "stale" and changed:
        outcome = "updated"
    return outcome


def link_invoice_payment(session: Session, ip: Obj, src: Source) -> str:
    """``invoice_payment.paid`` (2025-03-31+): the only link from an invoice to its payment intent."""
    iid = obj_id(ip.get("invoice"))
    payment = _map(ip.get("payment"))
    pi = obj_id(payment.get("payment_intent"))
    charge = obj_id(payment.get("charge"))
    if iid is None or (pi is None and charge is None):
        return "ignored"
    if ip.get("status") not in (None, "paid"):
        return "ignored"
    row = _get(session, Invoice, Invoice.stripe_invoice_id, iid)
    created = row is None
    if row is None:
        # The invoice's own events may come later; they fill in the rest (this row has no state yet).
        row = Invoice(stripe_invoice_id=iid, currency=read_currency(ip))
        _remember(session, row, iid)
    changed = _set(
        row,
        {"stripe_payment_intent_id": pi, "stripe_charge_id": charge},
        links=("stripe_payment_intent_id", "stripe_charge_id"),
    )
    session.flush()
    if created or changed:
        link_invoice(session, row)
    return _outcome(created, changed)


def link_invoice(session: Session, inv: Invoice) -> None:
    """Pass reader links between the invoice and its subscription/customer; re-derive payments."""
    if inv.stripe_customer_id:
        cus = _get(session, StripeCustomer, StripeCustomer.stripe_customer_id, inv.stripe_customer_id)
        if cus is not None:
            _fill(inv, "reader_id", cus.reader_id)
    sub = None
    if inv.stripe_subscription_id:
        sub = _get(session, Subscription, Subscription.stripe_subscription_id, inv.stripe_subscription_id)
        if sub is not None:
            _fill(inv, "reader_id", sub.reader_id)
            refresh_payment_failed(session, sub)
    if inv.status in ("paid", "void"):
        _withdraw_pending(session, f"payment_failed:{inv.stripe_invoice_id}", f"invoice {inv.status}")
    relink_payments(
        session,
        invoice_id=inv.stripe_invoice_id,
        payment_intent_id=inv.stripe_payment_intent_id,
        charge_id=inv.stripe_charge_id,
    )


# --- payments --------------------------------------------------------------------------------


def _charge_rank(get: Callable[[str], Any]) -> tuple[int]:
    return (int(get("charge_refunded_minor") or 0),)


def _recurring_hint(obj: Obj) -> bool:
    description = obj.get("description")
    return isinstance(description, str) and description.startswith("Subscription")


def _balance(value: Any) -> dict[str, Any]:
    """Fee, net and currency when the balance transaction is expanded; else only its id."""
    out: dict[str, Any] = {"stripe_balance_transaction_id": obj_id(value)}
    if isinstance(value, Mapping) and value.get("fee") is not None:
        out.update(
            fee_minor=read_amount(value, "fee", signed=True),
            net_minor=read_amount(value, "net", signed=True) or 0,
            balance_currency=read_currency(value),
        )
    return out


def upsert_charge(session: Session, ch: Obj, src: Source) -> str:
    """A successful charge -> one ``payments`` row (keyed by charge id). Failed or pending charges,
    and uncaptured authorizations, are not payments."""
    cid = obj_id(ch)
    if cid is None:
        raise ValueError("charge without an id")
    row = _get(session, Payment, Payment.stripe_charge_id, cid)
    if ch.get("status") != "succeeded" or ch.get("captured") is False:
        return "ignored" if row is None else "unchanged"
    billing = _map(ch.get("billing_details"))
    meta = _meta(ch)
    captured, charged = read_amount(ch, "amount_captured"), read_amount(ch, "amount")
    amount = captured or charged or 0
    values: dict[str, Any] = {
        "stripe_payment_intent_id": obj_id(ch.get("payment_intent")),
        "stripe_customer_id": obj_id(ch.get("customer")),
        "stripe_invoice_id": obj_id(ch.get("invoice")),
        "amount_minor": amount,
        "currency": read_currency(ch),
        "charge_refunded_minor": read_amount(ch, "amount_refunded") or 0,
        "paid_at": ts(ch.get("created")) or src.at,
        "email": _str(billing.get("email"), 320) or _str(ch.get("receipt_email"), 320),
        "name": _str(billing.get("name"), 200),
        **_balance(ch.get("balance_transaction")),
    }
    _unless_erased(session, ch, values)
    created = row is None
    if row is None:
        row = Payment(stripe_charge_id=cid, kind="donation", amount_minor=values["amount_minor"])
        _remember(session, row, cid)
    if not created and not _wins(row, src, _charge_rank(values.get), _charge_rank(lambda k: getattr(row, k))):
        _payment_hints(session, row, meta, _recurring_hint(ch))
        # Even a stale state tells when its refunded amount was reached.
        _charge_refunds(session, ch, values, src)
        relink_payment(session, row)
        return "stale"
    changed = _set(
        row,
        values,
        links=(
            "stripe_payment_intent_id",
            "stripe_customer_id",
            "stripe_invoice_id",
            "email",
            "name",
            "stripe_balance_transaction_id",
            "fee_minor",
            "net_minor",
            "balance_currency",
        ),
    )
    _stamp(row, src)
    changed = _payment_hints(session, row, meta, _recurring_hint(ch)) or changed
    session.flush()
    _charge_refunds(session, ch, values, src)
    changed = relink_payment(session, row) or changed
    return _outcome(created, changed)


def charge_refund_id(charge_id: str, amount_refunded: int) -> str:
    """The key of a charge-only refund row: the charge and the refunded amount it stands for."""
    return f"{charge_id}:refunded:{amount_refunded}"


def _charge_refunds(session: Session, ch: Obj, values: Mapping[str, Any], src: Source) -> None:
    """The refunds a charge state tells of: the refund objects older API versions embed (before
    2022-11-15), and that ``amount_refunded`` was refunded by ``src.at`` (a charge-only refund row,
    whose amount ``refresh_charge_refunds`` derives; the earliest source gives its date)."""
    for embedded in _map(ch.get("refunds")).get("data") or []:
        if isinstance(embedded, Mapping) and embedded.get("object") == "refund":
            upsert_refund(session, embedded, src)
    cid = obj_id(ch)
    level = values["charge_refunded_minor"]
    if cid is None or level <= 0:
        return
    key = charge_refund_id(cid, level)
    row = _get(session, Refund, Refund.stripe_refund_id, key)
    if row is None:
        row = Refund(
            stripe_refund_id=key,
            stripe_charge_id=cid,
            stripe_payment_intent_id=values["stripe_payment_intent_id"],
            amount_minor=0,
            currency=values["currency"],
            status="succeeded",
            stripe_created=src.at,
            charge_amount_refunded=level,
        )
        _remember(session, row, key)
    elif (src.at, src.event_id) >= (row.stripe_created, row.synced_event_id or ""):
        return
    row.stripe_created = src.at
    _stamp(row, src)


def _payment_hints(session: Session, row: Payment, meta: Mapping[str, Any], recurring: bool) -> bool:
    changed = _fill(row, "kind_hint", _kind(meta.get("kind")))
    changed = _fill(row, "campaign", _str(meta.get("campaign"), 100)) or changed
    changed = _fill(row, "reader_id", _reader_id(session, meta.get("reader"))) or changed
    if recurring and not row.recurring:
        row.recurring = True
        changed = True
    return changed


def upsert_payment_intent(session: Session, pi: Obj, src: Source) -> str:
    """A succeeded payment intent: creates the payment row of its charge if the charge event has not
    come yet, and adds what only the intent knows (its metadata)."""
    pid = obj_id(pi)
    if pid is None:
        raise ValueError("payment intent without an id")
    charge_id = obj_id(pi.get("latest_charge"))
    # Older API versions (and expansion) put the charge objects themselves on the intent.
    embedded = [pi.get("latest_charge"), *(_map(pi.get("charges")).get("data") or [])]
    for ch in embedded:
        if isinstance(ch, Mapping) and ch.get("object") == "charge" and ch.get("status") == "succeeded":
            upsert_charge(session, ch, src)
            charge_id = charge_id or obj_id(ch)
    if pi.get("status") != "succeeded" or charge_id is None:
        relink_payments(session, payment_intent_id=pid)
        return "ignored"
    received, asked = read_amount(pi, "amount_received"), read_amount(pi, "amount")
    row = _get(session, Payment, Payment.stripe_charge_id, charge_id)
    created = row is None
    if row is None:
        amount = received or asked or 0
        row = Payment(
            stripe_charge_id=charge_id,
            kind="donation",
            amount_minor=amount,
            currency=read_currency(pi),
            paid_at=ts(pi.get("created")) or src.at,
            livemode=src.livemode,
        )
        _remember(session, row, charge_id)
    changed = _set(
        row,
        _unless_erased(
            session,
            pi,
            {
                "stripe_payment_intent_id": pid,
                "stripe_customer_id": obj_id(pi.get("customer")),
                "stripe_invoice_id": obj_id(pi.get("invoice")),
                "email": _str(pi.get("receipt_email"), 320),
            },
        ),
        links=("stripe_payment_intent_id", "stripe_customer_id", "stripe_invoice_id", "email"),
    )
    changed = _payment_hints(session, row, _meta(pi), _recurring_hint(pi)) or changed
    session.flush()
    changed = relink_payment(session, row) or changed
    return _outcome(created, changed)


def relink_payments(
    session: Session,
    *,
    customer_id: str | None = None,
    subscription_id: str | None = None,
    invoice_id: str | None = None,
    payment_intent_id: str | None = None,
    charge_id: str | None = None,
    price_id: str | None = None,
) -> None:
    """Mark every payment related to the given ids for ``settle`` to re-derive."""
    conds = []
    if customer_id:
        conds.append(Payment.stripe_customer_id == customer_id)
    if subscription_id:
        conds.append(Payment.stripe_subscription_id == subscription_id)
    if invoice_id:
        conds.append(Payment.stripe_invoice_id == invoice_id)
    if payment_intent_id:
        conds.append(Payment.stripe_payment_intent_id == payment_intent_id)
    if charge_id:
        conds.append(Payment.stripe_charge_id == charge_id)
    if price_id:
        conds.append(Payment.stripe_price_id == price_id)
    if not conds:
        return
    pending = session.info.setdefault(PENDING_RELINK, {})
    for payment in session.scalars(select(Payment).where(or_(*conds)).order_by(Payment.id)):
        pending[payment.id] = payment


PENDING_RELINK = "paywall.webhooks.relink"


def settle(session: Session) -> None:
    """Re-derive each payment marked by ``relink_payments`` once (one object often marks the same
    payment several times). Callers run this after their upserts: the inbox after each handler,
    the reconcile after each page."""
    pending: dict[int, Payment] = session.info.pop(PENDING_RELINK, {})
    for _, payment in sorted(pending.items()):
        relink_payment(session, payment)


def _find_invoice(session: Session, p: Payment) -> Invoice | None:
    if p.stripe_invoice_id:
        found = _get(session, Invoice, Invoice.stripe_invoice_id, p.stripe_invoice_id)
        if found is not None:
            return found
    conds = [Invoice.stripe_charge_id == p.stripe_charge_id]
    if p.stripe_payment_intent_id:
        conds.append(Invoice.stripe_payment_intent_id == p.stripe_payment_intent_id)
    return session.scalar(select(Invoice).where(or_(*conds)).order_by(Invoice.id).limit(1))


def _find_checkout(session: Session, p: Payment) -> CheckoutSession | None:
    conds = []
    if p.stripe_checkout_session_id:
        conds.append(CheckoutSession.stripe_checkout_session_id == p.stripe_checkout_session_id)
    if p.stripe_payment_intent_id:
        conds.append(CheckoutSession.stripe_payment_intent_id == p.stripe_payment_intent_id)
    if p.stripe_invoice_id:
        conds.append(CheckoutSession.stripe_invoice_id == p.stripe_invoice_id)
    if not conds:
        return None
    return session.scalar(select(CheckoutSession).where(or_(*conds)).order_by(CheckoutSession.id).limit(1))


def relink_payment(session: Session, p: Payment) -> bool:
    """Derive a payment's links, reader, kind and money facts from the stored rows (order-free)."""
    before = _snapshot(p)
    inv = _find_invoice(session, p)
    if inv is not None:
        _fill(p, "stripe_invoice_id", inv.stripe_invoice_id)
        _fill(p, "stripe_subscription_id", inv.stripe_subscription_id)
        _fill(p, "stripe_customer_id", inv.stripe_customer_id)
        if inv.stripe_price_id is not None:
            # What the invoice billed wins over the subscription's price, even one filled before.
            p.stripe_price_id = inv.stripe_price_id
        _fill(p, "reader_id", inv.reader_id)
        p.recurring = p.recurring or inv.stripe_subscription_id is not None
    cs = _find_checkout(session, p)
    if cs is not None:
        _fill(p, "stripe_checkout_session_id", cs.stripe_checkout_session_id)
        _fill(p, "reader_id", cs.reader_id)
        _fill(p, "campaign", cs.campaign)
        _fill(p, "email", cs.email)
        _fill(p, "name", cs.name)
        _fill(p, "stripe_subscription_id", cs.stripe_subscription_id)
        _fill(p, "stripe_customer_id", cs.stripe_customer_id)
    sub = None
    if p.stripe_subscription_id:
        sub = _get(session, Subscription, Subscription.stripe_subscription_id, p.stripe_subscription_id)
        p.recurring = True
    if sub is not None:
        _fill(p, "reader_id", sub.reader_id)
        _fill(p, "campaign", sub.campaign)
        _fill(p, "stripe_price_id", sub.stripe_price_id)
    _refresh_plan(session, p, sub)
    if p.stripe_customer_id:
        cus = _get(session, StripeCustomer, StripeCustomer.stripe_customer_id, p.stripe_customer_id)
        if cus is not None:
            _fill(p, "reader_id", cus.reader_id)
            _fill(p, "email", cus.email)
            _fill(p, "name", cus.name)
    kind = (
        p.kind_hint
        or (cs.kind if cs is not None and cs.kind in KINDS else None)
        or (sub.kind if sub is not None else None)
        or ("subscription" if p.recurring or inv is not None else "donation")
    )
    p.kind = kind
    _refresh_money(session, p)
    changed = _snapshot(p) != before
    if p.kind == "donation":
        _queue_receipt(session, p)
    elif before["kind"] == "donation":
        _withdraw_pending(session, f"receipt:{p.stripe_charge_id}", "not a donation")
    return changed


def _refresh_plan(session: Session, p: Payment, sub: Subscription | None) -> None:
    """The plan a payment paid for: the name of its own price (``stripe_prices``), else its
    subscription's plan when that is still the same price. Never the plan the subscription moved
    to later; left as it is when neither is known (rows synced before ``stripe_prices`` existed)."""
    if p.stripe_price_id is None:
        return
    price = _get(session, StripePrice, StripePrice.stripe_price_id, p.stripe_price_id)
    if price is not None and price.plan is not None:
        p.plan = price.plan
    elif sub is not None and sub.stripe_price_id == p.stripe_price_id and sub.plan is not None:
        p.plan = sub.plan


def _snapshot(p: Payment) -> dict[str, Any]:
    return {c: getattr(p, c) for c in DERIVED_PAYMENT_COLUMNS}


DERIVED_PAYMENT_COLUMNS = (
    "stripe_invoice_id",
    "stripe_subscription_id",
    "stripe_customer_id",
    "stripe_checkout_session_id",
    "stripe_price_id",
    "reader_id",
    "kind",
    "recurring",
    "plan",
    "campaign",
    "email",
    "name",
    "refunded_minor",
    "dispute_status",
    "disputed_minor",
    "dispute_fee_minor",
)

CLOSED_DISPUTE_WON = ("won", "warning_closed", "prevented")


def _dispute_lost(d: Dispute) -> int:
    if d.status in CLOSED_DISPUTE_WON or d.funds_reinstated_at is not None:
        return 0
    if d.status == "lost" or d.funds_withdrawn_at is not None:
        return d.amount_minor
    return 0


def _counted(r: Refund) -> bool:
    return r.status is None or r.status in COUNTED_REFUND_STATUSES


def refresh_charge_refunds(refunds: Iterable[Refund], amount_refunded: int) -> None:
    """Give each charge-only refund row of one charge its amount, so that refund objects and
    charge-only rows together count the charge's refunded amount exactly once, each part dated.

    The charge-only total is what the newest charge state's ``amount_refunded`` says beyond the
    counted refund objects. Each charge state is a dated step (by ``t`` the charge had ``X``
    refunded); a step's row gets what, by then, no refund object made before it accounts for.
    """
    rows = list(refunds)
    objects = [r for r in rows if r.charge_amount_refunded is None and _counted(r)]
    steps = sorted(
        (r for r in rows if r.charge_amount_refunded is not None),
        key=lambda r: (r.stripe_created, r.charge_amount_refunded or 0),
    )
    unknown = max(0, amount_refunded - sum(r.amount_minor for r in objects))
    reached = counted = 0
    for step in steps:
        reached = max(reached, step.charge_amount_refunded or 0)
        known = sum(r.amount_minor for r in objects if r.stripe_created <= step.stripe_created)
        now = min(unknown, max(counted, reached - known))
        if step.amount_minor != now - counted:
            step.amount_minor = now - counted
        counted = now


def _refresh_money(session: Session, p: Payment) -> None:
    refunds = list(session.scalars(select(Refund).where(Refund.stripe_charge_id == p.stripe_charge_id)))
    refresh_charge_refunds(refunds, p.charge_refunded_minor)
    refunded = sum(r.amount_minor for r in refunds if _counted(r))
    p.refunded_minor = min(p.amount_minor, refunded)
    disputes = list(
        session.scalars(
            select(Dispute)
            .where(Dispute.stripe_charge_id == p.stripe_charge_id)
            .order_by(Dispute.opened_at, Dispute.id)
        )
    )
    if disputes:
        p.dispute_status = disputes[-1].status
        p.disputed_minor = min(p.amount_minor, sum(_dispute_lost(d) for d in disputes))
        p.dispute_fee_minor = sum(d.fee_minor or 0 for d in disputes)


def _reader_email(session: Session, reader_id: int | None) -> str | None:
    if reader_id is None:
        return None
    return session.scalar(select(Reader.email).where(Reader.id == reader_id))


def _external_id(session: Session, reader_id: int | None) -> str | None:
    if reader_id is None:
        return None
    return session.scalar(select(Reader.external_id).where(Reader.id == reader_id))


def _queue_receipt(session: Session, p: Payment) -> None:
    """Queue the donor's receipt once per charge; refresh it while it is still unsent."""
    to_email = p.email or _reader_email(session, p.reader_id)
    if not to_email:
        return
    key = f"receipt:{p.stripe_charge_id}"
    data = {
        "stripe_charge_id": p.stripe_charge_id,
        "amount_minor": p.amount_minor,
        "currency": p.currency,
        "campaign": p.campaign,
        "name": p.name,
        "recurring": p.recurring,
        "paid_at": clock.isoformat(p.paid_at),
        "reader": _external_id(session, p.reader_id),
    }
    pending = session.scalar(select(OutboxMessage).where(OutboxMessage.dedupe_key == key))
    if pending is None:
        queue.enqueue(
            session,
            kind="donation_receipt",
            dedupe_key=key,
            to_email=to_email,
            reader_id=p.reader_id,
            data=data,
        )
    elif pending.status == "pending" and (pending.data != data or pending.to_email != to_email):
        pending.data = data
        pending.to_email = to_email
        pending.reader_id = p.reader_id


def _withdraw_pending(session: Session, key: str, reason: str) -> None:
    """A queued message that no longer applies (e.g. the invoice got paid) is skipped, if unsent."""
    msg = session.scalar(select(OutboxMessage).where(OutboxMessage.dedupe_key == key))
    if msg is not None and msg.status == "pending":
        msg.status = "skipped"
        msg.error = reason


# --- refunds and disputes --------------------------------------------------------------------

REFUND_STATUS_RANK = {"pending": 0, "requires_action": 0, "succeeded": 1, "failed": 1, "canceled": 1}


def upsert_refund(session: Session, re: Obj, src: Source) -> str:
    """A refund -> ``refunds``; the payment's refunded amount is re-derived."""
    rid = obj_id(re)
    if rid is None:
        raise ValueError("refund without an id")
    values: dict[str, Any] = {
        "stripe_charge_id": obj_id(re.get("charge")),
        "stripe_payment_intent_id": obj_id(re.get("payment_intent")),
        "stripe_balance_transaction_id": obj_id(re.get("balance_transaction")),
        "amount_minor": read_amount(re, "amount") or 0,
        "currency": read_currency(re),
        "status": _str(re.get("status"), 32),
        "reason": _str(re.get("reason"), 64),
        "stripe_created": ts(re.get("created")) or src.at,
    }
    rank: Callable[[Callable[[str], Any]], tuple[int]] = lambda get: (  # noqa: E731
        REFUND_STATUS_RANK.get(get("status") or "", 0),
    )
    row = _get(session, Refund, Refund.stripe_refund_id, rid)
    created = row is None
    if row is None:
        row = Refund(stripe_refund_id=rid, **values)
        _remember(session, row, rid)
        changed = True
    elif _wins(row, src, rank(values.get), rank(lambda k: getattr(row, k))):
        changed = _set(
            row,
            values,
            links=("stripe_charge_id", "stripe_payment_intent_id", "stripe_balance_transaction_id"),
        )
    else:
        return "stale"
    _stamp(row, src)
    session.flush()
    if created or changed:
        relink_payments(
            session, charge_id=row.stripe_charge_id, payment_intent_id=row.stripe_payment_intent_id
        )
    return _outcome(created, changed)


DISPUTE_STATUS_RANK = {
    "warning_needs_response": 0,
    "needs_response": 0,
    "warning_under_review": 1,
    "under_review": 1,
    "won": 2,
    "lost": 2,
    "warning_closed": 2,
    "prevented": 2,
}


def upsert_dispute(session: Session, dp: Obj, src: Source) -> str:
    """A dispute -> ``disputes`` (fee from its balance transactions); the payment's dispute facts follow."""
    did = obj_id(dp)
    if did is None:
        raise ValueError("dispute without an id")
    bts = [bt for bt in dp.get("balance_transactions") or [] if isinstance(bt, Mapping)]
    status = _str(dp.get("status"), 32) or "needs_response"
    withdrawn = [ts(bt.get("created")) for bt in bts if (read_amount(bt, "amount", signed=True) or 0) < 0]
    reinstated = [ts(bt.get("created")) for bt in bts if (read_amount(bt, "amount", signed=True) or 0) > 0]
    etype = src.event_type
    values: dict[str, Any] = {
        "stripe_charge_id": obj_id(dp.get("charge")),
        "stripe_payment_intent_id": obj_id(dp.get("payment_intent")),
        "amount_minor": read_amount(dp, "amount") or 0,
        "currency": read_currency(dp),
        "fee_minor": sum(read_amount(bt, "fee", signed=True) or 0 for bt in bts) if bts else None,
        "status": status,
        "reason": _str(dp.get("reason"), 64),
        "opened_at": ts(dp.get("created")) or src.at,
    }

    def rank(get: Callable[[str], Any]) -> tuple[int, ...]:
        return (DISPUTE_STATUS_RANK.get(get("status") or "", 0), 1 if get("funds_reinstated_at") else 0)

    row = _get(session, Dispute, Dispute.stripe_dispute_id, did)
    created = row is None
    changed = False
    if row is None:
        row = Dispute(stripe_dispute_id=did, **values)
        _remember(session, row, did)
        changed = True
    old_rank = rank(lambda k: getattr(row, k))
    new_values = dict(values)
    new_values["funds_reinstated_at"] = min(filter(None, reinstated), default=None) or (
        src.at if etype == "charge.dispute.funds_reinstated" else None
    )
    if created or _wins(row, src, rank(new_values.get), old_rank):
        changed = (
            _set(row, values, links=("stripe_charge_id", "stripe_payment_intent_id", "fee_minor")) or changed
        )
        _stamp(row, src)
        outcome = _outcome(created, changed)
    else:
        outcome = "stale"
    # Funds movements and the close are facts: the earliest time any event shows them, so the
    # result does not depend on which event was processed first (a stale event still counts).
    changed = _earliest(row, "funds_withdrawn_at", min(filter(None, withdrawn), default=None)) or changed
    if etype == "charge.dispute.funds_withdrawn":
        changed = _earliest(row, "funds_withdrawn_at", src.at) or changed
    changed = _earliest(row, "funds_reinstated_at", new_values["funds_reinstated_at"]) or changed
    if DISPUTE_STATUS_RANK.get(status) == 2:
        # Stripe gives no close time: the event that first shows the dispute closed is the truth.
        changed = _earliest(row, "closed_at", src.at) or changed
    session.flush()
    if created or changed:
        relink_payments(session, charge_id=row.stripe_charge_id)
    return "updated" if outcome == "stale" and changed else outcome


# --- Checkout Sessions -----------------------------------------------------------------------


def checkout_kind(cs: Obj) -> str:
    """``donation`` for a donate button or ``metadata.kind=donation``; a plan otherwise in
    subscription mode, and a donation for any other one-time payment."""
    meta = _meta(cs)
    explicit = _kind(meta.get("kind"))
    if explicit:
        return explicit
    if cs.get("submit_type") == "donate":
        return "donation"
    return "subscription" if cs.get("mode") == "subscription" else "donation"


def upsert_checkout_session(session: Session, cs: Obj, src: Source) -> str:
    """A Checkout Session -> ``checkout_sessions``; its reader and campaign reach everything it paid for."""
    csid = obj_id(cs)
    if csid is None:
        raise ValueError("checkout session without an id")
    details = _map(cs.get("customer_details"))
    meta = _meta(cs)
    status = _str(cs.get("status"), 16)
    values: dict[str, Any] = {
        "mode": _str(cs.get("mode"), 16),
        "status": status,
        "payment_status": _str(cs.get("payment_status"), 32),
        "reader_id": _reader_id(session, cs.get("client_reference_id") or meta.get("reader")),
        "stripe_customer_id": obj_id(cs.get("customer")),
        "stripe_subscription_id": obj_id(cs.get("subscription")),
        "stripe_payment_intent_id": obj_id(cs.get("payment_intent")),
        "stripe_invoice_id": obj_id(cs.get("invoice")),
        "kind": checkout_kind(cs),
        "campaign": _str(meta.get("campaign"), 100),
        "email": _str(details.get("email"), 320) or _str(cs.get("customer_email"), 320),
        "name": _str(details.get("name"), 200),
        "amount_total": read_amount(cs, "amount_total"),
        "currency": read_currency(cs, required=False),
    }
    _unless_erased(session, cs, values)

    def rank(get: Callable[[str], Any]) -> tuple[int, int]:
        return (
            0 if get("status") in (None, "open") else 1,
            1 if get("payment_status") in ("paid", "no_payment_required") else 0,
        )

    row = _get(session, CheckoutSession, CheckoutSession.stripe_checkout_session_id, csid)
    created = row is None
    if row is None:
        row = CheckoutSession(stripe_checkout_session_id=csid)
        _remember(session, row, csid)
    # Stripe gives no completion time: the earliest event that shows the session complete (a
    # stale one too), so the first-processed event does not decide it.
    completed = status == "complete" and _earliest(row, "completed_at", src.at)
    if not created and not _wins(row, src, rank(values.get), rank(lambda k: getattr(row, k))):
        return "updated" if completed else "stale"
    changed = _set(
        row,
        values,
        links=(
            "reader_id",
            "stripe_customer_id",
            "stripe_subscription_id",
            "stripe_payment_intent_id",
            "stripe_invoice_id",
            "campaign",
            "email",
            "name",
        ),
    )
    _stamp(row, src)
    session.flush()
    if created or changed:
        link_checkout(session, row)
    changed = changed or completed
    return _outcome(created, changed)


def link_checkout(session: Session, cs: CheckoutSession) -> None:
    """The link that often arrives last: give the session's reader to its customer and subscription."""
    if cs.stripe_customer_id and cs.reader_id is not None:
        cus = _customer_stub(session, cs.stripe_customer_id)
        if _fill(cus, "reader_id", cs.reader_id):
            link_customer(session, cus)
    if cs.stripe_subscription_id:
        sub = _get(session, Subscription, Subscription.stripe_subscription_id, cs.stripe_subscription_id)
        if sub is not None:
            link_subscription(session, sub)
    if cs.stripe_invoice_id:
        inv = _get(session, Invoice, Invoice.stripe_invoice_id, cs.stripe_invoice_id)
        if inv is not None:
            _fill(inv, "reader_id", cs.reader_id)
    relink_payments(
        session,
        payment_intent_id=cs.stripe_payment_intent_id,
        invoice_id=cs.stripe_invoice_id,
        subscription_id=cs.stripe_subscription_id,
    )


# --- balance transactions (fees; reconcile only) ---------------------------------------------


def apply_balance_transaction(session: Session, bt: Obj) -> str:
    """Fees and net from a balance transaction: onto its payment (charges) or dispute."""
    source = obj_id(bt.get("source"))
    if source is None or bt.get("fee") is None:
        return "ignored"
    fee = read_amount(bt, "fee", signed=True) or 0
    if bt.get("type") in ("charge", "payment"):
        p = _get(session, Payment, Payment.stripe_charge_id, source)
        if p is None:
            return "ignored"
        changed = _set(
            p,
            {
                "stripe_balance_transaction_id": obj_id(bt),
                "fee_minor": fee,
                "net_minor": read_amount(bt, "net", signed=True) or 0,
                "balance_currency": read_currency(bt),
            },
        )
        return "updated" if changed else "unchanged"
    if source.startswith("dp_"):
        d = _get(session, Dispute, Dispute.stripe_dispute_id, source)
        if d is None:
            return "ignored"
        # A dispute has one fee transaction; its reinstatement may refund the fee (negative fee).
        d.fee_minor = fee if d.fee_minor is None else d.fee_minor
        relink_payments(session, charge_id=d.stripe_charge_id)
        return "unchanged"
    return "ignored"


def queue_trial_ending(session: Session, sub_obj: Obj) -> str:
    """``trial_will_end``: queue one notice per trial end, unless the trial is already over."""
    sid = obj_id(sub_obj)
    trial_end = sub_obj.get("trial_end")
    if sid is None or not isinstance(trial_end, int):
        return "ignored"
    sub = _get(session, Subscription, Subscription.stripe_subscription_id, sid)
    if sub is None or sub.status != "trialing":
        return "ignored"
    to_email = None
    if sub.stripe_customer_id:
        cus = _get(session, StripeCustomer, StripeCustomer.stripe_customer_id, sub.stripe_customer_id)
        to_email = cus.email if cus is not None else None
    to_email = to_email or _reader_email(session, sub.reader_id)
    return queue.enqueue(
        session,
        kind="trial_ending",
        dedupe_key=f"trial_ending:{sid}:{trial_end}",
        to_email=to_email,
        reader_id=sub.reader_id,
        data={
            "stripe_subscription_id": sid,
            "trial_end": clock.isoformat(ts(trial_end)),
            "plan": sub.plan,
            "amount_minor": sub.amount_minor,
            "currency": sub.currency,
            "interval": sub.interval,
            "reader": _external_id(session, sub.reader_id),
        },
    )


def queue_payment_failed(session: Session, inv_obj: Obj) -> str:
    """``invoice.payment_failed``: queue one notice per invoice, unless it has been paid since."""
    iid = obj_id(inv_obj)
    if iid is None:
        return "ignored"
    inv = _get(session, Invoice, Invoice.stripe_invoice_id, iid)
    if inv is None or inv.status not in UNPAID_INVOICE:
        return "ignored"
    session.flush()
    # The mailer renders it again from the rows at send time (queue.refresh_before_send).
    to_email, reader_id, data = queue.payment_failed_notice(session, inv)
    # The invoice's own address is the last resort, and never an erased person's.
    invoice_email = _unless_erased(session, inv_obj, {"email": _str(inv_obj.get("customer_email"), 320)})
    return queue.enqueue(
        session,
        kind="payment_failed",
        dedupe_key=f"payment_failed:{iid}",
        to_email=to_email or invoice_email["email"],
        reader_id=reader_id,
        data=data,
    )
