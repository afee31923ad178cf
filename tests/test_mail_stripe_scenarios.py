"""The outbox rows the Stripe sync writes for the shared scenarios, drained to a real SMTP server."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from paywall.config import Settings
from paywall.db import Database
from paywall.mail.outbox import SUBJECTS, drain
from paywall.mail.smtp import SmtpTransport
from paywall.models import OutboxMessage
from tests.mail_helpers import SmtpSink, mail_settings
from tests.stripe_helpers import deliver_all, load_scenario


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        yield s


def rows(db: Database) -> dict[str, tuple[str, str]]:
    with db.transaction(readonly=True) as s:
        return {m.dedupe_key: (m.kind, m.status) for m in s.scalars(select(OutboxMessage))}


@pytest.mark.parametrize("letter", ["a", "b", "c", "d", "e", "f", "g", "h"])
def test_scenario_mail_is_sent_once(
    letter: str, client: FlaskClient, db: Database, make_settings: Callable[..., Settings], sink: SmtpSink
) -> None:
    deliver_all(client, load_scenario(letter))
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
    if letter == "b":
        assert "donation_receipt" in sent
    if letter == "h":
        assert "trial_ending" in sent
    if letter == "c":
        assert "payment_failed" in kinds
    # Delivering the scenario again queues nothing new, and a second drain sends nothing.
    deliver_all(client, load_scenario(letter))
    with SmtpTransport(host="127.0.0.1", port=sink.port, security="none") as t:
        assert drain(db, mail_settings(make_settings, sink), t) == Counter()
    assert len(sink.received) == len(sent)
