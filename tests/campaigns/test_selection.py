"""Segments: who gets an appeal, and who never does."""

from __future__ import annotations

from paywall import clock
from paywall.campaigns.selection import candidates, recipients
from paywall.db import Database
from paywall.mail.suppression import suppress
from tests.support.mail import add_customer, add_payment, add_reader, add_subscription


def names(db: Database, segment: str, pause_days: int = 90) -> set[str]:
    with db.transaction(readonly=True) as s:
        return {c.external_id for c in recipients(s, segment, now=clock.now(), pause_days=pause_days)}


def test_never_supported(db: Database) -> None:
    add_reader(db, "fresh")
    add_reader(db, "not-opted-in", opt_in=False)
    donor = add_reader(db, "donor")
    add_payment(db, reader_id=donor)
    via_customer = add_reader(db, "via-customer")
    add_payment(db, customer=add_customer(db, via_customer), kind="subscription")
    add_reader(db, "guest-donor", email="Guest@Example.org")
    add_payment(db, email="guest@example.org")  # gave as a guest with the same address
    trialing = add_reader(db, "trialing")
    add_subscription(db, reader_id=trialing, status="trialing")
    abandoned = add_reader(db, "abandoned-checkout")
    add_subscription(db, reader_id=abandoned, status="incomplete_expired")
    assert names(db, "never_supported") == {"fresh", "abandoned-checkout"}


def test_lapsed_subscribers(db: Database) -> None:
    lapsed = add_reader(db, "lapsed")
    add_subscription(db, reader_id=lapsed, status="canceled")
    back = add_reader(db, "came-back")
    add_subscription(db, reader_id=back, status="canceled")
    add_subscription(db, reader_id=back, status="active")
    dunning = add_reader(db, "past-due")
    add_subscription(db, reader_id=dunning, status="canceled")
    add_subscription(db, reader_id=dunning, status="past_due")
    ex_donor = add_reader(db, "ex-recurring-donor")
    add_subscription(db, reader_id=ex_donor, status="canceled", kind="donation")
    add_reader(db, "never")
    assert names(db, "lapsed_subscribers") == {"lapsed"}


def test_past_donors_respect_the_pause_and_skip_subscribers(db: Database) -> None:
    old = add_reader(db, "old-donor")
    add_payment(db, reader_id=old, days_ago=200)
    recent = add_reader(db, "recent-donor")
    add_payment(db, reader_id=recent, days_ago=200)
    add_payment(db, reader_id=recent, days_ago=10)
    subscriber = add_reader(db, "donor-and-subscriber")
    add_payment(db, reader_id=subscriber, days_ago=200)
    add_subscription(db, reader_id=subscriber, status="active")
    monthly = add_reader(db, "monthly-donor")
    add_payment(db, reader_id=monthly, days_ago=100)
    add_subscription(db, reader_id=monthly, status="active", kind="donation")
    only_paid_subscription = add_reader(db, "subscription-payment-only")
    add_payment(db, reader_id=only_paid_subscription, kind="subscription", days_ago=200)
    assert names(db, "past_donors") == {"old-donor"}
    # The pause is a setting: with 5 days, the recent donor is asked again too.
    assert names(db, "past_donors", pause_days=5) == {"old-donor", "recent-donor"}


def test_never_included_whatever_the_segment(db: Database) -> None:
    add_reader(db, "ok")
    add_reader(db, "unsubscribed", unsubscribed=True)
    add_reader(db, "no-email", email=None)
    add_reader(db, "erased", email=None, name=None, erased=True)
    add_reader(db, "bounced", email="Bounced@example.org")
    with db.transaction() as s:
        suppress(s, "bounced@example.org", reason="hard_bounce")
    for segment in ("never_supported", "all_opted_in"):
        assert names(db, segment) == {"ok"}
    with db.transaction(readonly=True) as s:
        reasons = {
            c.external_id: c.excluded for c in candidates(s, "all_opted_in", now=clock.now(), pause_days=90)
        }
    assert reasons == {
        "ok": None,
        "unsubscribed": "unsubscribed",
        "no-email": "no_email",
        "erased": "erased",
        "bounced": "suppressed",
    }
