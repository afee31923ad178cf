"""Links in mail: one-click unsubscribe, personal Subscribe/Donate pages, and the account page.

Billing (the Stripe portal) is never one click from a mail: a forwarded or leaked mail must not
open someone's billing. Mail links to /account, where the reader signs in first."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from paywall import signing
from paywall.config import Settings
from paywall.mail.settings import mailer_settings

UNSUBSCRIBE = "unsubscribe"
READER_LINK = "reader-link"


def _url(settings: Settings, path: str, token: str) -> str:
    return f"{settings.server.public_url.rstrip('/')}{path}?{urlencode({'token': token})}"


def account_url(settings: Settings) -> str:
    """``{public_url}/account``: the reader signs in there (email and code) to manage billing."""
    return f"{settings.server.public_url.rstrip('/')}/account"


def unsubscribe_url(settings: Settings, reader_external_id: str, campaign: str | None = None) -> str:
    """``{public_url}/unsubscribe?token=…``; the token names the reader (``sub``) and the campaign."""
    claims: dict[str, str] = {"sub": reader_external_id}
    if campaign:
        claims["cmp"] = campaign
    ttl = dt.timedelta(days=mailer_settings(settings).unsubscribe_ttl_days)
    token, _ = signing.sign(settings, claims, purpose=UNSUBSCRIBE, ttl=ttl)
    return _url(settings, "/unsubscribe", token)


def reader_links(
    settings: Settings,
    reader_external_id: str,
    pages: tuple[str, ...],
    campaign: str | None = None,
    ask: str | None = None,
) -> dict[str, str]:
    """``{public_url}/<page>?token=…`` for each page (subscribe, donate): one "reader-link"
    token, signed once, serves them all (it names the reader, not the page). ``ask``: an appeal
    mail's ask (paywall/experiments/asks.py), claim ``ask``, for Checkout's attribution."""
    claims: dict[str, str] = {"sub": reader_external_id}
    if campaign:
        claims["cmp"] = campaign
    if ask:
        claims["ask"] = ask
    ttl = dt.timedelta(days=mailer_settings(settings).link_ttl_days)
    token, _ = signing.sign(settings, claims, purpose=READER_LINK, ttl=ttl)
    return {page: _url(settings, f"/{page}", token) for page in pages}


def reader_link(settings: Settings, reader_external_id: str, page: str, campaign: str | None = None) -> str:
    """``{public_url}/<page>?token=…`` with a "reader-link" token."""
    return reader_links(settings, reader_external_id, (page,), campaign)[page]
