"""Stripe charges and payment intents -> ``payments`` (one row per successful charge), and the
fees their balance transactions tell (``paywall stripe sync`` only: webhooks carry just the id)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from paywall.models import Dispute, Payment, Refund
from paywall.webhooks.sync.derived import kind_of, relink_payments
from paywall.webhooks.sync.fields import (
    Obj,
    mapping,
    metadata,
    read_amount,
    read_appeal,
    read_currency,
    read_id,
    read_text,
    read_timestamp,
)
from paywall.webhooks.sync.ordering import Source, assign, fill, outcome_of, stamp, wins
from paywall.webhooks.sync.refunds import upsert_refund
from paywall.webhooks.sync.rows import find_row, reader_named, remember, unless_erased

# Links: never cleared by a newer state that lacks them (rule 2 of ``ordering``).
CHARGE_LINKS = (
    "stripe_payment_intent_id",
    "stripe_customer_id",
    "stripe_invoice_id",
    "email",
    "name",
    "stripe_balance_transaction_id",
    "fee_minor",
    "net_minor",
    "balance_currency",
)


def _charge_rank(get: Callable[[str], Any]) -> tuple[int]:
    return (int(get("charge_refunded_minor") or 0),)


def _recurring_hint(obj: Obj) -> bool:
    """Whether Stripe's description says a subscription made the payment."""
    description = obj.get("description")
    return isinstance(description, str) and description.startswith("Subscription")


def _balance(value: Any) -> dict[str, Any]:
    """Fee, net and currency when the balance transaction is expanded; else only its id."""
    out: dict[str, Any] = {"stripe_balance_transaction_id": read_id(value)}
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
    cid = read_id(ch)
    if cid is None:
        raise ValueError("charge without an id")
    row = find_row(session, Payment, Payment.stripe_charge_id, cid)
    if ch.get("status") != "succeeded" or ch.get("captured") is False:
        return "ignored" if row is None else "unchanged"
    meta = metadata(ch)
    values = _charge_values(session, ch, src)
    created = row is None
    if row is None:
        row = Payment(stripe_charge_id=cid, kind="donation", amount_minor=values["amount_minor"])
        remember(session, row, cid)
    if not created and not wins(row, src, _charge_rank(values.get), _charge_rank(lambda k: getattr(row, k))):
        _payment_hints(session, row, meta, _recurring_hint(ch))
        # Even a stale state tells when its refunded amount was reached.
        _charge_refunds(session, ch, values, src)
        relink_payments(session, charge_id=cid)
        return "stale"
    changed = assign(row, values, links=CHARGE_LINKS)
    stamp(row, src)
    changed = _payment_hints(session, row, meta, _recurring_hint(ch)) or changed
    _charge_refunds(session, ch, values, src)
    # Derived facts once per batch (``settled``), not once per upsert: what they change is
    # recorded when the batch settles, not counted in this upsert's outcome.
    relink_payments(session, charge_id=cid)
    return outcome_of(created, changed)


def _charge_values(session: Session, ch: Obj, src: Source) -> dict[str, Any]:
    """The columns of a charge's payment (without an erased person's details)."""
    billing = mapping(ch.get("billing_details"))
    captured, charged = read_amount(ch, "amount_captured"), read_amount(ch, "amount")
    amount = captured or charged or 0
    values: dict[str, Any] = {
        "stripe_payment_intent_id": read_id(ch.get("payment_intent")),
        "stripe_customer_id": read_id(ch.get("customer")),
        "stripe_invoice_id": read_id(ch.get("invoice")),
        "amount_minor": amount,
        "currency": read_currency(ch),
        "charge_refunded_minor": read_amount(ch, "amount_refunded") or 0,
        "paid_at": read_timestamp(ch.get("created")) or src.at,
        "email": read_text(billing.get("email"), 320) or read_text(ch.get("receipt_email"), 320),
        "name": read_text(billing.get("name"), 200),
        **_balance(ch.get("balance_transaction")),
    }
    return unless_erased(session, ch, values)


def charge_refund_id(charge_id: str, amount_refunded: int) -> str:
    """The key of a charge-only refund row: the charge and the refunded amount it stands for."""
    return f"{charge_id}:refunded:{amount_refunded}"


def _charge_refunds(session: Session, ch: Obj, values: Mapping[str, Any], src: Source) -> None:
    """The refunds a charge state tells of: the refund objects older API versions embed (before
    2022-11-15), and that ``amount_refunded`` was refunded by ``src.at`` (a charge-only refund row,
    whose amount ``refresh_charge_refunds`` derives; the earliest source gives its date)."""
    for embedded in mapping(ch.get("refunds")).get("data") or []:
        if isinstance(embedded, Mapping) and embedded.get("object") == "refund":
            upsert_refund(session, embedded, src)
    cid = read_id(ch)
    level = values["charge_refunded_minor"]
    if cid is None or level <= 0:
        return
    key = charge_refund_id(cid, level)
    row = find_row(session, Refund, Refund.stripe_refund_id, key)
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
        remember(session, row, key)
    elif (src.at, src.event_id) >= (row.stripe_created, row.synced_event_id or ""):
        return
    row.stripe_created = src.at
    stamp(row, src)


def _payment_hints(session: Session, row: Payment, meta: Mapping[str, Any], recurring: bool) -> bool:
    """Fill what the object's metadata says (kind, campaign, appeal, reader) and mark the payment
    recurring if ``recurring``; whether anything changed."""
    changed = fill(row, "kind_hint", kind_of(meta.get("kind")))
    changed = fill(row, "campaign", read_text(meta.get("campaign"), 100)) or changed
    for column, value in read_appeal(meta).items():
        changed = fill(row, column, value) or changed
    changed = fill(row, "reader_id", reader_named(session, meta.get("reader"))) or changed
    if recurring and not row.recurring:
        row.recurring = True
        changed = True
    return changed


def upsert_payment_intent(session: Session, pi: Obj, src: Source) -> str:
    """A succeeded payment intent: creates the payment row of its charge if the charge event has not
    come yet, and adds what only the intent knows (its metadata). Charge objects it embeds (older
    API versions, expansion) are upserted first; any other intent only re-derives its payments."""
    pid = read_id(pi)
    if pid is None:
        raise ValueError("payment intent without an id")
    charge_id = read_id(pi.get("latest_charge"))
    # Older API versions (and expansion) put the charge objects themselves on the intent.
    embedded = [pi.get("latest_charge"), *(mapping(pi.get("charges")).get("data") or [])]
    for ch in embedded:
        if isinstance(ch, Mapping) and ch.get("object") == "charge" and ch.get("status") == "succeeded":
            upsert_charge(session, ch, src)
            charge_id = charge_id or read_id(ch)
    if pi.get("status") != "succeeded" or charge_id is None:
        relink_payments(session, payment_intent_id=pid)
        return "ignored"
    received, asked = read_amount(pi, "amount_received"), read_amount(pi, "amount")
    row = find_row(session, Payment, Payment.stripe_charge_id, charge_id)
    created = row is None
    if row is None:
        amount = received or asked or 0
        row = Payment(
            stripe_charge_id=charge_id,
            kind="donation",
            amount_minor=amount,
            currency=read_currency(pi),
            paid_at=read_timestamp(pi.get("created")) or src.at,
            livemode=src.livemode,
        )
        remember(session, row, charge_id)
    changed = assign(
        row,
        unless_erased(
            session,
            pi,
            {
                "stripe_payment_intent_id": pid,
                "stripe_customer_id": read_id(pi.get("customer")),
                "stripe_invoice_id": read_id(pi.get("invoice")),
                "email": read_text(pi.get("receipt_email"), 320),
            },
        ),
        links=("stripe_payment_intent_id", "stripe_customer_id", "stripe_invoice_id", "email"),
    )
    changed = _payment_hints(session, row, metadata(pi), _recurring_hint(pi)) or changed
    relink_payments(session, charge_id=charge_id)
    return outcome_of(created, changed)


def apply_balance_transaction(session: Session, bt: Obj) -> str:
    """A balance transaction's fee, net and currency onto its payment (a charge's), or its fee onto
    its dispute (the first fee seen is kept)."""
    source = read_id(bt.get("source"))
    if source is None or bt.get("fee") is None:
        return "ignored"
    fee = read_amount(bt, "fee", signed=True) or 0
    if bt.get("type") in ("charge", "payment"):
        p = find_row(session, Payment, Payment.stripe_charge_id, source)
        if p is None:
            return "ignored"
        changed = assign(
            p,
            {
                "stripe_balance_transaction_id": read_id(bt),
                "fee_minor": fee,
                "net_minor": read_amount(bt, "net", signed=True) or 0,
                "balance_currency": read_currency(bt),
            },
        )
        return "updated" if changed else "unchanged"
    if source.startswith("dp_"):
        d = find_row(session, Dispute, Dispute.stripe_dispute_id, source)
        if d is None:
            return "ignored"
        # A dispute has one fee transaction; its reinstatement may refund the fee (negative fee).
        d.fee_minor = fee if d.fee_minor is None else d.fee_minor
        relink_payments(session, charge_id=d.stripe_charge_id)
        return "unchanged"
    return "ignored"
