"""Erasure is complete whoever calls it, and no later Stripe event, replay or mail undoes it."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from paywall.db import Database
from paywall.models import CheckoutSession, OutboxMessage, Payment, StripeCustomer, StripeEvent
from tests.support.stripe_events import deliver_all, load_scenario

GUEST_EMAIL, GUEST_NAME = "sam.okafor@example.net", "Sam Okafor"
MEMBER_EMAIL, MEMBER_NAME = "maria.lopez@example.com", "Maria Lopez"


def donation_for(reader: str) -> list[dict[str, Any]]:
    """one_time_donation_checkout (a guest donation: no Stripe customer, only the address), linked
    to ``reader``."""
    events = copy.deepcopy(load_scenario("one_time_donation_checkout"))
    events[-1]["data"]["object"]["client_reference_id"] = reader
    return events


def personal_data_left(db: Database, *needles: str) -> list[str]:
    """Where any of ``needles`` is still stored: payments, sessions, customers, outbox, events."""
    found = []
    with db.transaction(readonly=True) as session:
        for model in (Payment, CheckoutSession, StripeCustomer):
            # Annotated, or mypy widens the three models to their common base, which has no email.
            rows: list[Payment | CheckoutSession | StripeCustomer] = list(session.scalars(select(model)))
            for row in rows:
                if row.email in needles or row.name in needles:
                    found.append(f"{model.__tablename__}: {row.email} {row.name}")
        for msg in session.scalars(select(OutboxMessage)):
            text = json.dumps([msg.to_email, msg.data])
            found += [f"outbox {msg.dedupe_key}" for n in needles if n in text]
        for event in session.scalars(select(StripeEvent)):
            text = json.dumps(event.payload)
            found += [f"event {event.stripe_event_id} ({event.type})" for n in needles if n in text]
    return found


@pytest.mark.slow
def test_erasure_from_the_cli_blanks_payments_without_the_web_app(
    client: FlaskClient, db: Database, migrated: str
) -> None:
    """A fresh `paywall readers erase` process (no app built) reaches every feature's data."""
    deliver_all(client, donation_for("donor_7"))
    assert personal_data_left(db, GUEST_EMAIL), "the scenario stores the donor's address"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYWALL_")}
    env["PAYWALL_DATABASE_URL"] = migrated
    done = subprocess.run(
        [sys.executable, "-c", "from paywall.cli import main; main()", "readers", "erase", "donor_7"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "donor_7: erased"
    assert personal_data_left(db, GUEST_EMAIL, GUEST_NAME) == []
    with db.transaction(readonly=True) as session:
        payment = session.scalar(select(Payment))
        assert payment is not None and payment.amount_minor == 5000, "financial facts stay"


def test_erasure_deletes_the_outbox_rows(
    client: FlaskClient, db: Database, admin_key: dict[str, str]
) -> None:
    deliver_all(client, donation_for("donor_7"))
    with db.transaction(readonly=True) as session:
        (receipt,) = session.scalars(select(OutboxMessage))
        assert receipt.to_email == GUEST_EMAIL and receipt.data["name"] == GUEST_NAME
    assert client.delete("/v1/readers/donor_7", headers=admin_key).get_json()["outcome"] == "erased"
    with db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    assert personal_data_left(db, GUEST_EMAIL, GUEST_NAME) == []


def test_later_events_about_an_erased_guest_donor_write_nothing_back(
    client: FlaskClient, db: Database, admin_key: dict[str, str]
) -> None:
    """donation_refund (a refund of the donation's charge) and dispute_lost (a dispute, its evidence
    naming the donor) arrive after the erasure, and the donation's own events are delivered again
    under new ids (a Stripe resend of the same objects): the payment stays blank, no mail is
    queued, and no stored payload keeps the address or the name."""
    deliver_all(client, donation_for("donor_7"))
    assert client.delete("/v1/readers/donor_7", headers=admin_key).status_code == 200
    later = load_scenario("donation_refund")[3:] + load_scenario("dispute_lost")[3:]
    resent = copy.deepcopy(donation_for("donor_7"))
    for event in resent:
        event["id"] += "_again"
        event["created"] += 3600
    deliver_all(client, later + resent)
    assert personal_data_left(db, GUEST_EMAIL, GUEST_NAME) == []
    with db.transaction(readonly=True) as session:
        payment = session.scalar(select(Payment))
        assert payment is not None and payment.refunded_minor == 5000, "the refund is still recorded"
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


def test_later_events_about_an_erased_subscriber_write_nothing_back(
    client: FlaskClient, db: Database, admin_key: dict[str, str]
) -> None:
    """monthly_subscription_checkout's subscriber is erased; renewal_failed_then_recovered's
    renewals (a failed payment whose invoice carries the address, then a recovery) arrive after:
    the customer id recognises them everywhere."""
    deliver_all(client, load_scenario("monthly_subscription_checkout"))
    assert client.delete("/v1/readers/member_8731", headers=admin_key).status_code == 200
    assert personal_data_left(db, MEMBER_EMAIL, MEMBER_NAME) == []
    deliver_all(
        client,
        load_scenario("renewal_failed_then_recovered")[len(load_scenario("monthly_subscription_checkout")) :],
    )
    assert personal_data_left(db, MEMBER_EMAIL, MEMBER_NAME) == []
    with db.transaction(readonly=True) as session:
        notice = session.scalar(select(OutboxMessage).where(OutboxMessage.kind == "payment_failed"))
        assert notice is None or notice.to_email is None
        assert session.scalar(select(func.count()).select_from(Payment)) == 3, "renewals are recorded"


def test_replaying_events_after_erasure_restores_nothing(
    client: FlaskClient, db: Database, admin_key: dict[str, str], runner: Any
) -> None:
    from paywall.cli import main

    deliver_all(client, load_scenario("monthly_subscription_checkout"))
    assert client.delete("/v1/readers/member_8731", headers=admin_key).status_code == 200
    out = runner.invoke(main, ["events", "replay", "--since", "2000-01-01"])
    assert out.exit_code == 0, out.output
    assert personal_data_left(db, MEMBER_EMAIL, MEMBER_NAME) == []


def test_cli_erase_names_an_unknown_or_bad_reader(db: Database, runner: Any) -> None:
    from paywall.cli import main

    missing = runner.invoke(main, ["readers", "erase", "nobody"])
    assert missing.exit_code == 1 and "no reader 'nobody'" in missing.output
    bad = runner.invoke(main, ["readers", "erase", "a\x01b"])
    assert bad.exit_code == 2 and "READER" in bad.output


def test_erasure_deletes_the_readers_asks(db: Database) -> None:
    import datetime as dt

    from paywall.erasure import erase_reader
    from paywall.models import AppealAsk, Reader

    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    with db.transaction() as session:
        session.add(Reader(external_id="ana", email="ana@example.org"))
        session.add_all(
            [
                AppealAsk(subject="ana", asked_at=now, channel="footer"),
                AppealAsk(subject="ana", asked_at=now, channel="keep-us-open"),
                AppealAsk(subject="bob", asked_at=now, channel="footer"),
            ]
        )
    with db.transaction() as session:
        assert erase_reader(session, "ana") == "erased"
    with db.transaction(readonly=True) as session:
        assert list(session.scalars(select(AppealAsk.subject))) == ["bob"]
