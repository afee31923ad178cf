"""Erasure of a reader's personal data, composed explicitly from every feature that holds some.

Each feature's eraser is named here, so erasure is complete whoever calls it: the DELETE route,
``paywall readers erase``, or a script that imports only this module. (It used to be a registry
the web app filled while it was built, so a CLI erasure left the address on payments.)

Financial records stay, anonymised. What recognises the person in later Stripe data (their
customer ids and a hash of each address) is kept as erased identities, so a later event or a
replay never writes their details back.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from paywall import clock
from paywall.access.comps import erase_reader_access
from paywall.mail.queue import erase_reader_mail
from paywall.readers.erased import Subject, mark_erased
from paywall.readers.service import find_reader
from paywall.signin.codes import erase_reader_codes
from paywall.webhooks.readers import erase_reader_data


def erase_reader(session: Session, external_id: str) -> str:
    """Erase personal data, keep (anonymised) financial records: 'erased', 'already_erased', 'not_found'.

    Erasing again re-runs every step (cheap, and it catches data an older version left behind) but
    answers 'already_erased'."""
    reader = find_reader(session, external_id)
    if reader is None:
        return "not_found"
    already = reader.erased_at is not None and reader.email is None and reader.name is None
    subject = Subject(reader)
    if reader.verified_email:
        # The address they proved is theirs too: every step below looks for it.
        subject.emails.add(reader.verified_email)
    # The sync's rows first: they find the customer ids and addresses the later steps use.
    erase_reader_data(session, subject)
    erase_reader_mail(session, subject)
    erase_reader_access(session, reader)
    erase_reader_codes(session, reader, subject.emails)
    mark_erased(session, subject.identities())
    reader.email = None
    reader.name = None
    reader.marketing_opt_in = False
    # No address signs in as them again, and every device they signed in on is signed out.
    reader.verified_email = None
    reader.email_verified_at = None
    reader.session_version = (reader.session_version or 0) + 1
    reader.erased_at = reader.erased_at or clock.now()
    session.flush()
    return "already_erased" if already else "erased"
