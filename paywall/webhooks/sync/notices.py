"""Mail the sync queues (paywall.mail.queue sends it): a donor's receipt, a trial's end, a failed
payment; and the withdrawal of a queued message that no longer applies."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from paywall import clock
from paywall.mail import queue
from paywall.models import Invoice, OutboxMessage, Payment, Reader, StripeCustomer, Subscription
from paywall.webhooks.sync.fields import Obj, read_id, read_text, read_timestamp
from paywall.webhooks.sync.rows import find_row, unless_erased

# Invoice states that still owe money: a failure notice (and a grace start) applies only to them.
UNPAID_INVOICE = ("open", "uncollectible")


def _reader_email(session: Session, reader_id: int | None) -> str | None:
    if reader_id is None:
        return None
    return session.scalar(select(Reader.email).where(Reader.id == reader_id))


def _external_id(session: Session, reader_id: int | None) -> str | None:
    if reader_id is None:
        return None
    return session.scalar(select(Reader.external_id).where(Reader.id == reader_id))


def queue_receipt(session: Session, p: Payment) -> None:
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


def withdraw_pending(session: Session, key: str, reason: str) -> None:
    """A queued message that no longer applies (e.g. the invoice got paid) is skipped, if unsent."""
    msg = session.scalar(select(OutboxMessage).where(OutboxMessage.dedupe_key == key))
    if msg is not None and msg.status == "pending":
        msg.status = "skipped"
        msg.error = reason


def queue_trial_ending(session: Session, sub_obj: Obj) -> str:
    """``trial_will_end``: queue one notice per trial end, unless the trial is already over."""
    sid = read_id(sub_obj)
    trial_end = sub_obj.get("trial_end")
    if sid is None or not isinstance(trial_end, int):
        return "ignored"
    sub = find_row(session, Subscription, Subscription.stripe_subscription_id, sid)
    if sub is None or sub.status != "trialing":
        return "ignored"
    to_email = None
    if sub.stripe_customer_id:
        cus = find_row(session, StripeCustomer, StripeCustomer.stripe_customer_id, sub.stripe_customer_id)
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
            "trial_end": clock.isoformat(read_timestamp(trial_end)),
            "plan": sub.plan,
            "amount_minor": sub.amount_minor,
            "currency": sub.currency,
            "interval": sub.interval,
            "reader": _external_id(session, sub.reader_id),
        },
    )


def queue_payment_failed(session: Session, inv_obj: Obj) -> str:
    """``invoice.payment_failed``: queue one notice per invoice, unless it has been paid since."""
    iid = read_id(inv_obj)
    if iid is None:
        return "ignored"
    inv = find_row(session, Invoice, Invoice.stripe_invoice_id, iid)
    if inv is None or inv.status not in UNPAID_INVOICE:
        return "ignored"
    session.flush()
    # The mailer renders it again from the rows at send time (queue.refresh_before_send).
    to_email, reader_id, data = queue.payment_failed_notice(session, inv)
    # The invoice's own address is the last resort, and never an erased person's.
    invoice_email = unless_erased(session, inv_obj, {"email": read_text(inv_obj.get("customer_email"), 320)})
    return queue.enqueue(
        session,
        kind="payment_failed",
        dedupe_key=f"payment_failed:{iid}",
        to_email=to_email or invoice_email["email"],
        reader_id=reader_id,
        data=data,
    )
