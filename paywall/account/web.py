"""The account session cookie, the account forms' CSRF tokens and the origin check (the HTTP edge).

The cookie holds a reader token (paywall/signin/tokens.py) and nothing else: HttpOnly, SameSite=Lax,
Secure when the service is served over https, and sent only to /account. Every use re-checks the
token's session version, so "Sign out everywhere" (here or through the API) ends it too.

CSRF, twice over: every POST carries a form token signed by us and bound to the reader it was
rendered for (a forged form cannot name the signed-in reader), and a POST whose ``Origin`` is not
our own is refused. ``POST /account/session`` alone is posted from the site's pages, so it also
takes ``server.allowed_origins`` (and proves itself by the reader token it carries).
"""

from __future__ import annotations

import datetime as dt

from flask import request
from werkzeug.wrappers import Response

from paywall import clock, forms
from paywall.browser import origin_allowed, own_origin
from paywall.config import Settings
from paywall.signin.tokens import token_claims

COOKIE = "paywall_account"
COOKIE_PATH = "/account"
FORM_PURPOSE = "account-form"


def cookie_token() -> str | None:
    """The reader token the account cookie holds, if any (not yet checked)."""
    return request.cookies.get(COOKIE) or None


def cookie_reader_claim(settings: Settings) -> str | None:
    """The reader a well-signed cookie names, without a database read (for the rate limiter)."""
    claims = token_claims(settings, cookie_token())
    return claims[0] if claims else None


def set_session(resp: Response, settings: Settings, reader_token: str, expires: dt.datetime) -> None:
    """Sign this browser in to /account with ``reader_token`` until it ``expires``."""
    resp.set_cookie(
        COOKIE,
        reader_token,
        max_age=max(0, int((expires - clock.now()).total_seconds())),
        httponly=True,
        samesite="Lax",
        secure=settings.server.public_url.startswith("https://"),
        path=COOKIE_PATH,
    )


def clear_session(resp: Response, settings: Settings) -> None:
    resp.delete_cookie(
        COOKIE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Lax",
        secure=settings.server.public_url.startswith("https://"),
    )


def make_form_token(settings: Settings, form: str, reader: str | None) -> str:
    """A form token for an account form (paywall/forms.py; None before signing in)."""
    return forms.make_form_token(settings, form, reader, purpose=FORM_PURPOSE)


def read_form_token(settings: Settings, form: str) -> forms.FormClaims | None:
    """The reader the posted account form token was made for, or None when missing, foreign or stale."""
    return forms.read_form_token(settings, form, purpose=FORM_PURPOSE)


def origin_ok(settings: Settings, *, from_site: bool = False) -> bool:
    """Whether this POST comes from our own pages (or, ``from_site``, an allowed site's).

    A request without ``Origin`` is not a browser's cross-site form (browsers send it on every
    cross-origin POST); it still needs its form token or reader token."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    if from_site:
        return origin_allowed(settings, origin)
    return origin == own_origin(settings)
