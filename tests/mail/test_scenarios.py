"""The outbox rows the Stripe sync writes for the shared scenarios, drained to a real SMTP server."""

from __future__ import annotations

import copy
import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from paywall.config import Settings
from paywall.db import Database
from paywall.mail.delivery import SUBJECTS, drain
from paywall.mail.smtp import SmtpTransport
from paywall.models import OutboxMessage, Reader
from tests.support.mail import SmtpSink, body_text, mail_settings
from tests.support.stripe_events import deliver_all, load_scenario, scenario_file


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        yield s


def rows(db: Database) -> dict[str, tuple[str, str]]:
    with db.transaction(readonly=True) as s:
        return {m.dedupe_key: (m.kind, m.status) for m in s.scalars(select(OutboxMessage))}


@pytest.mark.parametrize(
    "scenario",
    [
        "monthly_subscription_checkout",
        "one_time_donation_checkout",
        "renewal_failed_then_recovered",
        "cancel_at_period_end_then_deleted",
        "donation_refund",
        "dispute_lost",
        "upgrade_with_proration",
        "annual_trial_eur",
    ],
)
def test_scenario_mail_is_sent_once(
    scenario: str, client: FlaskClient, db: Database, make_settings: Callable[..., Settings], sink: SmtpSink
) -> None:
    deliver_all(client, load_scenario(scenario))
    queued = rows(db)
    with SmtpTransport(host="127.0.0.1", port=sink.port, security="none", backoff_seconds=0) as t:
        tally = drain(db, mail_settings(make_settings, sink), t)
    after = rows(db)
    # Everything due is handled: sent, or skipped when it no longer applies (e.g. an invoice paid since).
    assert {status for _, status in after.values()} <= {"sent", "skipped"}
    sent = [kind for kind, status in after.values() if status == "sent"]
    assert tally["sent"] == len(sent) == len(sink.received)
    subjects = Counter(str(m.message["Subject"]) for m in sink.received)
    assert subjects == Counter(SUBJECTS[kind] for kind in sent)
    for received in sink.received:
        assert received.message["List-Unsubscribe"] is None
        assert "{{" not in received.raw.decode("ascii", "replace")
    kinds = {kind for kind, _ in queued.values()}
    if scenario == "one_time_donation_checkout":
        assert "donation_receipt" in sent
    if scenario == "annual_trial_eur":
        assert "trial_ending" in sent
    if scenario == "renewal_failed_then_recovered":
        assert "payment_failed" in kinds
    # Delivering the scenario again queues nothing new, and a second drain sends nothing.
    deliver_all(client, load_scenario(scenario))
    with SmtpTransport(host="127.0.0.1", port=sink.port, security="none") as t:
        assert drain(db, mail_settings(make_settings, sink), t) == Counter()
    assert len(sink.received) == len(sent)


def test_payment_failed_mail_renders_from_the_rows_at_send_time(
    client: FlaskClient, db: Database, make_settings: Callable[..., Settings], sink: SmtpSink
) -> None:
    """A notice queued before the reader was linked and before a second failed attempt is sent
    with the attempt count and next attempt the rows hold at send time, and the account page link."""
    base = load_scenario("monthly_subscription_checkout")
    link = next(e for e in base if e["type"] == "checkout.session.completed")  # names the reader
    renewal = scenario_file("renewal_failed_then_recovered")
    cut = next(i for i, e in enumerate(renewal) if e["type"] == "invoice.payment_failed")
    first_failure = renewal[cut]
    deliver_all(client, [e for e in base if e is not link] + renewal[: cut + 1])
    with db.transaction(readonly=True) as s:
        (queued,) = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "payment_failed"))
        assert queued.reader_id is None and queued.data["reader"] is None
        assert queued.data["attempt_count"] == 1
    retried_at = first_failure["created"] + 3 * 86400
    second_failure = copy.deepcopy(first_failure)
    second_failure.update(id="evt_second_failure", created=retried_at)
    second_failure["data"]["object"].update(attempt_count=2, next_payment_attempt=retried_at + 5 * 86400)
    deliver_all(client, [link, second_failure])

    with SmtpTransport(host="127.0.0.1", port=sink.port, security="none", backoff_seconds=0) as t:
        assert drain(db, mail_settings(make_settings, sink), t) == Counter(sent=1)
    (received,) = sink.received
    text = body_text(received.message)
    next_try = dt.datetime.fromtimestamp(retried_at + 5 * 86400, dt.UTC)
    assert f"We will try again on {next_try:%d %B %Y}".replace(" 0", " ") in text
    assert "https://paywall.example.org/account" in text and "/portal" not in text
    with db.transaction(readonly=True) as s:
        (sent,) = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "payment_failed"))
        assert (
            sent.status == "sent" and sent.data["attempt_count"] == 2 and sent.data["reader"] == "member_8731"
        )
        reader = s.scalar(select(Reader).where(Reader.external_id == "member_8731"))
        assert reader is not None and sent.reader_id == reader.id
