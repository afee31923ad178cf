"""Derived facts: what the sync recomputes from the stored rows after every change, so they do not
depend on the order the inputs arrived in (rule 3 of ``ordering``).

A payment's kind, links and reader; its refunded amount (the sum of its counted refunds, at most
its amount); the charge-only part of its refunds (what the charge's ``amount_refunded`` says beyond
its refund objects, dated by the charge state that first showed it: see
``refresh_charge_refunds``); its dispute state (lost amount: the dispute amount when lost or while
funds are withdrawn, 0 when won or reinstated); a subscription's ``payment_failed_at`` (the
earliest first failure among its invoices that are still unpaid); a payment's price and plan (the
price of its invoice's service line, which wins over the subscription's current price, else the
subscription's; the plan is that price's name in ``stripe_prices``, kept newest-wins from every
state that shows the price, stale ones too), so a payment keeps the plan it paid for after an
upgrade.

An upsert that changes a row marks the payments it may bear on (``relink_payments``); ``settled``
wraps a group of upserts and re-derives each marked payment once at its end.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from paywall.db.statements import one_of
from paywall.models import (
    CheckoutSession,
    Dispute,
    Invoice,
    OutboxMessage,
    Payment,
    Refund,
    StripeCustomer,
    StripePrice,
    Subscription,
)
from paywall.models.billing import COUNTED_REFUND_STATUSES
from paywall.webhooks.sync.fields import APPEAL_COLUMNS
from paywall.webhooks.sync.notices import UNPAID_INVOICE, queue_receipt, withdraw_pending
from paywall.webhooks.sync.ordering import fill
from paywall.webhooks.sync.rows import READER_IDS, ROW_CACHE, find_row

KINDS = ("subscription", "donation")
PENDING_RELINK = "paywall.webhooks.relink"
PENDING_FAILED = "paywall.webhooks.payment_failed"


def kind_of(value: Any) -> str | None:
    """``value`` when it names a payment kind, else None."""
    return value if value in KINDS else None


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
    """Mark every payment related to the given ids for ``settle`` to re-derive.

    Only the ids are noted here: ``settle`` finds the payments they name in one query for the
    whole group of upserts, where a query per call cost a statement per upsert (and one object
    often names the same payments several times)."""
    given = {
        "stripe_customer_id": customer_id,
        "stripe_subscription_id": subscription_id,
        "stripe_invoice_id": invoice_id,
        "stripe_payment_intent_id": payment_intent_id,
        "stripe_charge_id": charge_id,
        "stripe_price_id": price_id,
    }
    pending: dict[str, set[str]] = session.info.setdefault(PENDING_RELINK, {})
    for column, value in given.items():
        if value:
            pending.setdefault(column, set()).add(value)


# Links waiting for ``settle``: step name -> (the batched step, Stripe id -> row). Steps run in
# the order of LINK_STEPS: a customer's reader reaches its subscriptions before a subscription
# passes its reader on to its invoices.
PENDING_LINKS = "paywall.webhooks.links"
LINK_STEPS = ("customer", "subscription")
LinkStep = Callable[[Session, dict[str, Any]], None]


def defer_link(session: Session, step: str, key: str, row: Any, link: LinkStep) -> None:
    """Have ``settle`` run ``link`` once for every row marked with ``step`` in the group: the
    reverse look-ups a link needs (a customer's subscriptions, a subscription's Checkout Session)
    are then one query for the whole batch instead of one per event."""
    pending: dict[str, tuple[LinkStep, dict[str, Any]]] = session.info.setdefault(PENDING_LINKS, {})
    pending.setdefault(step, (link, {}))[1][key] = row


def _settle_links(session: Session) -> None:
    pending: dict[str, tuple[LinkStep, dict[str, Any]]] = session.info.pop(PENDING_LINKS, {})
    for step in LINK_STEPS:
        if step in pending:
            link, rows = pending[step]
            link(session, rows)


def settle(session: Session) -> None:
    """Run the deferred links (``defer_link``), recompute the marked subscriptions'
    ``payment_failed_at``, then re-derive, once each, the payments ``relink_payments`` marked,
    found in one query.

    Link columns are never cleared (``ordering`` rule 2), so a payment a mark named then still
    matches now; a payment stored since that also matches is re-derived too, which changes
    nothing that its own derivation would not."""
    _settle_links(session)
    _settle_payment_failed(session)
    pending: dict[str, set[str]] = session.info.pop(PENDING_RELINK, {})
    conds = [
        one_of(session, getattr(Payment, column), sorted(values))
        for column, values in sorted(pending.items())
    ]
    if not conds:
        return
    payments = list(session.scalars(select(Payment).where(or_(*conds)).order_by(Payment.id)))
    session.info[MONEY_ROWS] = _money_rows(session, {p.stripe_charge_id for p in payments})
    session.info[INVOICES] = _invoices(session, payments)
    # The invoice ids relinking will fill in name Checkout Sessions too: read them in the same query.
    invoice_ids = {inv.stripe_invoice_id for inv in (_find_invoice(session, p) for p in payments) if inv}
    session.info[CHECKOUTS] = _checkouts(session, payments, invoice_ids)
    session.info[RECEIPTS] = receipts_of(session, payments)
    try:
        for payment in payments:
            relink_payment(session, payment)
    finally:
        for key in (MONEY_ROWS, CHECKOUTS, INVOICES, RECEIPTS):
            session.info.pop(key, None)


# While settle re-derives a group of payments: charge id -> (its refunds, its disputes), read
# for the whole group in two queries (``_refresh_money`` asked for each payment's own).
MONEY_ROWS = "paywall.webhooks.money_rows"


def _money_rows(session: Session, charge_ids: set[str]) -> dict[str, tuple[list[Refund], list[Dispute]]]:
    rows: dict[str, tuple[list[Refund], list[Dispute]]] = {cid: ([], []) for cid in charge_ids}
    wanted = sorted(charge_ids)
    for start in range(0, len(wanted), 500):
        part = wanted[start : start + 500]
        for refund in session.scalars(select(Refund).where(one_of(session, Refund.stripe_charge_id, part))):
            rows[str(refund.stripe_charge_id)][0].append(refund)
        for dispute in session.scalars(
            select(Dispute)
            .where(one_of(session, Dispute.stripe_charge_id, part))
            .order_by(Dispute.opened_at, Dispute.id)
        ):
            rows[str(dispute.stripe_charge_id)][1].append(dispute)
    return rows


def _forget(session: Session) -> None:
    """Drop the transaction's remembered rows and pending work: after a savepoint rollback they
    would name rows that no longer exist, or old states of rows."""
    session.info.pop(ROW_CACHE, None)
    session.info.pop(READER_IDS, None)
    session.info.pop(PENDING_RELINK, None)
    session.info.pop(PENDING_FAILED, None)
    session.info.pop(PENDING_LINKS, None)


@contextmanager
def settled(session: Session, *, savepoint: bool = True) -> Iterator[None]:
    """Run a group of upserts, ending with their derived facts settled.

    On success ``settle`` runs at the end (inside the savepoint, before it is released). On any
    error the remembered rows and marks are dropped and the error goes on to the caller; with
    ``savepoint`` (the default) the upserts' writes are rolled back first, so the caller's
    transaction goes on (the reconcile retries object by object). Without it the caller must roll
    back the whole transaction on an error: the inbox does, and spares two statements per event."""
    try:
        if savepoint:
            with session.begin_nested():
                yield
                settle(session)
        else:
            yield
            settle(session)
    except BaseException:
        _forget(session)
        raise


# While settle re-derives a group of payments: the invoices that name any of their charges or
# payment intents (``_find_invoice``'s fallback), read in one query, and the ids it covered.
INVOICES = "paywall.webhooks.invoices"


def _invoices(session: Session, payments: list[Payment]) -> tuple[list[Invoice], set[str]]:
    charges = sorted({p.stripe_charge_id for p in payments})
    intents = sorted({p.stripe_payment_intent_id for p in payments if p.stripe_payment_intent_id})
    if not payments or len(charges) + len(intents) > 1000:
        return [], set()  # a very large group: each payment asks for its own
    query = select(Invoice).where(
        or_(
            one_of(session, Invoice.stripe_charge_id, charges),
            one_of(session, Invoice.stripe_payment_intent_id, intents),
        )
    )
    return list(session.scalars(query.order_by(Invoice.id))), {*charges, *intents}


def _find_invoice(session: Session, p: Payment) -> Invoice | None:
    if p.stripe_invoice_id:
        found = find_row(session, Invoice, Invoice.stripe_invoice_id, p.stripe_invoice_id)
        if found is not None:
            return found
    known: tuple[list[Invoice], set[str]] | None = session.info.get(INVOICES)
    intent = p.stripe_payment_intent_id
    if known is not None and p.stripe_charge_id in known[1] and (not intent or intent in known[1]):
        matching = (
            inv
            for inv in known[0]
            if inv.stripe_charge_id == p.stripe_charge_id
            or (intent and inv.stripe_payment_intent_id == intent)
        )
        return next(matching, None)
    conds = [Invoice.stripe_charge_id == p.stripe_charge_id]
    if p.stripe_payment_intent_id:
        conds.append(Invoice.stripe_payment_intent_id == p.stripe_payment_intent_id)
    return session.scalar(select(Invoice).where(or_(*conds)).order_by(Invoice.id).limit(1))


_CHECKOUT_KEYS = (
    ("stripe_checkout_session_id", CheckoutSession.stripe_checkout_session_id),
    ("stripe_payment_intent_id", CheckoutSession.stripe_payment_intent_id),
    ("stripe_invoice_id", CheckoutSession.stripe_invoice_id),
)
# While settle re-derives a group of payments: the Checkout Sessions any of them names, read in
# one query, and the (column, id) pairs that query covered.
CHECKOUTS = "paywall.webhooks.checkouts"


def _checkout_keys(p: Payment) -> set[tuple[str, str]]:
    return {(name, value) for name, _ in _CHECKOUT_KEYS if (value := getattr(p, name))}


def _checkouts(
    session: Session, payments: list[Payment], invoice_ids: set[str]
) -> tuple[list[CheckoutSession], set[tuple[str, str]]]:
    keys = set().union(*(_checkout_keys(p) for p in payments)) if payments else set()
    keys |= {("stripe_invoice_id", i) for i in invoice_ids}
    conds = [
        one_of(session, column, sorted(value for key, value in keys if key == name))
        for name, column in _CHECKOUT_KEYS
    ]
    if not keys:
        return [], keys
    found = list(session.scalars(select(CheckoutSession).where(or_(*conds)).order_by(CheckoutSession.id)))
    return found, keys


def _find_checkout(session: Session, p: Payment) -> CheckoutSession | None:
    """The first Checkout Session (by id) that names the payment's session, intent or invoice."""
    keys = _checkout_keys(p)
    if not keys:
        return None
    known: tuple[list[CheckoutSession], set[tuple[str, str]]] | None = session.info.get(CHECKOUTS)
    if known is not None and keys <= known[1]:
        return next((cs for cs in known[0] if any(getattr(cs, name) == value for name, value in keys)), None)
    conds = [column == value for name, column in _CHECKOUT_KEYS for key, value in keys if key == name]
    return session.scalar(select(CheckoutSession).where(or_(*conds)).order_by(CheckoutSession.id).limit(1))


def relink_payment(session: Session, p: Payment) -> bool:
    """Derive a payment's links, reader, kind, plan and money facts from the stored rows
    (order-free), then queue (or withdraw) its donation receipt. Whether a derived column changed."""
    before = _snapshot(p)
    inv = _find_invoice(session, p)
    if inv is not None:
        fill(p, "stripe_invoice_id", inv.stripe_invoice_id)
        fill(p, "stripe_subscription_id", inv.stripe_subscription_id)
        fill(p, "stripe_customer_id", inv.stripe_customer_id)
        if inv.stripe_price_id is not None:
            # What the invoice billed wins over the subscription's price, even one filled before.
            p.stripe_price_id = inv.stripe_price_id
        fill(p, "reader_id", inv.reader_id)
        p.recurring = p.recurring or inv.stripe_subscription_id is not None
    cs = _find_checkout(session, p)
    if cs is not None:
        fill(p, "stripe_checkout_session_id", cs.stripe_checkout_session_id)
        fill(p, "reader_id", cs.reader_id)
        fill(p, "campaign", cs.campaign)
        for column in APPEAL_COLUMNS:
            fill(p, column, getattr(cs, column))
        fill(p, "email", cs.email)
        fill(p, "name", cs.name)
        fill(p, "stripe_subscription_id", cs.stripe_subscription_id)
        fill(p, "stripe_customer_id", cs.stripe_customer_id)
    sub = None
    if p.stripe_subscription_id:
        sub = find_row(session, Subscription, Subscription.stripe_subscription_id, p.stripe_subscription_id)
        p.recurring = True
    if sub is not None:
        fill(p, "reader_id", sub.reader_id)
        fill(p, "campaign", sub.campaign)
        # Renewals of an attributed subscription count for the appeal that started it.
        for column in APPEAL_COLUMNS:
            fill(p, column, getattr(sub, column))
        fill(p, "stripe_price_id", sub.stripe_price_id)
    _refresh_plan(session, p, sub)
    if p.stripe_customer_id:
        cus = find_row(session, StripeCustomer, StripeCustomer.stripe_customer_id, p.stripe_customer_id)
        if cus is not None:
            fill(p, "reader_id", cus.reader_id)
            fill(p, "email", cus.email)
            fill(p, "name", cus.name)
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
        queue_receipt(session, p)
    elif before["kind"] == "donation":
        known = session.info.get(RECEIPTS)
        # Nothing to withdraw when settle's look-up found no receipt queued for the charge.
        if known is None or known.get(p.stripe_charge_id) is not None:
            withdraw_pending(session, f"receipt:{p.stripe_charge_id}", "not a donation")
    return changed


# While settle re-derives a group of payments: charge id -> its queued receipt (or None), read in
# one query, so a payment that turns out not to be a donation asks again only when one exists.
RECEIPTS = "paywall.webhooks.receipts"


def receipts_of(session: Session, payments: list[Payment]) -> dict[str, OutboxMessage | None]:
    """The receipts queued for these payments' charges, by charge id (None: none queued)."""
    found: dict[str, OutboxMessage | None] = {p.stripe_charge_id: None for p in payments}
    keys = sorted(f"receipt:{cid}" for cid in found)
    for start in range(0, len(keys), 500):
        for msg in session.scalars(
            select(OutboxMessage).where(one_of(session, OutboxMessage.dedupe_key, keys[start : start + 500]))
        ):
            found[msg.dedupe_key.removeprefix("receipt:")] = msg
    return found


def _refresh_plan(session: Session, p: Payment, sub: Subscription | None) -> None:
    """The plan a payment paid for: the name of its own price (``stripe_prices``), else its
    subscription's plan when that is still the same price. Never the plan the subscription moved
    to later; left as it is when neither is known (rows synced before ``stripe_prices`` existed)."""
    if p.stripe_price_id is None:
        return
    price = find_row(session, StripePrice, StripePrice.stripe_price_id, p.stripe_price_id)
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
    *APPEAL_COLUMNS,
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
    known = session.info.get(MONEY_ROWS, {}).get(p.stripe_charge_id)
    if known is not None:
        refunds, disputes = known
    else:
        refunds = list(session.scalars(select(Refund).where(Refund.stripe_charge_id == p.stripe_charge_id)))
        disputes = list(
            session.scalars(
                select(Dispute)
                .where(Dispute.stripe_charge_id == p.stripe_charge_id)
                .order_by(Dispute.opened_at, Dispute.id)
            )
        )
    refresh_charge_refunds(refunds, p.charge_refunded_minor)
    refunded = sum(r.amount_minor for r in refunds if _counted(r))
    p.refunded_minor = min(p.amount_minor, refunded)
    if disputes:
        p.dispute_status = disputes[-1].status
        p.disputed_minor = min(p.amount_minor, sum(_dispute_lost(d) for d in disputes))
        p.dispute_fee_minor = sum(d.fee_minor or 0 for d in disputes)


def refresh_payment_failed(session: Session, sub: Subscription) -> None:
    """Mark the subscription for ``settle`` to recompute its ``payment_failed_at``: once per
    subscription for a whole group of upserts (a renewal's invoice events each asked for it)."""
    session.info.setdefault(PENDING_FAILED, {})[sub.stripe_subscription_id] = sub


def _settle_payment_failed(session: Session) -> None:
    """``payment_failed_at`` of each marked subscription: the earliest first failure among its
    unpaid invoices, for all of them in one query."""
    pending: dict[str, Subscription] = session.info.pop(PENDING_FAILED, {})
    if not pending:
        return
    first: dict[str, dt.datetime | None] = {
        str(sub_id): at
        for sub_id, at in session.execute(
            select(Invoice.stripe_subscription_id, func.min(Invoice.payment_failed_at))
            .where(
                Invoice.stripe_subscription_id.in_(sorted(pending)),
                Invoice.status.in_(UNPAID_INVOICE),
                Invoice.payment_failed_at.is_not(None),
            )
            .group_by(Invoice.stripe_subscription_id)
        )
    }
    for sub_id, sub in pending.items():
        value = first.get(sub_id)
        if value is not None and value.tzinfo is None:  # SQLite aggregates skip the column type
            value = value.replace(tzinfo=dt.UTC)
        if sub.payment_failed_at != value:
            sub.payment_failed_at = value
