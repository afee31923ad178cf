"""Erasure and the sign-in foundation: the proven address goes too, and every signed-in device ends.

(Before: ``erase_reader`` blanked ``email`` but kept ``verified_email``, so the address stayed, the
reader's tokens kept working, and signing in with it again found the erased reader.)"""

from __future__ import annotations

from sqlalchemy import select

from paywall import clock
from paywall.config import Settings
from paywall.db import Database
from paywall.erasure import erase_reader
from paywall.models import Reader
from paywall.signin.identity import reader_for_email
from paywall.signin.tokens import issue_reader_token, reader_from_token


def test_erasure_forgets_the_verified_email_and_ends_reader_tokens(db: Database, settings: Settings) -> None:
    now = clock.now()
    with db.transaction() as session:
        reader = reader_for_email(session, "Ana@Example.org", now)
        first_id = reader.external_id
        token, _ = issue_reader_token(settings, reader)
    with db.transaction() as session:
        assert erase_reader(session, first_id) == "erased"
    with db.transaction() as session:
        row = session.scalar(select(Reader).where(Reader.external_id == first_id))
        assert row is not None and row.verified_email is None and row.email_verified_at is None
        assert reader_from_token(session, settings, token) is None
        # The same person signing in again later is a new reader, not the erased one.
        again = reader_for_email(session, "ana@example.org", now)
        assert again.external_id != first_id and again.erased_at is None
