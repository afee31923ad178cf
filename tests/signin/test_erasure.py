"""Sign-in data on erasure, and the worker's purge of expired codes."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

from sqlalchemy import select

from paywall import clock
from paywall.cli import Context
from paywall.config import Settings
from paywall.db import Database
from paywall.erasure import erase_reader
from paywall.mail.cli import run_worker
from paywall.mail.files import FileTransport
from paywall.models import OutboxMessage, Reader, SigninCode
from paywall.signin import codes, service
from paywall.signin.tokens import reader_from_token


def _sign_in(db: Database, settings: Settings, email: str) -> service.SignedIn:
    with db.transaction() as s:
        code = codes.issue(s, settings, email, now=clock.now()).code
    with db.transaction() as s:
        return service.exchange(s, settings, email=email, code=code, now=clock.now())


def test_erasure_takes_codes_verified_address_and_sessions(db: Database, settings: Settings) -> None:
    signed = _sign_in(db, settings, "ana@example.org")
    with db.transaction() as s:
        service.request_signin(s, settings, "Ana@example.org", now=clock.now())  # a code in flight
        reader = s.scalars(select(Reader)).one()
        codes.issue_return_token(s, settings, reader, now=clock.now())
        other = codes.issue(s, settings, "bo@example.org", now=clock.now())
    with db.transaction() as s:
        assert erase_reader(s, signed.reader) == "erased"
    with db.transaction() as s:
        assert [r.email for r in s.scalars(select(SigninCode))] == ["bo@example.org"]
        assert s.scalars(select(OutboxMessage)).all() == []
        reader = s.scalars(select(Reader)).one()
        assert reader.verified_email is None and reader.email_verified_at is None
        assert reader_from_token(s, settings, signed.reader_token) is None
    assert other.code
    # The address can sign up afresh: a new reader, nothing of the erased one.
    again = _sign_in(db, settings, "ana@example.org")
    assert again.reader != signed.reader


def test_the_worker_purges_codes_expired_a_day_ago(db: Database, settings: Settings, tmp_path: Path) -> None:
    long_ago = clock.now() - dt.timedelta(days=2)
    with db.transaction() as s:
        codes.issue(s, settings, "old@example.org", now=long_ago)
        codes.issue(s, settings, "new@example.org", now=clock.now())
    stop = threading.Event()
    ctx = Context()
    ctx._settings, ctx._db = settings, db
    worker = threading.Thread(target=run_worker, args=(ctx, stop, 60.0, FileTransport(tmp_path)))
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with db.transaction(readonly=True) as s:
                left = [c.email for c in s.scalars(select(SigninCode))]
            if left == ["new@example.org"]:
                break
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join(10)
    assert left == ["new@example.org"]
