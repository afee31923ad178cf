"""Sign-in by email: ask for a code, exchange it (or the mailed link's token) for a reader token.

The functions take a session and never commit; the edge (a view, /thanks, the account page) opens
the transaction. A refused code is an ApiError *after* its failed attempt was written: the caller
must commit before answering (paywall/signin/views.py shows how), or the lockout never counts.

Asking for a code does the same work whoever the address belongs to, or nobody: it issues a code
and queues one mail, and looks no reader up, so neither the answer nor its time tells a stranger
whether an address is known. Who the person is gets decided only once they proved the address
(paywall/signin/identity.py).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import text, update
from sqlalchemy.orm import Session

from paywall import clock
from paywall.access.anonymous import valid_browser_id
from paywall.access.tokens import issue_access_token
from paywall.config import Settings
from paywall.errors import ApiError, bad_request
from paywall.mail.queue import enqueue_new
from paywall.models import Reader
from paywall.signin import codes
from paywall.signin.identity import reader_for_email
from paywall.signin.merge import merge_anonymous
from paywall.signin.returns import safe_return_url
from paywall.signin.sealing import seal
from paywall.signin.settings import signin_settings
from paywall.signin.tokens import issue_reader_token, reader_from_token

# The outbox kind of each code purpose (paywall/mail/queue.py KINDS).
MAIL_KINDS = {"signin": "signin_code", "delete": "delete_code"}
# The one URL shape the widget understands (contracts): the one-time token in the fragment.
FRAGMENT_PARAM = "paywall_signin"


@dataclass(frozen=True)
class SignedIn:
    """A device now signed in as ``reader``: its reader token, a fresh access token, the expiry."""

    reader: str
    reader_token: str
    access_token: str
    expires_at: dt.datetime


def signin_link(settings: Settings, token: str, return_url: str | None) -> str:
    """Where the mailed link takes the reader, carrying the one-time ``token``.

    1. ``[signin] return_url`` (a site with a backend): ``?paywall_signin=TOKEN`` plus
       ``return_to`` (the article) when known; the site exchanges it with POST /v1/signin/exchange.
    2. Else the article (``return_url``) with ``#paywall_signin=TOKEN``: the widget there exchanges
       it. A fragment never reaches a server, a log or a Referer.
    3. Else our own page, /signin with the same fragment, which asks for one press of a button
       before it uses the token (mail scanners that open every link must not burn it) and then
       signs the reader in on our origin (their account page).
    """
    conf = signin_settings(settings)
    if conf.return_url:
        params = {FRAGMENT_PARAM: token, **({"return_to": return_url} if return_url else {})}
        return conf.return_url + ("&" if "?" in conf.return_url else "?") + urlencode(params)
    if return_url:
        return f"{return_url.split('#', 1)[0]}#{FRAGMENT_PARAM}={token}"
    return f"{settings.server.public_url.rstrip('/')}/signin#{FRAGMENT_PARAM}={token}"


@dataclass(frozen=True)
class SigninRequest:
    """A sign-in mail ready to store: the code and token drawn, the secret sealed."""

    fresh: codes.Fresh
    kind: str
    data: dict[str, Any]


def prepare_signin(
    settings: Settings,
    email: str,
    *,
    now: dt.datetime,
    return_url: str | None = None,
    purpose: str = "signin",
) -> SigninRequest:
    """Everything a sign-in request computes, before any database work (no session needed).

    Drawing the code, building the link and sealing it cost CPU; done here, outside the caller's
    transaction, they never hold SQLite's write lock, which the access check's meter writes share.
    ``return_url`` outside the allowed origins is dropped (the API refuses it before, naming it)."""
    kind = MAIL_KINDS.get(purpose)
    if kind is None:
        raise ValueError(f"no mail for codes of purpose {purpose!r}")
    back = safe_return_url(settings, return_url)
    new = codes.fresh(settings, email, now=now, purpose=purpose, return_url=back)
    secret: dict[str, Any] = {"code": new.code}
    if purpose == "signin":
        secret["link"] = signin_link(settings, new.token, back)
    data = {
        "purpose": purpose,
        "minutes": signin_settings(settings).code_minutes,
        "expires_at": clock.isoformat(new.expires_at),
        "sealed": seal(settings, kind, new.email, secret),
    }
    return SigninRequest(fresh=new, kind=kind, data=data)


def store_signin(session: Session, request: SigninRequest) -> None:
    """Store the code and queue its ONE mail: three writes (on PostgreSQL a SET LOCAL first), no
    lookup of anyone."""
    if session.get_bind().dialect.name == "postgresql":
        # Like the meter's writes: no wait for the WAL flush. A database crash in the next fraction
        # of a second can lose this code; the reader then asks for another. Nothing else is lost.
        session.execute(text("SET LOCAL synchronous_commit = off"))
    codes.store(session, request.fresh)
    # A random key: every request is its own mail (the newest code is the live one).
    enqueue_new(session, kind=request.kind, to_email=request.fresh.email, data=request.data)


def request_signin(
    session: Session,
    settings: Settings,
    email: str,
    *,
    now: dt.datetime,
    return_url: str | None = None,
    purpose: str = "signin",
) -> None:
    """Issue a code for ``email`` and queue ONE mail with it (and, to sign in, a one-time link).

    Looks up no reader: the same work for known and unknown addresses."""
    store_signin(session, prepare_signin(settings, email, now=now, return_url=return_url, purpose=purpose))


def _refused(field: str, exc: codes.CodeRefused) -> ApiError:
    return ApiError(
        400,
        exc.message,
        errors={field: [exc.message]},
        type_="signin-refused",
        title="Sign-in refused",
        extra={"reason": exc.reason},
    )


def exchange(
    session: Session,
    settings: Settings,
    *,
    email: str | None = None,
    code: str | None = None,
    token: str | None = None,
    anonymous_reader: str | None = None,
    now: dt.datetime,
) -> SignedIn:
    """Sign in with ``email`` + ``code`` or a one-time ``token`` (mailed link or /thanks).

    Raises ApiError 400 naming ``code`` (or ``token``) when it is wrong, used, expired or locked;
    a wrong code was counted in ``session`` before: commit it before answering."""
    if anonymous_reader is not None and not valid_browser_id(anonymous_reader):
        raise bad_request("anonymous_reader", "Not a browser id (16 to 64 URL-safe characters).")
    reader: Reader | None
    if token:
        try:
            row = codes.check_token(session, token, now=now, purposes=("signin", "return"))
        except codes.CodeRefused as exc:
            raise _refused("token", exc) from None
        if row.purpose == "return":
            reader = session.get(Reader, row.reader_id) if row.reader_id is not None else None
        else:
            reader = reader_for_email(session, row.email, now) if row.email else None
        if reader is None or reader.erased_at is not None:
            raise _refused("token", codes.CodeRefused("used", "This link is not valid any more."))
    elif email and code:
        try:
            codes.check_code(session, settings, email, code, now=now)
        except codes.CodeRefused as exc:
            raise _refused("code", exc) from None
        reader = reader_for_email(session, email, now)
    else:
        raise bad_request("code", "Send email and code, or the token from the link.")
    return sign_in(session, settings, reader, anonymous_reader=anonymous_reader, now=now)


def sign_in(
    session: Session,
    settings: Settings,
    reader_row: Reader,
    *,
    anonymous_reader: str | None,
    now: dt.datetime,
) -> SignedIn:
    """Sign ``reader_row`` in on this device (the caller proved who they are): reader and access token.

    ``anonymous_reader``: the browser's anonymous id, whose meter and dismissal become the reader's.
    Signing in here registers the reader (they pass a registration wall from now on)."""
    if anonymous_reader is not None and valid_browser_id(anonymous_reader):
        merge_anonymous(session, settings, anonymous_reader, reader_row, now=now)
    if reader_row.registered_at is None:
        reader_row.registered_at = now
    session.flush()
    reader_token, expires = issue_reader_token(settings, reader_row)
    access_token, _ = issue_access_token(session, settings, reader_row.external_id)
    return SignedIn(
        reader=reader_row.external_id,
        reader_token=reader_token,
        access_token=access_token,
        expires_at=expires,
    )


def sign_out(session: Session, settings: Settings, reader_token: str, *, everywhere: bool) -> str:
    """'signed_out', 'signed_out_everywhere' or 'not_signed_in' (the token was not valid anyway).

    A reader token is a signed token held by the device: signing out of one device is the device
    forgetting it. ``everywhere`` increments the reader's session version, so every reader token
    issued before stops working at once, on every device."""
    reader = reader_from_token(session, settings, reader_token)
    if reader is None:
        return "not_signed_in"
    if not everywhere:
        return "signed_out"
    session.execute(
        update(Reader)
        .where(Reader.external_id == reader)
        .values(session_version=Reader.session_version + 1)
        .execution_options(synchronize_session=False)
    )
    return "signed_out_everywhere"
