"""Form tokens: the CSRF guard of the server-rendered pages (reader pages, the account page).

A form carries a token we sign: valid two hours, made for one form (``form``), for one page
family (``purpose``: a checkout form token never passes on the account page), bound to the reader
it was rendered for (``sub``, none for a guest) and to a random nonce (a double click reuses one
Checkout Session through it). A POST without a valid token for its form is refused.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from flask import request

from paywall import signing
from paywall.config import Settings

FORM_TTL = dt.timedelta(hours=2)


@dataclass(frozen=True)
class FormClaims:
    reader: str | None
    nonce: str


def make_form_token(settings: Settings, form: str, reader: str | None, *, purpose: str) -> str:
    """A signed, short-lived token for ``form`` on behalf of ``reader`` (or a guest)."""
    claims: dict[str, Any] = {"form": form, "nonce": secrets.token_urlsafe(12)}
    if reader is not None:
        claims["sub"] = reader  # JWT's sub must be a string when present: guests have none
    token, _ = signing.sign(settings, claims, purpose=purpose, ttl=FORM_TTL)
    return token


def read_form_token(settings: Settings, form: str, *, purpose: str) -> FormClaims | None:
    """The reader and nonce of the posted ``form_token``, or None when missing, foreign or stale."""
    token = request.form.get("form_token", "")
    if not token:
        return None
    try:
        claims = signing.verify(settings, token, purpose=purpose)
    except signing.InvalidToken:
        return None
    if claims.get("form") != form or not isinstance(claims.get("nonce"), str):
        return None
    sub = claims.get("sub")
    return FormClaims(reader=sub if isinstance(sub, str) else None, nonce=claims["nonce"])
