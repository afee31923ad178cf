"""Supporter mail: draining the outbox for each kind, once; the worker; yearly receipts."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from paywall import clock
from paywall.cli import Context, main
from paywall.config import Settings
from paywall.db import Database
from paywall.mail import queue as mail_queue
from paywall.mail import receipts
from paywall.mail.cli import run_worker
from paywall.mail.delivery import drain
from paywall.mail.smtp import SmtpTransport
from paywall.mail.suppression import suppress
from paywall.models import OutboxMessage, YearlyReceipt
from tests.conftest import SIGNING_KEY
from tests.support.mail import (
    SmtpSink,
    add_customer,
    add_payment,
    add_reader,
    body_text,
    mail_settings,
    smtp_env,
)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        yield s


@pytest.fixture
def msettings(make_settings: Callable[..., Settings], sink: SmtpSink) -> Settings:
    return mail_settings(make_settings, sink)


def transport(sink: SmtpSink) -> SmtpTransport:
    return SmtpTransport(host="127.0.0.1", port=sink.port, security="none", backoff_seconds=0)


def queue(
    db: Database, kind: str, key: str, data: dict[str, object], to: str | None, reader_id: int | None = None
) -> None:
    with db.transaction() as s:
        assert (
            mail_queue.enqueue(s, kind=kind, dedupe_key=key, to_email=to, reader_id=reader_id, data=data)
            == "queued"
        )


def statuses(db: Database) -> dict[str, str]:
    with db.transaction(readonly=True) as s:
        return {m.dedupe_key: m.status for m in s.scalars(select(OutboxMessage))}


def body(sink: SmtpSink, to: str) -> tuple[str, str, str]:
    msg = next(m.message for m in sink.received if m.rcpt_to == [to])
    text = body_text(msg)
    html = body_text(msg, "html")
    assert msg["List-Unsubscribe"] is None  # transactional mail is not bulk mail
    return str(msg["Subject"]), text, html


def test_each_kind_is_rendered_and_sent_once(db: Database, msettings: Settings, sink: SmtpSink) -> None:
    ana = add_reader(db, "ana", unsubscribed=True)  # unsubscribing from appeals does not stop receipts
    queue(
        db,
        "donation_receipt",
        "receipt:ch_1",
        {
            "stripe_charge_id": "ch_1",
            "amount_minor": 2500,
            "currency": "eur",
            "name": "Ana",
            "recurring": False,
            "paid_at": "2026-03-05T10:00:00+00:00",
            "reader": "ana",
            "campaign": None,
        },
        "ana@example.org",
        ana,
    )
    queue(
        db,
        "payment_failed",
        "payment_failed:in_1",
        {
            "stripe_invoice_id": "in_1",
            "hosted_invoice_url": "https://invoice.stripe.com/i/acct_1/test_x",
            "amount_minor": 500,
            "currency": "jpy",
            "attempt_count": 1,
            "next_payment_attempt": "2026-03-08T10:00:00+00:00",
            "reader": "ana",
        },
        "ana@example.org",
        ana,
    )
    queue(
        db,
        "trial_ending",
        "trial_ending:sub_1:1",
        {
            "stripe_subscription_id": "sub_1",
            "trial_end": "2026-04-01T00:00:00+00:00",
            "plan": "annual",
            "amount_minor": 6000,
            "currency": "eur",
            "interval": "year",
            "reader": None,
        },
        "guest@example.org",
    )
    with transport(sink) as t:
        assert drain(db, msettings, t) == Counter(sent=3)
    assert set(statuses(db).values()) == {"sent"}

    receipt = next(m.message for m in sink.received if "receipt" in str(m.message["Subject"]))
    assert receipt["Subject"] == "Thank you for your donation: your receipt"
    rtext = body_text(receipt)
    assert "25.00 EUR" in rtext and "5 March 2026" in rtext and "ch_1" in rtext

    failed = next(m.message for m in sink.received if "did not go through" in str(m.message["Subject"]))
    ftext = body_text(failed)
    assert "500 JPY" in ftext and "8 March 2026" in ftext
    assert "https://invoice.stripe.com/i/acct_1/test_x" in ftext
    # Billing is never one click from a mail: the account page, where the reader signs in first.
    assert "https://paywall.example.org/account\r\n" in ftext and "token=" not in ftext
    assert failed["List-Unsubscribe"] is None

    subject, text, html = body(sink, "guest@example.org")
    assert subject == "Your trial ends soon"
    assert "annual trial" in text and "1 April 2026" in text and "60.00 EUR per year" in text
    assert "token=" not in text  # no personal link; a guest signs in on the account page with this address
    assert "sign in on your account page: https://paywall.example.org/account" in text
    assert "60.00 EUR" in html

    with transport(sink) as t:
        assert drain(db, msettings, t) == Counter()
    assert len(sink.received) == 3


def test_skipped_and_refused_messages(db: Database, msettings: Settings, sink: SmtpSink) -> None:
    gone = add_reader(db, "gone", email=None, name=None, erased=True)
    data = {"stripe_charge_id": "ch", "amount_minor": 100, "currency": "usd"}
    queue(db, "donation_receipt", "r:erased", data, "old@example.org", gone)
    queue(db, "donation_receipt", "r:noaddress", data, None)
    queue(db, "donation_receipt", "r:suppressed", data, "blocked@example.org")
    queue(db, "donation_receipt", "r:bounce", data, "bounce@example.org")
    queue(db, "donation_receipt", "r:ok", data, "ok@example.org")
    with db.transaction() as s:
        suppress(s, "Blocked@example.org", reason="manual")
    sink.refuse.add("bounce@example.org")
    with transport(sink) as t:
        tally = drain(db, msettings, t)
    assert tally == Counter(sent=1, failed=1, skipped_erased=1, skipped_no_email=1, skipped_suppressed=1)
    assert statuses(db) == {
        "r:erased": "skipped",
        "r:noaddress": "skipped",
        "r:suppressed": "skipped",
        "r:bounce": "failed",
        "r:ok": "sent",
    }
    assert sink.recipients() == ["ok@example.org"]
    queue(db, "donation_receipt", "r:bounce-again", data, "bounce@example.org")
    with transport(sink) as t:
        assert drain(db, msettings, t) == Counter(skipped_suppressed=1)  # the hard bounce was recorded


def test_drain_stops_and_requeues_when_the_server_is_down(
    db: Database, msettings: Settings, sink: SmtpSink
) -> None:
    queue(db, "donation_receipt", "r:1", {"amount_minor": 100, "currency": "usd"}, "a@example.org")
    down = SmtpTransport(host="127.0.0.1", port=1, security="none", max_attempts=2, backoff_seconds=0)
    assert drain(db, msettings, down) == Counter(deferred=1)
    with db.transaction(readonly=True) as s:
        msg = s.scalars(select(OutboxMessage)).one()
        assert msg.status == "pending" and msg.due_at > clock.now() and msg.attempts == 1
        msg_id = msg.id
    with db.transaction() as s:
        s.get_one(OutboxMessage, msg_id).due_at = clock.now()
    with transport(sink) as t:
        assert drain(db, msettings, t) == Counter(sent=1)


def test_concurrent_drains_send_each_message_once(db: Database, msettings: Settings, sink: SmtpSink) -> None:
    for i in range(30):
        queue(db, "donation_receipt", f"r:{i}", {"amount_minor": 100, "currency": "usd"}, f"d{i}@example.org")
    tallies: list[Counter[str]] = []

    def run() -> None:
        with transport(sink) as t:
            tallies.append(drain(db, msettings, t))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(Counter(sink.recipients()).values()) == [1] * 30
    assert sum(t["sent"] for t in tallies) == 30


def test_worker_drains_until_stopped(db: Database, msettings: Settings, sink: SmtpSink) -> None:
    stop = threading.Event()
    ctx = Context()
    ctx._settings, ctx._db = msettings, db
    worker = threading.Thread(target=run_worker, args=(ctx, stop, 0.05))
    worker.start()
    try:
        queue(db, "donation_receipt", "r:w", {"amount_minor": 100, "currency": "usd"}, "w@example.org")
        deadline = clock.now() + dt.timedelta(seconds=10)
        while not sink.received and clock.now() < deadline:
            stop.wait(0.05)
    finally:
        stop.set()
        worker.join(10)
    assert not worker.is_alive()
    assert sink.recipients() == ["w@example.org"]


def test_cli_drain_and_status(db: Database, runner: CliRunner, sink: SmtpSink) -> None:
    queue(db, "trial_ending", "t:1", {"trial_end": "2026-04-01T00:00:00+00:00"}, "t@example.org")
    env = {**smtp_env(sink), "PAYWALL_SIGNING_KEY": SIGNING_KEY}
    out = runner.invoke(main, ["mail", "drain"], env=env)
    assert out.exit_code == 0, out.output
    assert "sent: 1" in out.output
    assert "sent: 1" in runner.invoke(main, ["mail", "status"], env=env).output


def test_yearly_receipts_once_per_donor_net_of_refunds(
    db: Database, msettings: Settings, sink: SmtpSink, runner: CliRunner
) -> None:
    in_2025 = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    ana = add_reader(db, "ana", name="Ana", unsubscribed=True)
    add_payment(db, reader_id=ana, amount=1000, currency="eur", paid_at=in_2025)
    add_payment(db, reader_id=ana, amount=2000, currency="eur", refunded=500, paid_at=in_2025)
    add_payment(db, customer=add_customer(db, ana), amount=700, currency="usd", paid_at=in_2025)
    add_payment(db, reader_id=ana, amount=9999, currency="eur", kind="subscription", paid_at=in_2025)
    add_payment(
        db, reader_id=ana, amount=5000, currency="eur", paid_at=dt.datetime(2024, 12, 31, 23, tzinfo=dt.UTC)
    )
    add_payment(db, email="Guest@example.org", name="Guest", amount=300, currency="gbp", paid_at=in_2025)
    add_payment(db, email="guest@example.org", amount=200, currency="gbp", paid_at=in_2025)
    refunded = add_reader(db, "refunded")
    add_payment(db, reader_id=refunded, amount=1000, refunded=1000, paid_at=in_2025)

    env = {**smtp_env(sink), "PAYWALL_SIGNING_KEY": SIGNING_KEY}
    dry = runner.invoke(main, ["receipts", "send", "--year", "2025", "--dry-run"], env=env)
    assert "would_send: 2" in dry.output and sink.received == []
    out = runner.invoke(main, ["receipts", "send", "--year", "2025"], env=env)
    assert out.exit_code == 0, out.output
    assert "sent: 2" in out.output and "nothing_to_report: 1" in out.output
    ana_text = next(m for m in sink.received if m.rcpt_to == ["ana@example.org"]).message
    text = body_text(ana_text)
    assert ana_text["Subject"] == "Your donations in 2025"
    assert "25.00 EUR  (2 donations)" in text and "7.00 USD  (1 donation)" in text
    assert "50.00" not in text and "99.99" not in text
    guest = next(m for m in sink.received if m.rcpt_to == ["guest@example.org"]).message
    assert "5.00 GBP  (2 donations)" in body_text(guest)

    again = runner.invoke(main, ["receipts", "send", "--year", "2025"], env=env)
    assert "already_sent: 2" in again.output and len(sink.received) == 2
    with db.transaction(readonly=True) as s:
        assert {r.donor_key.split(":")[0] for r in s.scalars(select(YearlyReceipt))} == {"reader", "email"}
    # Another time zone moves the year's edge: the 31 December 23:00 UTC gift is 2025 in Auckland.
    nz = receipts.year_bounds(2025, "Pacific/Auckland")
    assert nz[0] == dt.datetime(2024, 12, 31, 11, tzinfo=dt.UTC)
