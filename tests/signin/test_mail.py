"""Sign-in mail: sealed until sent, skipped when late, first in the queue, and files on a laptop."""

from __future__ import annotations

import datetime as dt
import email
import logging
import threading
import time
from collections.abc import Callable, Iterator
from email import policy
from pathlib import Path

import pytest
from sqlalchemy import select

from paywall import clock
from paywall.cli import Context
from paywall.config import Settings
from paywall.db import Database
from paywall.mail import queue
from paywall.mail.cli import _outbox_transport, run_worker
from paywall.mail.delivery import drain
from paywall.mail.files import FileTransport, file_transport
from paywall.mail.smtp import SmtpTransport
from paywall.models import OutboxMessage
from paywall.signin import service
from tests.support.mail import SmtpSink, body_text, mail_settings


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        yield s


@pytest.fixture
def msettings(make_settings: Callable[..., Settings], sink: SmtpSink) -> Settings:
    return mail_settings(make_settings, sink, organisation="The Daily Example")


def transport(sink: SmtpSink) -> SmtpTransport:
    return SmtpTransport(host="127.0.0.1", port=sink.port, security="none", backoff_seconds=0)


def ask(db: Database, settings: Settings, address: str, *, now: dt.datetime | None = None, **kw: str) -> None:
    with db.transaction() as s:
        service.request_signin(s, settings, address, now=now or clock.now(), **kw)


def rows(db: Database) -> list[OutboxMessage]:
    with db.transaction(readonly=True) as s:
        return list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def code_from(text: str) -> str:
    line = next(li for li in text.splitlines() if li.startswith("Your sign-in code:"))
    return line.rsplit(" ", 1)[1]


def test_the_mail_carries_code_and_link_and_the_table_keeps_neither(
    db: Database, msettings: Settings, sink: SmtpSink
) -> None:
    ask(db, msettings, "ana@example.org")
    with transport(sink) as t:
        assert drain(db, msettings, t) == {"sent": 1}
    msg = sink.received[0].message
    assert msg["Subject"] == "Sign in to The Daily Example"
    text = body_text(msg)
    code = code_from(text)
    assert len(code) == 6 and code not in msg["Subject"]
    assert "https://paywall.example.org/signin#paywall_signin=" in text
    assert code not in text.splitlines()[0]  # not in a lock-screen preview's first line
    (row,) = rows(db)
    assert row.status == "sent" and row.data["sealed"] is None and code not in str(row.data)
    # The mailed code signs in.
    with db.transaction() as s:
        assert service.exchange(s, msettings, email="ana@example.org", code=code, now=clock.now()).reader


def test_a_delete_code_mail(db: Database, msettings: Settings, sink: SmtpSink) -> None:
    ask(db, msettings, "ana@example.org", purpose="delete")
    with transport(sink) as t:
        assert drain(db, msettings, t) == {"sent": 1}
    msg = sink.received[0].message
    assert msg["Subject"] == "Confirm deleting your account with The Daily Example"
    text = body_text(msg)
    assert "enter this code on your account page:" in text and "paywall_signin" not in text


def test_a_code_that_expired_while_waiting_is_skipped_not_sent_late(
    db: Database, msettings: Settings, sink: SmtpSink
) -> None:
    ask(db, msettings, "ana@example.org", now=clock.now() - dt.timedelta(minutes=16))
    with transport(sink) as t:
        assert drain(db, msettings, t) == {"skipped_expired": 1}
    assert sink.received == []
    (row,) = rows(db)
    assert row.status == "skipped" and row.error == "expired" and row.data["sealed"] is None


def test_sign_in_mail_goes_before_older_mail(db: Database, msettings: Settings, sink: SmtpSink) -> None:
    with db.transaction() as s:
        queue.enqueue(
            s,
            kind="trial_ending",
            dedupe_key="t:1",
            to_email="old@example.org",
            reader_id=None,
            data={"trial_end": "2026-04-01T00:00:00+00:00"},
        )
    ask(db, msettings, "ana@example.org")
    with transport(sink) as t:
        drain(db, msettings, t)
    assert sink.recipients() == ["ana@example.org", "old@example.org"]


def test_a_transient_failure_keeps_the_code_sealed_for_the_retry(
    db: Database, msettings: Settings, sink: SmtpSink
) -> None:
    ask(db, msettings, "ana@example.org")
    dead = SmtpTransport(host="127.0.0.1", port=1, security="none", max_attempts=1, backoff_seconds=0)
    assert drain(db, msettings, dead)["deferred"] == 1
    (row,) = rows(db)
    assert row.status == "pending" and isinstance(row.data["sealed"], str)


def test_the_idle_worker_sends_sign_in_mail_within_seconds(
    db: Database, msettings: Settings, sink: SmtpSink
) -> None:
    stop = threading.Event()
    ctx = Context()
    ctx._settings, ctx._db = msettings, db
    worker = threading.Thread(target=run_worker, args=(ctx, stop, 60.0, transport(sink)))
    worker.start()
    try:
        time.sleep(0.5)  # the worker found nothing and is idle for a full minute's poll
        ask(db, msettings, "ana@example.org")
        deadline = time.monotonic() + 10
        while not sink.received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sink.recipients() == ["ana@example.org"]
    finally:
        stop.set()
        worker.join(10)
    assert not worker.is_alive()


# -- files on a laptop ----------------------------------------------------------------------


def test_without_smtp_on_http_mail_goes_to_files(
    db: Database, make_settings: Callable[..., Settings], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(
        {"PAYWALL_PUBLIC_URL": "http://127.0.0.1:8000"}, signin={"mail_dir": str(tmp_path / "mail")}
    )
    ctx = Context()
    ctx._settings, ctx._db = settings, db
    with caplog.at_level(logging.WARNING, logger="paywall.worker"):
        files = _outbox_transport(ctx)
    assert isinstance(files, FileTransport)
    assert [r.getMessage() for r in caplog.records if "eml" in r.getMessage()] == [
        "mail is not configured: set PAYWALL_SMTP_HOST (the SMTP relay): writing outgoing mail as .eml files "
        f"under {tmp_path / 'mail'} instead"
    ]
    ask(db, settings, "ana@example.org")
    assert drain(db, settings, files) == {"sent": 1}
    (path,) = (tmp_path / "mail").glob("*.eml")
    msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert msg["To"] == "ana@example.org" and msg["From"] == "paywall <paywall@localhost>"
    assert "Your sign-in code:" in body_text(msg)
    assert not list((tmp_path / "mail").glob("*.part"))


def test_files_are_refused_for_a_public_https_service(make_settings: Callable[..., Settings]) -> None:
    from paywall.config import ConfigError

    with pytest.raises(ConfigError, match="development only"):
        file_transport(make_settings())
