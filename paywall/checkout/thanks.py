"""/thanks?session_id=: record what was paid at once, and sign the payer in on this device, once.

Access must not wait for the webhook (issue 14). Nothing here imports Flask; the /thanks page calls
``complete`` and renders what it returns.

1. ``fetch`` reads the Checkout Session from Stripe with what it paid for expanded (subscription,
   invoice, payment intent and its charge), outside any transaction: a slow Stripe never holds a
   database connection. The customer too: its row (mode, email) lets the payer's next purchase
   reuse it at once.
2. Only a paid session is recorded (status ``complete`` with payment_status ``paid``, or
   ``no_payment_required`` for a trial), through the webhook's own upserts (paywall.webhooks.sync)
   with a *fetch* source: the state read now beats every event up to now and loses to any later
   one, so the webhook arriving before or after /thanks ends in the same rows (the sync's
   newest-state rule; the same as ``paywall stripe sync``).
3. The payer is the session's reader (client_reference_id, set only from a valid site or widget
   token) else, for a guest, the reader the email Checkout collected names (paywall.signin.identity).
   Checkout does not prove that address belongs to the payer, so a guest is signed in only as a
   reader that address did not name before (a new one): typing someone else's address at Checkout
   must never sign the typist in as them. A known address still gets the payment (it is theirs to
   read with); the payer signs in with the emailed code.
4. Sign-in happens once per Checkout Session: a used ``signin_codes`` marker row keyed by a hash of
   the session id (unique ``token_hash``, so two racing visits cannot both win) records it, and a
   session older than ``SIGNIN_WINDOW`` signs no one in. The browser gets a one-time ``return``
   token (``codes.issue_return_token``), never a reader token, in the URL.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urldefrag, urlencode

import stripe
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from paywall.checkout.sessions import CHECKOUT_TIMEOUT_SECONDS
from paywall.config import Settings
from paywall.db import Database
from paywall.models import CheckoutSession, Reader, SigninCode
from paywall.signin import identity
from paywall.signin.codes import hash_secret, issue_return_token
from paywall.signin.settings import signin_settings
from paywall.stripe_gateway import make_client, stripe_error
from paywall.webhooks.handlers import related_ids
from paywall.webhooks.inbox import lock_key, take_locks
from paywall.webhooks.sync import checkout_sessions, customers, derived, invoices, payments, subscriptions
from paywall.webhooks.sync.fields import Obj, read_text, read_timestamp
from paywall.webhooks.sync.ordering import Source

log = logging.getLogger(__name__)

# What the page needs besides the session: the objects it paid for, in the shapes the webhook
# delivers them (GET /v1/checkout/sessions/{id} with expand[]).
EXPAND = ("customer", "subscription", "invoice", "payment_intent.latest_charge")
# Stripe's Checkout Session ids: cs_test_... / cs_live_...
SESSION_ID = re.compile(r"^cs_[A-Za-z0-9_]{1,250}$")
# A Checkout Session stays open up to 24 hours; past two days after its creation, /thanks is an
# old link (browser history, a forwarded URL) and signs no one in.
SIGNIN_WINDOW = dt.timedelta(days=2)
MARKER_PREFIX = "checkout-session:"


class ThanksRefused(Exception):
    """Nothing was recorded: ``status`` and a reader-facing ``title`` and ``text`` for the page."""

    def __init__(self, status: int, title: str, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.title = title
        self.text = text


@dataclass(frozen=True)
class Thanked:
    """A recorded payment. ``signin``: ``signed_in`` (``token`` is the one-time token), ``used``
    (this session signed someone in already), ``known_email`` (a guest paid with the address of a
    reader who must sign in by code), ``expired`` (an old link) or ``none`` (no reader to sign in)."""

    kind: str
    signin: str
    token: str | None = None


def valid_session_id(value: Any) -> bool:
    return isinstance(value, str) and SESSION_ID.match(value) is not None


def fetch(settings: Settings, session_id: str) -> dict[str, Any]:
    """The Checkout Session with EXPAND; 503/502 ApiError as for Checkout, ThanksRefused 404."""
    client = make_client(settings, timeout=CHECKOUT_TIMEOUT_SECONDS)
    try:
        found = client.raw_request(
            "get", f"/v1/checkout/sessions/{quote(session_id, safe='')}", expand=list(EXPAND)
        ).data
    except stripe.InvalidRequestError as exc:
        if exc.http_status == 404:
            raise ThanksRefused(
                404,
                "We could not find this payment",
                "This link does not name a payment of ours. If you paid, your receipt is in your mail.",
            ) from None
        log.warning("Stripe refused a Checkout Session read (request %s)", exc.request_id)
        raise stripe_error(exc) from None
    except stripe.StripeError as exc:
        log.warning(
            "Stripe: Checkout Session read failed (%s, request %s)", type(exc).__name__, exc.request_id
        )
        raise stripe_error(exc) from None
    if (
        not isinstance(found, dict)
        or found.get("object") != "checkout.session"
        or found.get("id") != session_id
    ):
        raise ThanksRefused(
            502, "Payments are unavailable", "Our payment provider gave an answer we do not understand."
        )
    return found


def check_paid(cs: Obj) -> None:
    """Raise ThanksRefused unless the session is complete and paid (or needs no payment: a trial)."""
    if cs.get("status") != "complete":
        raise ThanksRefused(
            409,
            "Payment not completed",
            "This payment was not completed, so nothing was charged. Go back to the article to try again.",
        )
    if cs.get("payment_status") not in ("paid", "no_payment_required"):
        # Bank debits and vouchers: the webhook records the payment once it has gone through.
        raise ThanksRefused(
            202,
            "Your payment is on its way",
            "Thank you. Your payment is still being processed; your access starts as soon as it "
            "goes through, and Stripe will email you a receipt.",
        )


def _lock(session: Session, cs: Obj) -> None:
    """The webhook's advisory locks on every object recorded here (PostgreSQL), so a delivery of
    the same objects waits for this transaction instead of interleaving with it."""
    if session.get_bind().dialect.name != "postgresql":
        return
    ids = related_ids(cs)
    for field in ("customer", "subscription", "invoice", "payment_intent"):
        value = cs.get(field)
        if isinstance(value, Mapping):
            ids |= related_ids(value)
    take_locks(session, sorted({lock_key(i) for i in ids}))


def record(session: Session, cs: Obj, src: Source) -> str:
    """Upsert the session and the expanded objects with the webhook's functions; its outcome."""
    customer, subscription, invoice, intent = (
        cs.get(f) for f in ("customer", "subscription", "invoice", "payment_intent")
    )
    # What the session paid for first, then the session itself, whose links reach all of them (the
    # order checkout.session.completed usually comes in; the sync is order-free either way).
    with derived.settled(session):
        if isinstance(customer, Mapping):
            customers.upsert_customer(session, customer, src)
        if isinstance(subscription, Mapping):
            subscriptions.upsert_subscription(session, subscription, src)
        if isinstance(invoice, Mapping):
            invoices.upsert_invoice(session, invoice, src)
        if isinstance(intent, Mapping):
            # Its expanded latest_charge makes the payment row (upsert_payment_intent handles both).
            payments.upsert_payment_intent(session, intent, src)
        outcome = checkout_sessions.upsert_checkout_session(session, cs, src)
    return outcome


def _known_reader(session: Session, address: str) -> Reader | None:
    """The reader this address already names: verified by them, else linked to their payments."""
    found = session.scalar(select(Reader).where(Reader.verified_email == address))
    # The identity rule's own second step, read without marking anything verified.
    return found or identity.earliest_linked(session, address)


def _names_reader(cs: Obj) -> bool:
    """Whether the session was created for a reader: we set client_reference_id (and
    metadata.reader) only from a valid site or widget token, never from what a browser typed."""
    meta = cs.get("metadata")
    return bool(cs.get("client_reference_id") or (isinstance(meta, Mapping) and meta.get("reader")))


def payer(session: Session, csid: str, cs: Obj, now: dt.datetime) -> tuple[Reader | None, bool]:
    """(the reader who paid, whether this device may be signed in as them), linking a guest's
    payment to that reader through the sync's own links."""
    row = session.scalar(select(CheckoutSession).where(CheckoutSession.stripe_checkout_session_id == csid))
    if row is None:
        return None, False
    if _names_reader(cs):
        reader = session.get(Reader, row.reader_id) if row.reader_id is not None else None
        return reader, reader is not None and reader.erased_at is None
    # A guest. The row's reader is not proof of anything here: an earlier visit may have linked
    # the payment to the reader a known address names, which must not sign this device in.
    details = cs.get("customer_details")
    email = read_text(details.get("email"), 320) if isinstance(details, Mapping) else None
    email = email or read_text(cs.get("customer_email"), 320)
    if not email or "@" not in email:
        return None, False
    address = identity.normalise_email(email)
    known = _known_reader(session, address)
    reader = known or identity.reader_for_email(session, address, now)
    if reader.erased_at is not None:
        return None, False
    if row.reader_id is None:
        with derived.settled(session):
            row.reader_id = reader.id
            checkout_sessions.link_checkout(session, row)
    return reader, known is None


def _signed_in_before(session: Session, csid: str) -> bool:
    key = hash_secret(MARKER_PREFIX + csid)
    return session.scalar(select(SigninCode.id).where(SigninCode.token_hash == key)) is not None


def _claim(session: Session, csid: str, reader: Reader, until: dt.datetime, now: dt.datetime) -> bool:
    """Record that this Checkout Session signed its payer in; False when it did already."""
    key = hash_secret(MARKER_PREFIX + csid)
    try:
        with session.begin_nested():
            # Born used, so it can never be exchanged; kept past the window (purge_expired waits
            # a day after expires_at) so a late revisit still finds it.
            session.add(
                SigninCode(
                    email_hash=key,
                    code_hash="",
                    token_hash=key,
                    purpose="return",
                    reader_id=reader.id,
                    created_at=now,
                    expires_at=until,
                    used_at=now,
                )
            )
            session.flush()
    except IntegrityError:
        return False
    return True


def sign_in_once(
    session: Session, settings: Settings, csid: str, cs: Obj, reader: Reader, now: dt.datetime
) -> Thanked:
    """A one-time return token for ``reader``, the first time this session asks within the window."""
    kind = checkout_sessions.checkout_kind(cs)
    created = read_timestamp(cs.get("created")) or now
    until = created + SIGNIN_WINDOW
    if now >= until:
        return Thanked(kind, "expired")
    if not _claim(session, csid, reader, until, now):
        return Thanked(kind, "used")
    return Thanked(kind, "signed_in", issue_return_token(session, settings, reader, now=now))


def complete(db: Database, settings: Settings, session_id: str, *, now: dt.datetime) -> Thanked:
    """Fetch, record and sign in for /thanks (see the module docstring). Raises ThanksRefused (or a
    502/503 ApiError when Stripe fails) with nothing recorded."""
    if not valid_session_id(session_id):
        raise ThanksRefused(400, "This link is not valid", "This link does not name a payment.")
    cs = fetch(settings, session_id)
    check_paid(cs)
    src = Source.fetch(livemode=bool(cs.get("livemode")), at=now)
    try:
        with db.transaction() as session:
            _lock(session, cs)
            record(session, cs, src)
            if _signed_in_before(session, session_id):
                return Thanked(checkout_sessions.checkout_kind(cs), "used")
            reader, may_sign_in = payer(session, session_id, cs, now)
            if reader is None:
                return Thanked(checkout_sessions.checkout_kind(cs), "none")
            if not may_sign_in:
                return Thanked(checkout_sessions.checkout_kind(cs), "known_email")
            return sign_in_once(session, settings, session_id, cs, reader, now)
    except ValueError as exc:  # InvalidField is one
        # An object no real Stripe answer has: the webhook records it (or names it) instead.
        log.warning("/thanks could not record %s: %s", session_id, type(exc).__name__)
        raise ThanksRefused(
            502,
            "Thank you",
            "Your payment went through, but we could not record it yet. Your access starts within "
            "minutes; sign in with your email if the article is still closed.",
        ) from None


def destination(settings: Settings, token: str, return_to: str | None) -> str | None:
    """Where a signed-in payer goes: [signin] return_url (the site's backend exchanges the token),
    else the article with ``#paywall_signin=`` for the widget; None: stay on the thank-you page."""
    site_backend = signin_settings(settings).return_url
    if site_backend:
        query = urlencode({"paywall_signin": token, **({"return_to": return_to} if return_to else {})})
        base = urldefrag(site_backend).url
        return base + ("&" if "?" in base else "?") + query
    if return_to:
        return with_signin_fragment(return_to, token)
    return None


def with_signin_fragment(url: str, token: str) -> str:
    """``url`` with the one URL shape the widget reads: ``#paywall_signin=<token>``."""
    return urldefrag(url).url + "#" + urlencode({"paywall_signin": token})
